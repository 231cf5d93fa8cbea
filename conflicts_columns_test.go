package syncdb_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/syncdb/syncdb"
)

// A delete by a replica that has not pulled a column another replica
// added and filled must not drop that column's value: the row differs
// from what the delete saw, in a column it did not know.
//
// addedColumn sets up the README's scenario: A adds a column, fills it in
// row 1 and pushes; B, which has not pulled it, deletes row 1.
func addedColumn(t *testing.T) (a, b *syncdb.DB) {
	t.Helper()
	a, b, _ = pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'one'), (2, 'two')")
	mustExec(t, a, "ALTER TABLE t ADD COLUMN note TEXT")
	mustExec(t, a, "UPDATE t SET note = 'from a' WHERE id = 1")
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "DELETE FROM t WHERE id = 1")
	return a, b
}

// checkHeld checks that B's delete waits as one delete-updated conflict
// whose remote side shows A's value, the row staying with it.
func checkHeld(t *testing.T, b *syncdb.DB, err error) syncdb.Conflict {
	t.Helper()
	if !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b: %v, want ErrConflict", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].Kind != "delete-updated" || cs[0].Table != "t" || fmt.Sprint(cs[0].Key) != "[1]" || cs[0].Local != nil ||
		cs[0].Remote["note"] != "from a" || cs[0].Remote["v"] != "one" || cs[0].Resolved != "" {
		t.Fatalf("conflicts: %+v", cs)
	}
	if got := rows(t, b, "SELECT id, v, note FROM t ORDER BY id"); got != "1|one|from a\n2|two|<nil>" {
		t.Fatalf("b while the delete waits: %q", got)
	}
	return cs[0]
}

// The README's scenario: B pushes without pulling first (the push's
// server-side check refuses the delete).
func TestDeleteOfRowWithUnpulledColumnConflictsAtPush(t *testing.T) {
	ctx := context.Background()
	a, b := addedColumn(t)
	c := checkHeld(t, b, b.Push(ctx))
	if err := b.Push(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("second push: %v", err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT id, v, note FROM t ORDER BY id"); got != "1|one|from a\n2|two|<nil>" {
		t.Fatalf("a: the server lost the row: %q", got)
	}
	if st, err := b.Stats(ctx); err != nil || st.Conflicts != 1 {
		t.Errorf("stats: %d conflicts %v", st.Conflicts, err)
	}
	// Resolved "local", the delete deletes the row, whatever it holds now.
	if err := b.ResolveConflict(ctx, c.ID, "local"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, note FROM t ORDER BY id"); got != "2|two|<nil>" {
			t.Errorf("%s after resolving local: %q", name, got)
		}
	}
	if cs := conflicts(t, b); len(cs) != 0 {
		t.Errorf("still unresolved: %+v", cs)
	}
}

// The same delete found by the pull's replay (B pulls before it pushes);
// resolved "remote", the delete is dropped and the row stays everywhere.
func TestDeleteOfRowWithUnpulledColumnConflictsAtPull(t *testing.T) {
	ctx := context.Background()
	a, b := addedColumn(t)
	_, err := b.Pull(ctx)
	c := checkHeld(t, b, err)
	if err := b.ResolveConflict(ctx, c.ID, "remote"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, note FROM t ORDER BY id"); got != "1|one|from a\n2|two|<nil>" {
			t.Errorf("%s after resolving remote: %q", name, got)
		}
	}
	if cs := conflicts(t, b); len(cs) != 0 {
		t.Errorf("still unresolved: %+v", cs)
	}
}

