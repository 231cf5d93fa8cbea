package syncdb_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/rawclient"
)

// Triggers come with the server's pages: a pull brings whatever triggers
// the server's schema holds, and they fire on the replica during T2's
// replay and on every later local write. A trigger's own writes are not
// captured (only a statement's direct changes are: the trigger fires again
// where the change is applied), so pushing a replayed or later insert
// makes the server's trigger write its row once, not twice. A trigger whose
// body writes syncdb's tables (the server lets one be created, but never
// fire there) is denied inside the replica too: its replayed insert
// becomes a constraint conflict, a later insert is refused, and the
// replica's bookkeeping (change log, pull generation, 'cloned') is
// untouched.
func TestServerTriggersOnTheReplica(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	a := pushedReplica(t, url, dir, "a.db",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE TABLE audit(id INTEGER PRIMARY KEY, tid INTEGER, v TEXT)",
		"CREATE TABLE h(id INTEGER PRIMARY KEY, v TEXT)",
	)
	for _, q := range []string{
		"CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN INSERT INTO audit(tid, v) VALUES(new.id, new.v); END",
		"CREATE TRIGGER h_spy AFTER INSERT ON h BEGIN " +
			"INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('cloned', 'forged'); " +
			"DELETE FROM _syncdb_changes; UPDATE _syncdb_local SET value = 99 WHERE key = 'pull_gen'; END",
	} {
		if _, err := rawclient.Exec(url, q); err != nil {
			t.Fatal(err)
		}
	}
	// Unpushed local inserts, replayed by the pull's T2 on the server's
	// schema, triggers included.
	mustExec(t, a, "INSERT INTO t VALUES(1, 'one')")
	mustExec(t, a, "INSERT INTO h VALUES(1, 'spy')")
	genBefore := rows(t, a, "SELECT value FROM _syncdb_local WHERE key = 'pull_gen'")
	if _, err := a.Pull(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("the pull: %v, want the refused insert as a conflict", err)
	}
	cs, err := a.Conflicts(ctx)
	if err != nil || len(cs) != 1 || cs[0].Table != "h" || cs[0].Kind != "constraint" || !strings.Contains(cs[0].Error, "_syncdb_") {
		t.Fatalf("conflicts after the pull: %+v %v", cs, err)
	}
	if got := rows(t, a, "SELECT tid, v FROM audit"); got != "1|one" {
		t.Fatalf("the trigger's row on the replica after the replay: %q", got)
	}
	// A later local write fires the triggers too.
	mustExec(t, a, "INSERT INTO t VALUES(2, 'two')")
	if _, err := a.Exec(ctx, "INSERT INTO h VALUES(2, 'spy')"); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
		t.Fatalf("an insert firing h_spy: %v, want ErrUnsupportedStatement", err)
	}
	if got := rows(t, a, "SELECT count(*) FROM h"); got != "0" {
		t.Fatalf("h: %q rows", got)
	}
	if got := rows(t, a, "SELECT key FROM _syncdb_local WHERE key = 'cloned'"); got != "" {
		t.Fatalf("a trigger marked the replica cloned: %q", got)
	}
	if got := rows(t, a, "SELECT value FROM _syncdb_local WHERE key = 'pull_gen'"); got == "99" || got == genBefore {
		t.Fatalf("pull_gen %q (before the pull %q)", got, genBefore)
	}
	// The change log holds the two inserts into t and nothing of audit:
	// the trigger's rows are the server's to write.
	st, err := a.Stats(ctx)
	if err != nil || st.CDCOperations != 2 {
		t.Fatalf("changes to push: %d (%v), want the two inserts into t", st.CDCOperations, err)
	}
	if err := a.ResolveConflict(ctx, cs[0].ID, "remote"); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	for _, db := range []*syncdb.DB{a, b} {
		if got := rows(t, db, "SELECT tid, v FROM audit ORDER BY tid"); got != "1|one\n2|two" {
			t.Fatalf("audit after the push: %q, want one row per insert", got)
		}
		if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != "1|one\n2|two" {
			t.Fatalf("t after the push: %q", got)
		}
	}
	if st, err := a.Stats(ctx); err != nil || st.CDCOperations != 0 || st.Conflicts != 0 {
		t.Fatalf("after the sync: %+v %v", st, err)
	}
}

