package syncdb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// dropChains removes every push chain row from the server: what a server
// that keeps only the marks holds (through its Hrana path: serverExec).
func dropChains(t *testing.T, url string) {
	t.Helper()
	serverExec(t, url, "DELETE FROM turso_sync_last_change_id WHERE client_id LIKE '%:chain'")
}

// A server whose mark for this client claims changes the replica made but
// never sent, with no push chain row to verify it (forged, or a buggy
// server): the pull, and the push, refuse it as a copy's mark
// (ErrClientCloned) instead of taking those changes as pushed, and drop
// nothing: the unpushed rows stay, still unpushed, and once the replica is
// recovered (an id of its own) they reach the server.
func TestPullForgedMarkWithoutChain(t *testing.T) {
	for _, op := range []string{"pull", "push"} {
		t.Run(op, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			path := filepath.Join(t.TempDir(), "a.db")
			a := open(t, syncdb.Config{Path: path, URL: url})
			mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			if err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				mustExec(t, a, "INSERT INTO t VALUES(?, 'unpushed')", i)
			}
			// Two of the three inserts claimed: change ids the replica
			// holds, so only what it sent tells the claim is false.
			serverExec(t, url, "UPDATE turso_sync_last_change_id SET change_id = change_id + 2 WHERE client_id NOT LIKE '%:chain'")
			dropChains(t, url)
			sync := func() error {
				if op == "pull" {
					_, err := a.Pull(ctx)
					return err
				}
				return a.Push(ctx)
			}
			err := sync()
			want := "1|unpushed\n2|unpushed\n3|unpushed"
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != want {
				t.Errorf("after the %s: %q, want %q", op, got, want)
			}
			if st, err := a.Stats(ctx); err != nil || st.CDCOperations != 3 {
				t.Errorf("after the %s: %d changes to push (%v), want 3", op, st.CDCOperations, err)
			}
			if !errors.Is(err, syncdb.ErrClientCloned) {
				t.Fatalf("%s with a forged mark: %v, want ErrClientCloned", op, err)
			}
			if !strings.Contains(err.Error(), "no push chain") {
				t.Errorf("the error does not say why: %v", err)
			}
			noPrefix(t, op, err)
			if err := sync(); !errors.Is(err, syncdb.ErrClientCloned) {
				t.Fatalf("a second %s: %v", op, err)
			}
			a.Close()
			a = open(t, syncdb.Config{Path: path, Recover: true})
			if err := a.Sync(ctx); err != nil {
				t.Fatalf("sync after recovering: %v", err)
			}
			c := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "c.db"), URL: url})
			if got := rows(t, c, "SELECT id, v FROM t ORDER BY id"); got != want {
				t.Fatalf("the server has %q, want %q", got, want)
			}
		})
	}
}

// chainlessServer makes the server at url keep no push chain rows, only
// the marks, as a server that does not know them might: a trigger of its
// database ignores every write of one.
func chainlessServer(t *testing.T, url string) {
	t.Helper()
	serverExec(t, url, "CREATE TABLE IF NOT EXISTS turso_sync_last_change_id (client_id TEXT PRIMARY KEY, pull_gen INTEGER, change_id INTEGER)")
	serverExec(t, url, "CREATE TRIGGER no_chain BEFORE INSERT ON turso_sync_last_change_id "+
		"WHEN new.client_id LIKE '%:chain' BEGIN SELECT RAISE(IGNORE); END")
}

// A server that keeps no push chain rows and a push whose answer is lost
// (killed at push.sent, with or without a power loss): the batch's mark is
// beyond what the replica knows was pushed, but not beyond what it
// recorded as sent before sending, so the next pull takes it as before
// the chain existed, with no ErrClientCloned, and nothing is sent twice.
func TestChainlessServerPushAnswerLost(t *testing.T) {
	for _, power := range []bool{false, true} {
		t.Run(fmt.Sprintf("power=%v", power), func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			chainlessServer(t, url)
			a := newLossyReplica(t, url)
			mustExec(t, a.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			if err := a.db.Push(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, a.db, "INSERT INTO t VALUES(1, 'one')")
			mustExec(t, a.db, "INSERT INTO t VALUES(2, 'two')")
			fired := a.crashAt("push.sent")
			if err := a.db.Push(ctx); err == nil || !fired() {
				t.Fatalf("no crash at push.sent: %v", err)
			}
			a.restart(power)
			mustExec(t, a.db, "INSERT INTO t VALUES(3, 'three')")
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatalf("pull after the lost answer: %v", err)
			}
			if err := a.db.Push(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after the next push")
			b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
			want := "1|one\n2|two\n3|three"
			if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != want {
				t.Fatalf("another replica: %q, want %q", got, want)
			}
			// A change sent twice would conflict on b's next write.
			mustExec(t, b, "UPDATE t SET v = 'dos' WHERE id = 2")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|one\n2|dos\n3|three" {
				t.Fatalf("after pulling b's update: %q", got)
			}
			if got := rows(t, b, "SELECT count(*) FROM turso_sync_last_change_id WHERE client_id LIKE '%:chain'"); got != "0" {
				t.Fatalf("the server kept %s chain rows", got)
			}
		})
	}
}

