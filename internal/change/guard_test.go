package change

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/testutil"
)

// guardPasses runs c's guard on db: true if it passes, false if it fails
// as designed (json() of a non-JSON text); any other error is fatal.
func guardPasses(t *testing.T, db *sql.DB, c Change) bool {
	t.Helper()
	st, ok, err := Guard(c)
	if err != nil || !ok {
		t.Fatalf("Guard(%v): ok %v, %v", c.Op, ok, err)
	}
	_, err = db.Exec(st.SQL, st.Args...)
	switch {
	case err == nil:
		return true
	case strings.Contains(err.Error(), "malformed JSON"):
		return false
	}
	t.Fatalf("guard %s %v: %v", st.SQL, st.Args, err)
	return false
}

// A delete's guard refuses while the table has a stored column the delete
// does not know and the row is there (SQL cannot compare that column with
// its default: the replay of the pull that follows does); inserts and
// updates, which leave such a column alone, are not refused for it.
func TestGuardUnknownColumns(t *testing.T) {
	db := openDB(t, "guard")
	testutil.MustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	testutil.MustExec(t, db, "INSERT INTO t VALUES(1, 'one')")
	cols := []string{"id", "v"}
	del := func(id int64, v string) Change {
		return Change{Op: Delete, Table: "t", Columns: cols, PK: []int{0}, RowidAlias: true, OldRowid: id, Before: []any{id, v}}
	}
	ins := Change{Op: Insert, Table: "t", Columns: cols, PK: []int{0}, RowidAlias: true, NewRowid: 1, After: []any{int64(1), "one"}}
	upd := Change{Op: Update, Table: "t", Columns: cols, PK: []int{0}, RowidAlias: true, OldRowid: 1, NewRowid: 1,
		Before: []any{int64(1), "one"}, After: []any{int64(1), "uno"}}

	if !guardPasses(t, db, del(1, "one")) {
		t.Error("delete of the row as it is: refused")
	}
	if guardPasses(t, db, del(1, "other")) {
		t.Error("delete of a changed row: passed")
	}
	// A virtual generated column is no data: nothing to lose.
	testutil.MustExec(t, db, "ALTER TABLE t ADD COLUMN g TEXT AS (v || '!') VIRTUAL")
	if !guardPasses(t, db, del(1, "one")) {
		t.Error("delete with an unknown generated column: refused")
	}
	// Names compare as SQLite compares them.
	upper := del(1, "one")
	upper.Columns = []string{"ID", "V"}
	if !guardPasses(t, db, upper) {
		t.Error("delete naming the columns in upper case: refused")
	}
	testutil.MustExec(t, db, "ALTER TABLE t ADD COLUMN note TEXT")
	if guardPasses(t, db, del(1, "one")) {
		t.Error("delete with an unknown stored column: passed")
	}
	if !guardPasses(t, db, del(2, "two")) {
		t.Error("delete of a row that is not there, unknown column: refused")
	}
	if !guardPasses(t, db, ins) || !guardPasses(t, db, upd) {
		t.Error("insert or update refused for an unknown column")
	}
	withNote := del(1, "one")
	withNote.Columns = []string{"id", "v", "note"}
	withNote.Before = []any{int64(1), "one", nil}
	if !guardPasses(t, db, withNote) {
		t.Error("delete that knows every column: refused")
	}
}