// A statement that changes no row itself but whose triggers do (a write to
// a view through its INSTEAD OF trigger, a row a BEFORE trigger logs and
// OR IGNORE then skips) syncs what its triggers did: neither the server
// nor a pull's replay would make those changes again. They were not
// captured: the row was there until the next pull peeled it off, and no
// replica ever got it. Deeper triggers (t's audit trigger, fired by the
// view's) stay the server's to run: one audit row per insert.
func TestWritesThroughTriggers(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	a := pushedReplica(t, url, dir, "a.db",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE TABLE audit(id INTEGER PRIMARY KEY, tid INTEGER)",
		"CREATE TABLE tried(id INTEGER PRIMARY KEY, tid INTEGER)",
		"CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN INSERT INTO audit(tid) VALUES(new.id); END",
		"CREATE TRIGGER t_tried BEFORE INSERT ON t BEGIN INSERT INTO tried(tid) VALUES(new.id); END",
		"CREATE VIEW vt AS SELECT id, v FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t VALUES(new.id, new.v); END",
		"CREATE TRIGGER vt_upd INSTEAD OF UPDATE ON vt BEGIN UPDATE t SET v = new.v WHERE id = old.id; END",
		"CREATE TRIGGER vt_del INSTEAD OF DELETE ON vt BEGIN DELETE FROM t WHERE id = old.id; END",
		"INSERT INTO t VALUES(1, 'direct')",
	)
	st0, err := a.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	execAll(t, a,
		"INSERT INTO vt VALUES(2, 'via the view')",
		"INSERT INTO vt VALUES(3, 'to update')",
		"UPDATE vt SET v = 'updated via the view' WHERE id = 3",
		"INSERT INTO vt VALUES(4, 'to delete')",
		"DELETE FROM vt WHERE id = 4",
		"INSERT OR IGNORE INTO t VALUES(1, 'ignored')", // t_tried logs it, the insert is skipped
	)
	st, err := a.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Three view inserts, an update, a delete, the logged try; no audit row.
	if n := st.CDCOperations - st0.CDCOperations; n != 6 {
		t.Errorf("%d changes to push for the writes through triggers, want 6", n)
	}
	want := map[string]string{
		"SELECT id, v FROM t ORDER BY id":          "1|direct\n2|via the view\n3|updated via the view",
		"SELECT tid FROM audit ORDER BY id":        "1\n2\n3\n4",
		"SELECT tid FROM tried ORDER BY tid, id":   "1\n1\n2\n3\n4",
		"SELECT count(*) FROM audit GROUP BY tid":  "1\n1\n1\n1",
		"SELECT count(*) FROM tried WHERE tid = 1": "2",
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	wantRows(t, map[string]*syncdb.DB{"a after its sync": a, "b": b}, want)
	if st, err := a.Stats(ctx); err != nil || st.CDCOperations != 0 || st.Conflicts != 0 {
		t.Fatalf("after the sync: %+v %v", st, err)
	}
}

// What the triggers of a statement wrote is synced only if the statement
// made no change of its own (TestWritesThroughTriggers); otherwise, and
// for rows no push can carry or whose push would fire their trigger
// again, the triggers' rows are left to wherever the statement's changes
// are applied. After a sync, the replica that wrote and a fresh one must
// both hold what the server made of the pushed changes, with no row lost
// that the server would make and none made twice, and no statement may
// fail:
//   - a no-op update (its own change, recorded as nothing): its trigger's
//     audit row is not synced. The update is not either, and c meanwhile
//     changed the row: the audit row would log a value the row never
//     had on the server (and collide with the audit row c's update made);
//   - a view's INSTEAD OF trigger that also logs to a table without a
//     primary key: the statement works, the view's row syncs, the log row
//     stays local until the next pull;
//   - a BEFORE INSERT trigger that inserts into its own table, under OR
//     IGNORE: its row is not synced, since on the server it would fire the
//     trigger again (one more row);
//   - a BEFORE INSERT trigger that counts, in its own table, the inserts
//     OR IGNORE skips: its update is synced (an UPDATE fires no INSERT
//     trigger), through Exec and through a Tx's Query ... RETURNING;
//   - a script: each statement's rows are its own (the view's insert
//     before a direct one is synced);
//   - a local table (Config.IgnoreTables) whose trigger logs to another,
//     under a random key: every pull's replay of the insert makes the log
//     row again, so it must not be kept as well (two rows).
func TestTriggersOfNoopStatements(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	ignore := []string{"loc", "loclog"}
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, IgnoreTables: ignore})
	execAll(t, a,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE TABLE audit(id INTEGER PRIMARY KEY, tid INTEGER, v TEXT)",
		"CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN INSERT INTO audit(tid, v) VALUES(new.id, new.v); END",
		"CREATE TABLE nopk(tid INTEGER, v TEXT)",
		"CREATE VIEW vt AS SELECT id, v FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t VALUES(new.id, new.v); INSERT INTO nopk VALUES(new.id, new.v); END",
		"CREATE TABLE log(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO log VALUES(10, 'first')",
		"CREATE TRIGGER log_next BEFORE INSERT ON log BEGIN INSERT INTO log VALUES(new.id + 1, 'after ' || new.v); END",
		"CREATE TABLE words(w TEXT PRIMARY KEY, n INTEGER)",
		"CREATE TRIGGER words_count BEFORE INSERT ON words BEGIN UPDATE words SET n = n + 1 WHERE w = new.w; END",
		"INSERT INTO words VALUES('go', 1)",
		"CREATE TABLE loc(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE TABLE loclog(id TEXT PRIMARY KEY, lid INTEGER)",
		"CREATE TRIGGER loc_log AFTER INSERT ON loc BEGIN INSERT INTO loclog VALUES(lower(hex(randomblob(16))), new.id); END",
		"INSERT INTO t VALUES(1, 'x')",
	)
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	c := open(t, syncdb.Config{Path: filepath.Join(dir, "c.db"), URL: url, IgnoreTables: ignore})
	mustExec(t, c, "UPDATE t SET v = 'y' WHERE id = 1")
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, a,
		"UPDATE t SET v = 'x' WHERE id = 1", // a no-op here; t_upd logs it
		"INSERT INTO vt VALUES(2, 'via the view')",
		"INSERT OR IGNORE INTO log VALUES(10, 'again')", // log_next inserts 11, the insert is skipped
		"INSERT OR IGNORE INTO words VALUES('go', 1)",   // words_count: 2
		"INSERT INTO vt VALUES(5, 'script'); INSERT INTO t VALUES(6, 'direct')",
		"INSERT INTO loc VALUES(1, 'here')",
	)
	if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		var w string
		if err := tx.QueryRow(ctx, "INSERT OR IGNORE INTO words VALUES('go', 1) RETURNING w").Scan(&w); !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("the skipped insert's RETURNING: %v, want no row", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"SELECT id, v FROM t ORDER BY id":   "1|y\n2|via the view\n5|script\n6|direct",
		"SELECT tid, v FROM audit":          "1|y",
		"SELECT count(*) FROM nopk":         "0",
		"SELECT id, v FROM log ORDER BY id": "10|first",
		"SELECT w, n FROM words":            "go|3",
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url, IgnoreTables: ignore})
	wantRows(t, map[string]*syncdb.DB{"a after its sync": a, "b": b}, want)
	if got := rows(t, a, "SELECT l.lid, o.v FROM loclog l JOIN loc o ON o.id = l.lid"); got != "1|here" {
		t.Errorf("a's local tables after its sync: %q, want one log row", got)
	}
	if st, err := a.Stats(ctx); err != nil || st.Conflicts != 0 {
		t.Fatalf("after the sync: %+v %v", st, err)
	}
}

