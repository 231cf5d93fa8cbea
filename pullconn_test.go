package syncdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// writerRows is rows, read on the writer connection (in a Tx) instead of
// the read pool: its TEMP schema and pragmas are its own.
func writerRows(t *testing.T, db *syncdb.DB, q string) string {
	t.Helper()
	var out []string
	err := db.Tx(context.Background(), func(tx *syncdb.Tx) error {
		rs, err := tx.Query(context.Background(), q)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var v any
			if err := rs.Scan(&v); err != nil {
				return err
			}
			out = append(out, fmt.Sprint(v))
		}
		return rs.Err()
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return strings.Join(out, "\n")
}

// pullRemoteRow has another client push a row of t and a pull it.
func pullRemoteRow(t *testing.T, url string, a *syncdb.DB, id int) {
	t.Helper()
	ctx := context.Background()
	b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
	mustExec(t, b, "INSERT INTO t VALUES(?, 'remote')", id)
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if changed, err := a.Pull(ctx); err != nil || !changed {
		t.Fatalf("pull: changed %v, %v", changed, err)
	}
}

// TestPullEndsTempState: a pull ends the writer connection's TEMP tables
// and triggers, as README's rules for SQL say (what a TEMP trigger wrote
// stays until the next pull). T2 replays the local changes without them:
// the TEMP trigger's row in log, made by nobody else, is gone, and the
// trigger does not write it again during the replay. The pull keeps the
// writer connection when it can (refreshWriter), so it must replace it
// when it has TEMP objects.
func TestPullEndsTempState(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url})
	execAll(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE log(id INTEGER PRIMARY KEY, tid INTEGER)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, a, "CREATE TEMP TABLE scratch(x)", "INSERT INTO scratch VALUES(1)",
		"CREATE TEMP TRIGGER tr AFTER INSERT ON main.t BEGIN INSERT INTO main.log(tid) VALUES(new.id); END",
		"INSERT INTO t VALUES(1, 'local')") // not pushed: replayed by T2
	if got := rows(t, a, "SELECT tid FROM log"); got != "1" {
		t.Fatalf("before the pull: log %q, want the TEMP trigger's row", got)
	}
	pullRemoteRow(t, url, a, 2)
	if got := rows(t, a, "SELECT tid FROM log"); got != "" {
		t.Errorf("after the pull: log %q, want none (the TEMP trigger's row is gone and the trigger ended)", got)
	}
	if got := rows(t, a, "SELECT id FROM t ORDER BY id"); got != "1\n2" {
		t.Errorf("after the pull: t %q, want 1 and 2", got)
	}
	if got := writerRows(t, a, "SELECT name FROM sqlite_temp_schema"); got != "" {
		t.Errorf("after the pull: TEMP objects %q on the writer, want none", got)
	}
	mustExec(t, a, "INSERT INTO t VALUES(3, 'later')")
	if got := rows(t, a, "SELECT tid FROM log"); got != "" {
		t.Errorf("an insert after the pull: log %q, want none", got)
	}
}

// TestPullEndsPragmas: a pull resets the pragmas a user's statement set on
// the writer connection, as a new connection would (refreshWriter replaces
// the connection then), also one that cannot be read back
// (case_sensitive_like, seen by what LIKE does).
func TestPullEndsPragmas(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	execAll(t, a, "PRAGMA recursive_triggers = ON", "PRAGMA ignore_check_constraints = 1", "PRAGMA case_sensitive_like = 1")
	read := func() string {
		return writerRows(t, a, "SELECT (SELECT * FROM pragma_recursive_triggers) || (SELECT * FROM pragma_ignore_check_constraints) || ('a' LIKE 'A')")
	}
	if got := read(); got != "110" {
		t.Fatalf("before the pull: recursive_triggers, ignore_check_constraints, 'a' LIKE 'A' = %s, want 110", got)
	}
	pullRemoteRow(t, url, a, 1)
	if got := read(); got != "001" {
		t.Errorf("after the pull: recursive_triggers, ignore_check_constraints, 'a' LIKE 'A' = %s, want 001 (a new connection's)", got)
	}
}
