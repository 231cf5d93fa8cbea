package change

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// openDB opens a fresh database file in t.TempDir() on a single connection.
func openDB(t testing.TB, name string) *sql.DB {
	t.Helper()
	// A real file; synchronous=OFF only skips fsync, which tests do not need.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), name+".db")+"?_pragma=synchronous(off)&_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// applyStmts runs stmts in one transaction, ignoring tolerated errors.
func applyStmts(db *sql.DB, stmts []Stmt) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, st := range stmts {
		if _, err := tx.Exec(st.SQL, st.Args...); err != nil {
			if st.Tolerated != "" && strings.Contains(err.Error(), st.Tolerated) {
				continue
			}
			return fmt.Errorf("%s %v: %w", st.SQL, st.Args, err)
		}
	}
	return tx.Commit()
}

// apply generates and runs the statements for each change.
func apply(t testing.TB, db *sql.DB, cs ...Change) {
	t.Helper()
	for _, c := range cs {
		stmts, err := Statements(c)
		if err != nil {
			t.Fatalf("Statements(%+v): %v", c, err)
		}
		if err := applyStmts(db, stmts); err != nil {
			t.Fatal(err)
		}
	}
}

func queryRows(t testing.TB, db *sql.DB, query string, args ...any) [][]any {
	t.Helper()
	rs, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out [][]any
	for rs.Next() {
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRows compares exactly: storage class, value, float bits.
func sameRows(a, b [][]any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if !sameValue(a[i][j], b[i][j]) {
				return false
			}
		}
	}
	return true
}

func fmtRows(rows [][]any) string {
	var sb strings.Builder
	for _, r := range rows {
		sb.WriteString("\n  ")
		for j, v := range r {
			if j > 0 {
				sb.WriteString(", ")
			}
			switch x := v.(type) {
			case []byte:
				if len(x) > 16 {
					fmt.Fprintf(&sb, "blob[%d]", len(x))
				} else {
					fmt.Fprintf(&sb, "x'%x'", x)
				}
			case string:
				if len(x) > 40 {
					fmt.Fprintf(&sb, "text[%d]", len(x))
				} else {
					fmt.Fprintf(&sb, "%q", x)
				}
			default:
				fmt.Fprintf(&sb, "%T(%v)", v, v)
			}
		}
	}
	return sb.String()
}

func checkRows(t testing.TB, db *sql.DB, query string, want [][]any) {
	t.Helper()
	if got := queryRows(t, db, query); !sameRows(got, want) {
		t.Fatalf("%s\ngot:%s\nwant:%s", query, fmtRows(got), fmtRows(want))
	}
}