// A Tx's Query captures statement by statement too: in a script, the
// view's insert is not taken for nothing because the statement after it
// changed a row, and a query that failed (the statement undone) leaves
// nothing of the rows it had written before failing. Both were synced
// wrong: the view's row vanished at the sync; the failed insert's first
// row was pushed, and came back to the replica with the pull.
func TestTriggersOfQueryStatements(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	execAll(t, a,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE VIEW vt AS SELECT id, v FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t VALUES(new.id, new.v); END",
	)
	if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, "INSERT INTO vt VALUES(1, 'view'); INSERT INTO t VALUES(2, 'direct') RETURNING id").Scan(&id); err != nil || id != 2 {
			return fmt.Errorf("the script's rows: %d, %v", id, err)
		}
		if _, err := tx.Query(ctx, "INSERT INTO t VALUES(3, 'a'), (3, 'b') RETURNING id"); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
			return fmt.Errorf("the failing insert: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	for name, db := range map[string]*syncdb.DB{"a after its sync": a, "b": b} {
		if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != "1|view\n2|direct" {
			t.Errorf("%s: t %q, want the view's row and the direct one", name, got)
		}
	}
}

// A trigger's insert whose key SQLite chose (a view's row written without
// its id) moves to a new key when it collides with another replica's, as
// a statement's own insert does; one whose key the trigger names (a
// singleton row) does not: the collision waits for the user. Trigger rows
// were all taken as keyed by the user, so the first collision waited too.
func TestTriggersKeysAssigned(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	a := pushedReplica(t, url, dir, "a.db",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)",
		"CREATE VIEW vt AS SELECT id, v, n FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t(v, n) VALUES(new.v, coalesce(new.n, 1)); END",
		"CREATE TABLE last(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE VIEW vlast AS SELECT v FROM last",
		"CREATE TRIGGER vlast_ins INSTEAD OF INSERT ON vlast BEGIN INSERT INTO last VALUES(1, new.v); END",
	)
	c := open(t, syncdb.Config{Path: filepath.Join(dir, "c.db"), URL: url})
	mustExec(t, c, "INSERT INTO vt(v) VALUES('from c')")
	mustExec(t, a, "INSERT INTO vt(v) VALUES('from a')") // the same id
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*syncdb.DB{"a": a, "c": c} {
		if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != "1|from c\n2|from a" { // a '1' in the trigger spells no key
			t.Errorf("%s: t %q, want both rows, a's moved", name, got)
		}
	}
	mustExec(t, c, "INSERT INTO vlast VALUES('from c')")
	mustExec(t, a, "INSERT INTO vlast VALUES('from a')")
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("a's sync with its singleton row taken: %v, want ErrConflict", err)
	}
	if cs, err := a.Conflicts(ctx); err != nil || len(cs) != 1 || cs[0].Table != "last" {
		t.Fatalf("a's conflicts: %+v %v", cs, err)
	}
	if got := rows(t, a, "SELECT id, v FROM last"); got != "1|from c" {
		t.Errorf("a: last %q, want c's row alone", got)
	}
}

