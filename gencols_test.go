package syncdb_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// A table with a VIRTUAL generated column: the preupdate record holds the
// stored columns only, so the capture must not read a virtual column
// from it, and the pushed SQL must name no generated column (SQLite
// refuses writes to them). A second replica pulls the rows and computes
// the generated columns itself.
func TestCaptureGeneratedColumns(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, ddl string }{
		{"virtual last", "CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b INT GENERATED ALWAYS AS (a*2) VIRTUAL)"},
		{"virtual middle", "CREATE TABLE t(id INTEGER PRIMARY KEY, b INT GENERATED ALWAYS AS (a*2) VIRTUAL, a INT, c TEXT)"},
		{"virtual and stored", "CREATE TABLE t(id INTEGER PRIMARY KEY, b AS (a*2) VIRTUAL, a INT, s AS (a+1) STORED, c TEXT)"},
		{"without rowid", "CREATE TABLE t(id INTEGER PRIMARY KEY, b AS (a*2) VIRTUAL, a INT, c TEXT) WITHOUT ROWID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := newServer(t)
			dir := t.TempDir()
			a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
			execAll(t, a, tc.ddl)
			if err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}
			execAll(t, a,
				"INSERT INTO t(id, a) VALUES(1, 10), (2, 20), (3, 30)",
				"UPDATE t SET a = a + 1 WHERE id = 2",
				"DELETE FROM t WHERE id = 3",
			)
			if err := a.Push(ctx); err != nil {
				t.Fatalf("push: %v", err)
			}
			b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
			if _, err := b.Pull(ctx); err != nil {
				t.Fatalf("pull: %v", err)
			}
			const want = "1|10|20\n2|21|42"
			if got := rows(t, b, "SELECT id, a, b FROM t ORDER BY id"); got != want {
				t.Errorf("b's rows:\n%s\nwant\n%s", got, want)
			}
			// b's own write to such a table reaches a.
			execAll(t, b, "UPDATE t SET a = 5 WHERE id = 1", "INSERT INTO t(id, a) VALUES(4, 40)")
			if err := b.Push(ctx); err != nil {
				t.Fatalf("b's push: %v", err)
			}
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("a's pull: %v", err)
			}
			const want2 = "1|5|10\n2|21|42\n4|40|80"
			if got := rows(t, a, "SELECT id, a, b FROM t ORDER BY id"); got != want2 {
				t.Errorf("a's rows:\n%s\nwant\n%s", got, want2)
			}
		})
	}
}

// A conflict on a table with generated columns: b's update of the base
// column of a row a deleted waits, and kept ("local") the row comes back
// on both replicas with its generated columns computed there.
func TestConflictGeneratedColumns(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, g AS (v*2) VIRTUAL, v INT, s AS (v+1) STORED, w TEXT);
		INSERT INTO t(id, v, w) VALUES(1, 1, 'x'), (2, 2, 'x')`)
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "DELETE FROM t WHERE id = 1")
	mustExec(t, b, "UPDATE t SET v = 7 WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b sync: %v", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].Kind != "update-deleted" || fmt.Sprint(cs[0].Local["v"]) != "7" || cs[0].Remote != nil {
		t.Fatalf("conflicts: %+v", cs)
	}
	if err := b.ResolveConflict(ctx, cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, g, s, w FROM t ORDER BY id"); got != "1|7|14|8|x\n2|2|4|3|x" {
			t.Errorf("%s: %q", name, got)
		}
	}
}
