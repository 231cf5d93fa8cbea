package syncdb_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// A pull that stops right after its first transaction (the server's pages
// written, the local changes not yet replayed on them) or right after its
// second (replayed, the new base not yet recorded) is finished by the next
// Open: the remote row and the local unpushed one are both there, with no
// conflict and one change left to push, and the replica syncs on. After T1 the database holds only the
// server's pages, which have no _syncdb_local: recovery must take that for
// "T2 has not run", not fail.
func TestPullStoppedAfterEachTransaction(t *testing.T) {
	for _, point := range []string{"pull.t1", "pull.t2"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			path := closedReplica(t, url, dir, "local") // row 1, not pushed
			b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
			mustExec(t, b, "INSERT INTO t VALUES(2, 'remote')")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}

			fired := stopAt(t, point, path)
			a, err := syncdb.Open(testhooks.With(ctx, testhooks.Hooks{OnPanic: func(error) {}}), syncdb.Config{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Pull(ctx)
			a.Close()
			if err == nil || !fired() {
				t.Fatalf("no stop at %s: %v", point, err)
			}

			a = open(t, syncdb.Config{Path: path})
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote" {
				t.Fatalf("after the reopen: %q", got)
			}
			st, err := a.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Conflicts != 0 || st.CDCOperations != 1 {
				t.Fatalf("after the reopen: %d conflicts, %d changes to push (want 0 and 1)", st.Conflicts, st.CDCOperations)
			}
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote" {
				t.Fatalf("the other replica: %q", got)
			}
		})
	}
}

// stopAt arms failpoint point for the replica at path (and its files):
// the first time it is hit, the actor there panics as a simulated crash,
// leaving the files as they are. fired reports whether it was hit. The
// failpoint is disarmed when the test ends.
func stopAt(t *testing.T, point, path string) (fired func() bool) {
	var armed atomic.Bool
	armed.Store(true)
	failpoint.Set(func(name, owner string) {
		if name == point && strings.HasPrefix(owner, path) && armed.CompareAndSwap(true, false) {
			panic(failpoint.Crash{Name: name, Owner: owner})
		}
	})
	t.Cleanup(func() { failpoint.Set(nil) })
	return func() bool { return !armed.Load() }
}