// triggerPair opens a (with schema, pushed) and c (bootstrapped from it).
func triggerPair(t *testing.T, schema ...string) (a, c *syncdb.DB) {
	t.Helper()
	url := newServer(t)
	dir := t.TempDir()
	a = open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	for _, q := range schema {
		mustExec(t, a, q)
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	c = open(t, syncdb.Config{Path: filepath.Join(dir, "c.db"), URL: url})
	return a, c
}

// A BEFORE UPDATE (or DELETE) trigger that appends a row to its own table
// and skips the statement's change (append-only versions, tombstones):
// applied on the server the row is an insert, which fires no UPDATE or
// DELETE trigger, so it is pushed, not left out as one that refires.
func TestTriggersOwnTableInsertOfUpdate(t *testing.T) {
	ctx := context.Background()
	a, c := triggerPair(t,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT, ver INTEGER)",
		"INSERT INTO t VALUES(1, 'x', 'a', 1)",
		"CREATE TRIGGER t_ver BEFORE UPDATE ON t BEGIN INSERT INTO t(k, v, ver) VALUES(old.k, new.v, old.ver + 1); SELECT RAISE(IGNORE); END",
		"CREATE TRIGGER t_tomb BEFORE DELETE ON t BEGIN INSERT INTO t(k, v, ver) VALUES(old.k, 'deleted', old.ver + 1); SELECT RAISE(IGNORE); END",
	)
	mustExec(t, a, "UPDATE t SET v = 'b' WHERE k = 'x'")
	mustExec(t, a, "DELETE FROM t WHERE id = 2")
	const want = "1|x|a|1\n2|x|b|2\n3|x|deleted|3"
	if got := rows(t, a, "SELECT id, k, v, ver FROM t ORDER BY id"); got != want {
		t.Fatalf("a before the sync: %q, want %q", got, want)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*syncdb.DB{"a": a, "c": c} {
		if got := rows(t, db, "SELECT id, k, v, ver FROM t ORDER BY id"); got != want {
			t.Errorf("%s after the sync: %q, want %q", name, got, want)
		}
	}
}

// A Query whose text starts with an empty statement captures its view's
// row (flush reads the target from the split text); a statement whose
// target cannot be read from its text but whose triggers wrote rows is
// refused, not left uncaptured.
func TestTriggersTargetText(t *testing.T) {
	ctx := context.Background()
	a, c := triggerPair(t,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE VIEW vt AS SELECT id, v FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t VALUES(new.id, new.v); END",
		`CREATE VIEW "" AS SELECT id, v FROM t`,
		`CREATE TRIGGER noname_ins INSTEAD OF INSERT ON "" BEGIN INSERT INTO t VALUES(new.id, new.v); END`,
	)
	if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		rs, err := tx.Query(ctx, "; INSERT INTO vt VALUES(7, 'x')")
		if err != nil {
			return err
		}
		return rs.Close()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, `INSERT INTO "" VALUES(8, 'y')`); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
		t.Errorf(`INSERT INTO "": %v, want ErrUnsupportedStatement`, err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*syncdb.DB{"a": a, "c": c} {
		if got := rows(t, db, "SELECT id, v FROM t"); got != "7|x" {
			t.Errorf("%s after the sync: t %q, want 7|x", name, got)
		}
	}
}

// A script in one Query takes its arguments as modernc binds a script's:
// each statement's parameters from the whole list, by name or by their
// position in that statement; its changes are still captured statement by
// statement.
func TestTriggersQueryScriptArgs(t *testing.T) {
	ctx := context.Background()
	a, c := triggerPair(t,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO t VALUES(1, 'x')",
		"CREATE VIEW vt AS SELECT id, v FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t VALUES(new.id, new.v); END",
	)
	var named, positional string
	if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		if err := tx.QueryRow(ctx, "UPDATE t SET v = :v WHERE id = 1; SELECT v FROM t WHERE id = 1", sql.Named("v", "y")).Scan(&named); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "INSERT INTO vt VALUES(?, ?); SELECT group_concat(v) FROM t WHERE id IN (?, 1)", 2, "z").Scan(&positional)
	}); err != nil {
		t.Fatalf("scripts with args: %v", err)
	}
	if named != "y" || positional != "y,z" {
		t.Errorf("the scripts' rows: %q and %q, want y and y,z", named, positional)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, c, "SELECT id, v FROM t ORDER BY id"); got != "1|y\n2|z" {
		t.Errorf("c after the sync: t %q, want 1|y\\n2|z", got)
	}
}

