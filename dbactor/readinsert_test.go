package dbactor

import (
	"strings"
	"testing"
	"unsafe"
)

// readInsert's map keeps no long text, and no part of a longer buffer: a
// statement split out of a long script is copied, and the Insert kept is
// read from the copy (its strings are parts of the text).
func TestReadInsertKeepsNoLongText(t *testing.T) {
	a := &dbActor{}
	// A long script whose first statement is short, as execScript
	// hands them out: a substring of the script.
	script := "INSERT INTO t(id, v) VALUES(?1, :v);" + strings.Repeat(" INSERT INTO t VALUES(1, 'x');", 2000)
	short := script[:strings.IndexByte(script, ';')]
	if ins := a.readInsert(short); !ins.Read || len(ins.Rows) != 1 || ins.Rows[0][1].Param != ":v" {
		t.Fatalf("readInsert(%q) = %+v", short, ins)
	}
	inScript := func(s string) bool {
		if s == "" {
			return false
		}
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(script)))
		return p >= lo && p < lo+uintptr(len(script))
	}
	for key, ins := range a.inserts {
		if inScript(key) {
			t.Errorf("the map's key %q is part of the %d-byte script", key, len(script))
		}
		for _, c := range ins.Columns {
			if inScript(c) {
				t.Errorf("the kept Insert's column %q is part of the script", c)
			}
		}
		for _, row := range ins.Rows {
			for _, v := range row {
				if inScript(v.Param) {
					t.Errorf("the kept Insert's parameter %q is part of the script", v.Param)
				}
			}
		}
	}
	// A long statement is read but not kept.
	long := "INSERT INTO t VALUES" + strings.Repeat("(1, 'x'),", 1000) + "(2, ?)"
	if ins := a.readInsert(long); !ins.Read || len(ins.Rows) != 1001 || ins.Rows[1000][1].Param != "?" {
		t.Fatalf("readInsert of the %d-byte statement: Read %v, %d rows", len(long), ins.Read, len(ins.Rows))
	}
	if len(a.inserts) != 1 {
		t.Errorf("the map has %d texts, want 1 (the short statement)", len(a.inserts))
	}
	for key := range a.inserts {
		if len(key) > maxInsertText {
			t.Errorf("the map keeps a %d-byte text", len(key))
		}
	}
	// The kept statement is still read from the map.
	if ins := a.readInsert(short); !ins.Read || ins.Rows[0][0].Param != "?1" {
		t.Fatalf("readInsert(%q) again = %+v", short, ins)
	}
}