// A column added with a default: a row that predates it, or where it was
// written with the default, loses nothing to the delete; a value that
// differs, if only in case under a NOCASE collation, waits.
func TestDeleteOfRowWithUnpulledDefaultColumn(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')")
	mustExec(t, a, "ALTER TABLE t ADD COLUMN flag INTEGER NOT NULL DEFAULT 0")
	mustExec(t, a, "ALTER TABLE t ADD COLUMN tag TEXT COLLATE NOCASE DEFAULT 'x'")
	mustExec(t, a, "UPDATE t SET flag = 1 WHERE id = 2")
	mustExec(t, a, "UPDATE t SET flag = '0', tag = 'x' WHERE id = 3") // the defaults, written
	mustExec(t, a, "UPDATE t SET tag = 'X' WHERE id = 4")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "DELETE FROM t")
	if err := b.Push(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b push: %v, want ErrConflict", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 2 || cs[0].Kind != "delete-updated" || fmt.Sprint(cs[0].Key) != "[2]" || cs[0].Remote["flag"] != int64(1) ||
		cs[1].Kind != "delete-updated" || fmt.Sprint(cs[1].Key) != "[4]" || cs[1].Remote["tag"] != "X" {
		t.Fatalf("conflicts: %+v", cs)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, flag, tag FROM t ORDER BY id"); got != "2|two|1|x\n4|four|0|X" {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// Updates by a replica that has not pulled a column merge column by
// column: the other replica's value in the new column stays, at push and
// at the pull's replay alike.
func TestUpdateOfRowWithUnpulledColumnKeepsIt(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'one'), (2, 'two')")
	mustExec(t, a, "ALTER TABLE t ADD COLUMN note TEXT")
	mustExec(t, a, "UPDATE t SET note = 'a' || id")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "UPDATE t SET v = 'b1' WHERE id = 1")
	if err := b.Push(ctx); err != nil { // the server's guard and statements
		t.Fatalf("b push: %v", err)
	}
	mustExec(t, b, "UPDATE t SET v = 'b2' WHERE id = 2")
	if _, err := b.Pull(ctx); err != nil { // the replay
		t.Fatalf("b pull: %v", err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, note FROM t ORDER BY id"); got != "1|b1|a1\n2|b2|a2" {
			t.Errorf("%s: %q", name, got)
		}
		if hist, err := db.ConflictHistory(ctx); err != nil || len(hist) != 0 {
			t.Errorf("%s: conflicts %+v %v", name, hist, err)
		}
	}
}

// An update then a delete of the row, neither knowing the column: the
// update merges, the delete waits; kept "local", it deletes the row.
func TestUpdateThenDeleteOfRowWithUnpulledColumn(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'one'), (2, 'two')")
	mustExec(t, a, "ALTER TABLE t ADD COLUMN note TEXT")
	mustExec(t, a, "UPDATE t SET note = 'from a' WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "UPDATE t SET v = 'b' WHERE id = 1")
	mustExec(t, b, "DELETE FROM t WHERE id = 1")
	if err := b.Push(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b push: %v, want ErrConflict", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].Kind != "delete-updated" || fmt.Sprint(cs[0].Key) != "[1]" || cs[0].Remote["v"] != "b" || cs[0].Remote["note"] != "from a" {
		t.Fatalf("conflicts: %+v", cs)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT id, v, note FROM t ORDER BY id"); got != "1|b|from a\n2|two|<nil>" {
		t.Fatalf("a while the delete waits: %q", got)
	}
	if err := b.ResolveConflict(ctx, cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, note FROM t ORDER BY id"); got != "2|two|<nil>" {
			t.Errorf("%s after resolving local: %q", name, got)
		}
	}
}

// Both replicas add the same column. B deletes row 1 before its own ADD
// COLUMN (the delete does not know it; A filled it there: a conflict),
// then fills the column in row 2 and deletes row 3 knowing it (no
// conflict: nobody else wrote row 3).
func TestDeleteWithColumnAddedOnBothSides(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'one'), (2, 'two'), (3, 'three')")
	mustExec(t, a, "ALTER TABLE t ADD COLUMN note TEXT")
	mustExec(t, a, "UPDATE t SET note = 'from a' WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "DELETE FROM t WHERE id = 1")
	mustExec(t, b, "ALTER TABLE t ADD COLUMN note TEXT")
	mustExec(t, b, "UPDATE t SET note = 'from b' WHERE id = 2")
	mustExec(t, b, "DELETE FROM t WHERE id = 3")
	if err := b.Push(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b push: %v, want ErrConflict", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].Kind != "delete-updated" || fmt.Sprint(cs[0].Key) != "[1]" || cs[0].Remote["note"] != "from a" {
		t.Fatalf("conflicts: %+v", cs)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, note FROM t ORDER BY id"); got != "1|one|from a\n2|two|from b" {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// A column B added and filled itself is one its delete knows: no
// conflict, and nothing waits for a pull.
func TestDeleteOfRowWithOwnAddedColumn(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'one'), (2, 'two')")
	mustExec(t, b, "ALTER TABLE t ADD COLUMN note TEXT")
	mustExec(t, b, "UPDATE t SET note = 'from b' WHERE id = 1")
	mustExec(t, b, "DELETE FROM t WHERE id = 1")
	mustExec(t, a, "INSERT INTO t VALUES(3, 'three')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx); err != nil {
		t.Fatalf("b push: %v", err)
	}
	if got := rows(t, b, "SELECT id FROM t ORDER BY id"); got != "2" {
		t.Errorf("b after its push: %q (a row 3 means the server refused a change and the push pulled)", got)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT id, v, note FROM t ORDER BY id"); got != "2|two|<nil>\n3|three|<nil>" {
		t.Errorf("a: %q", got)
	}
	if hist, _ := b.ConflictHistory(ctx); len(hist) != 0 {
		t.Errorf("conflicts: %+v", hist)
	}
}