// A key the user passes as an argument is the user's in any form
// database/sql accepts (a named argument, sql.Null*, a pointer, a
// driver.Valuer, a text): a collision waits for the user instead of
// moving the row to another key.
func TestConflictUserKeyArgForms(t *testing.T) {
	five := int64(5)
	for name, arg := range map[string]any{
		"named":     sql.Named("id", int64(5)),
		"nullint64": sql.NullInt64{Int64: 5, Valid: true},
		"pointer":   &five,
		"valuer":    keyValuer{5},
		"text":      " 5",
		"real":      5.0,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a, c := triggerPair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			mustExec(t, c, "INSERT INTO t VALUES(5, 'c')")
			if err := c.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			q := "INSERT INTO t(id, v) VALUES(?, 'a')"
			if name == "named" {
				q = "INSERT INTO t(id, v) VALUES(:id, 'a')"
			}
			mustExec(t, a, q, arg)
			err := a.Sync(ctx)
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); !errors.Is(err, syncdb.ErrConflict) || got != "5|c" {
				t.Errorf("a's sync: %v, t %q; want ErrConflict and c's row alone", err, got)
			}
		})
	}
}

// A direct insert's key is SQLite's (on a collision the row moves to a new
// key) only if provably so: the key column left out, or NULL, or a
// parameter bound to nil. A key from a query or an expression is the
// user's, though its number is nowhere in the statement or its arguments:
// the collision waits for the user.
func TestConflictKeyFromStatement(t *testing.T) {
	for _, c := range []struct {
		name, stmt string
		args       []any
		moves      bool
	}{
		{"select", "INSERT INTO t(id, v) SELECT n, 'a' FROM (SELECT 2 + 2 AS n)", nil, false},
		{"select no columns", "WITH s(n) AS (SELECT 2 + 2) INSERT INTO t SELECT n, 'a' FROM s", nil, false},
		{"computed", "INSERT INTO t VALUES(2 + 2, 'a')", nil, false},
		{"subquery", "INSERT INTO t(v, id) VALUES(?, (SELECT max(id) FROM t) + 1)", []any{"a"}, false},
		{"param expression", "INSERT INTO t VALUES(? + 2, 'a')", []any{2}, false},
		{"first row computed", "INSERT INTO t(id, v) VALUES(2 + 2, 'a'), (NULL, 'a1')", nil, false},
		{"omitted", "INSERT INTO t(v) VALUES(?)", []any{"a"}, true},
		{"null", "INSERT INTO t VALUES(NULL, ?)", []any{"a"}, true},
		{"nil arg", "INSERT INTO t(id, v) VALUES(?, ?)", []any{nil, "a"}, true},
		{"numbered nil arg", "INSERT INTO t(v, id) VALUES(?1, ?2)", []any{"a", (*int64)(nil)}, true},
		{"named nil arg", "INSERT INTO t VALUES(:id, :v)", []any{sql.Named("v", "a"), sql.Named("id", sql.NullInt64{})}, true},
		{"rows", "INSERT INTO t(id, v) VALUES(NULL, 'a'), (?, 'a1')", []any{nil}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			a, r := triggerPair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(3, 'x')")
			mustExec(t, r, "INSERT INTO t VALUES(4, 'c')")
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, a, c.stmt, c.args...)
			if got := rows(t, a, "SELECT id FROM t WHERE v = 'a'"); got != "4" {
				t.Fatalf("a's row: key %q, want 4", got)
			}
			err := a.Sync(ctx)
			if c.moves {
				if got := rows(t, a, "SELECT v FROM t WHERE id = 4"); err != nil || got != "c" ||
					rows(t, a, "SELECT count(*) FROM t WHERE v = 'a' AND id > 4") != "1" {
					t.Errorf("a's sync: %v, key 4 %q; want a's row moved past c's", err, got)
				}
				return
			}
			if got := rows(t, a, "SELECT v FROM t WHERE id = 4"); !errors.Is(err, syncdb.ErrConflict) || got != "c" {
				t.Errorf("a's sync: %v, key 4 %q; want ErrConflict and c's row", err, got)
			}
		})
	}
}

