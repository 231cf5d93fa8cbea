package syncdb_test

import (
	"context"
	"errors"
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
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "CREATE TABLE audit(id INTEGER PRIMARY KEY, tid INTEGER, v TEXT)")
	mustExec(t, a, "CREATE TABLE h(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
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
