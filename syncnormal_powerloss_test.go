package syncdb_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// A SyncNormal replica has local commits in its WAL that are not fsynced
// when a pull starts; a power loss cuts the pull before its T1. The
// unsynced commits may be lost (SyncNormal's promise), but the replica
// must go on: reads, writes, pulls and pushes work, and the other
// replica's row arrives.
func TestSyncNormalPullPowerLoss(t *testing.T) {
	for _, point := range []string{"pull.journal", "pull.pending"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			a := newLossyReplica(t, url)
			a.db.Close()
			a.cfg.SyncNormal = true
			a.open()
			mustExec(t, a.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.db.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, b, "INSERT INTO t VALUES(100, 'remote')")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, a.db, "INSERT INTO t VALUES(1, 'unsynced')") // in the WAL, not fsynced
			fired := a.crashAt(point)
			if _, err := a.db.Pull(ctx); err == nil || !fired() {
				t.Fatalf("no crash at %s: %v", point, err)
			}
			a.restart(true)
			got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id")
			t.Logf("after the power loss: %q", got)
			if _, err := a.db.Exec(ctx, "INSERT INTO t VALUES(2, 'after')"); err != nil {
				t.Fatalf("a write after the power loss: %v", err)
			}
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatalf("a pull after the power loss: %v", err)
			}
			if err := a.db.Push(ctx); err != nil {
				t.Fatalf("a push after the power loss: %v", err)
			}
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			gotA, gotB := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"), rows(t, b, "SELECT id, v FROM t ORDER BY id")
			if gotA != gotB {
				t.Fatalf("the replicas differ: a %q, b %q", gotA, gotB)
			}
			t.Logf("converged: %q", gotA)
		})
	}
}