// A copied replica (cp -a) on a server that keeps no push chain rows. The
// copy takes a new client id and claims the change it inherited unpushed
// by moving the old id's mark past it (home.go, settleFork); its own new
// mark is the fork's, which its hints record, so it is never refused. The
// original cannot tell that claim from a forged mark: both are beyond
// what it sent, with no chain to show the changes are its own. So it is
// refused (ErrClientCloned) rather than drop what it cannot verify, keeps
// its changes, and once recovered every write reaches both replicas once.
// (With chain rows the claim carries the chain of the shared changes and
// the original takes it: TestCopiedReplicaTakesANewClientID.)
func TestCopiedReplicaChainlessServer(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	chainlessServer(t, url)
	dir := t.TempDir()
	orig := closedReplica(t, url, dir, "made before the copy")
	os.Mkdir(filepath.Join(dir, "elsewhere"), 0o755)
	cp := filepath.Join(dir, "elsewhere", "a.db")
	copyReplica(t, orig, cp)
	a := open(t, syncdb.Config{Path: orig})
	b := open(t, syncdb.Config{Path: cp})
	mustExec(t, a, "INSERT INTO t VALUES(2, 'original')")
	mustExec(t, b, "INSERT INTO t VALUES(3, 'copy')")
	if err := b.Sync(ctx); err != nil {
		t.Fatalf("the copy's sync: %v", err)
	}
	err := a.Sync(ctx)
	if !errors.Is(err, syncdb.ErrClientCloned) || !strings.Contains(err.Error(), "no push chain") {
		t.Fatalf("the original's sync after the copy claimed the inherited change: %v, want ErrClientCloned", err)
	}
	if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|made before the copy\n2|original" {
		t.Fatalf("the refused original: %q", got)
	}
	a.Close()
	a = open(t, syncdb.Config{Path: orig, Recover: true})
	for _, db := range []*syncdb.DB{a, b, a} {
		if err := db.Sync(ctx); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	want := "1|made before the copy\n2|original\n3|copy"
	for name, db := range map[string]*syncdb.DB{"original": a, "copy": b} {
		if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
		if cs := conflicts(t, db); len(cs) != 0 {
			t.Errorf("%s: conflicts %+v", name, cs)
		}
	}
}

// The same, when the original's last push before the copy lost its answer
// (killed at push.sent): the old id's mark is past what either copy knows
// was pushed, and the copy's fork starts its new id there. Both sent that
// change (it is in the 'sent' record they share; the copy's new mark is in
// the hints its fork's settling wrote), so neither is refused, and the
// change reaches the server once.
func TestCopiedReplicaChainlessServerAnswerLost(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	chainlessServer(t, url)
	dir := t.TempDir()
	orig := filepath.Join(dir, "a.db")
	a, err := syncdb.Open(testhooks.With(ctx, testhooks.Hooks{OnPanic: func(error) {}}), syncdb.Config{Path: orig, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(1, 'sent before the copy')")
	fired := stopAt(t, "push.sent", orig)
	if err := a.Push(ctx); err == nil || !fired() {
		t.Fatalf("no crash at push.sent: %v", err)
	}
	a.Close()
	os.Mkdir(filepath.Join(dir, "elsewhere"), 0o755)
	cp := filepath.Join(dir, "elsewhere", "a.db")
	copyReplica(t, orig, cp)
	a = open(t, syncdb.Config{Path: orig})
	b := open(t, syncdb.Config{Path: cp})
	mustExec(t, a, "INSERT INTO t VALUES(2, 'original')")
	mustExec(t, b, "INSERT INTO t VALUES(3, 'copy')")
	for _, db := range []*syncdb.DB{b, a, b, a} {
		if err := db.Sync(ctx); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	want := "1|sent before the copy\n2|original\n3|copy"
	for name, db := range map[string]*syncdb.DB{"original": a, "copy": b} {
		if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
		if cs := conflicts(t, db); len(cs) != 0 {
			t.Errorf("%s: conflicts %+v", name, cs)
		}
	}
}