// A VALUES list that is the first arm of a compound (UNION [ALL] SELECT or
// VALUES) inserts the later arms' rows too: their keys are the user's,
// though every VALUES row leaves its key to SQLite. Taken for SQLite's,
// a's row with key 5 moved silently to 6 on the collision with c's.
func TestConflictKeyFromCompoundInsert(t *testing.T) {
	for name, stmt := range map[string]string{
		"union all select": "INSERT INTO t(id, v) VALUES(NULL, 'z') UNION ALL SELECT 5, 'a'",
		"union values":     "INSERT INTO t VALUES(NULL, 'z') UNION VALUES(5, 'a')",
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a, r := triggerPair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(3, 'x')")
			mustExec(t, r, "INSERT INTO t VALUES(5, 'c')")
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, a, stmt)
			if got := rows(t, a, "SELECT id FROM t WHERE v = 'a'"); got != "5" {
				t.Fatalf("a's row: key %q, want 5", got)
			}
			err := a.Sync(ctx)
			if got := rows(t, a, "SELECT v FROM t WHERE id = 5"); !errors.Is(err, syncdb.ErrConflict) || got != "c" {
				t.Errorf("a's sync: %v, key 5 %q, a's row now at %q; want ErrConflict and c's row", err, got, rows(t, a, "SELECT id FROM t WHERE v = 'a'"))
			}
		})
	}
}

type keyValuer struct{ id int64 }

func (k keyValuer) Value() (driver.Value, error) { return k.id, nil }

// A trigger that gives its row's key a value (a lookup, an expression, a
// copy of NEW's, even one that is NULL at run time) made the key its own:
// on a collision the row waits for the user instead of moving silently to
// another key (where bob's profile would become cat's).
func TestTriggersKeyFromTrigger(t *testing.T) {
	for name, body := range map[string]string{
		"lookup":   "INSERT INTO profiles VALUES((SELECT id FROM users WHERE name = new.name), new.bio)",
		"column":   "INSERT INTO profiles(bio, user_id) SELECT new.bio, id FROM users WHERE name = new.name",
		"computed": "INSERT INTO profiles VALUES(instr('-amybobcat', new.name) / 3 + 1, new.bio)",
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a, c := triggerPair(t,
				"CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)",
				"INSERT INTO users VALUES(1, 'amy'), (2, 'bob'), (3, 'cat')",
				"CREATE TABLE profiles(user_id INTEGER PRIMARY KEY, bio TEXT)",
				"CREATE VIEW vp AS SELECT u.name, p.bio FROM profiles p JOIN users u ON u.id = p.user_id",
				"CREATE TRIGGER vp_ins INSTEAD OF INSERT ON vp BEGIN "+body+"; END",
			)
			mustExec(t, a, "INSERT INTO vp VALUES('amy', 'amy by a')")
			mustExec(t, c, "INSERT INTO vp VALUES('bob', 'bob by c')")
			if err := c.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, a, "INSERT INTO vp VALUES('bob', 'bob by a')") // key 2 = max + 1 on a
			err := a.Sync(ctx)
			if got := rows(t, a, "SELECT name, bio FROM vp ORDER BY name"); !errors.Is(err, syncdb.ErrConflict) || got != "amy|amy by a\nbob|bob by c" {
				t.Errorf("a's sync: %v; vp %q; want ErrConflict and c's profile of bob", err, got)
			}
		})
	}
	// NEW's key, NULL here: SQLite picked the key, but which value the
	// trigger gave cannot be told from its text; the collision waits.
	ctx := context.Background()
	a, c := triggerPair(t,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"CREATE VIEW vt AS SELECT id, v FROM t",
		"CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t VALUES(new.id, new.v); END",
	)
	mustExec(t, c, "INSERT INTO vt(v) VALUES('from c')")
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO vt(v) VALUES('from a')")
	if err := a.Sync(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Errorf("a's sync: %v, want ErrConflict", err)
	}
}

// A TEMP view's INSTEAD OF trigger that writes a main table: the
// statement changes nothing itself, so the trigger's row is synced like
// any view's (the hook reads the row's schema, not the trigger's).
func TestTriggersOfTempView(t *testing.T) {
	ctx := context.Background()
	a, c := triggerPair(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		for _, q := range []string{
			"CREATE TEMP VIEW tv AS SELECT id, v FROM main.t",
			"CREATE TEMP TRIGGER tv_ins INSTEAD OF INSERT ON tv BEGIN INSERT INTO main.t VALUES(new.id, new.v); END",
			"INSERT INTO tv VALUES(3, 'temp view')",
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*syncdb.DB{"a": a, "c": c} {
		if got := rows(t, db, "SELECT id, v FROM t"); got != "3|temp view" {
			t.Errorf("%s after the sync: t %q, want 3|temp view", name, got)
		}
	}
}
