package syncdb_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
)

// Helpers the crash tests share (ARCHITECTURE §7 item 9). The replica
// itself is powerloss_test.go's lossyReplica; the server, open, mustExec
// and rows are syncdb_test.go's.

// newSyncNormalReplica is newLossyReplica with Config.SyncNormal set: its
// local commits are not fsynced, so a power loss may take them back.
func newSyncNormalReplica(t *testing.T, url string) *lossyReplica {
	t.Helper()
	r := newLossyReplica(t, url)
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	r.cfg.SyncNormal = true
	r.open()
	return r
}

// unpushedRow creates the tables t and u, pushes them, and inserts the
// row (1, 'local') into t without pushing it; checkpoint then moves it
// into the database file (the base then has pages in the revert store).
func (r *lossyReplica) unpushedRow(checkpoint bool) {
	r.t.Helper()
	r.createTU()
	if err := r.db.Push(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	mustExec(r.t, r.db, "INSERT INTO t VALUES(1, 'local')") // not pushed
	if checkpoint {
		if err := r.db.Checkpoint(context.Background()); err != nil {
			r.t.Fatal(err)
		}
	}
}

// powerCut kills the replica where it stands (its files take no more
// writes) and restarts it after a power loss.
func (r *lossyReplica) powerCut() {
	r.t.Helper()
	r.fs.Freeze()
	r.rec.Crash()
	r.restart(true)
}

// recoverOpen closes the replica and opens it once with Config.Recover.
func (r *lossyReplica) recoverOpen() {
	r.t.Helper()
	r.db.Close()
	r.cfg.Recover = true
	r.open()
	r.cfg.Recover = false
}

// crashedOpen runs an Open of the closed replica that must crash at
// failpoint point, then lets the files take writes again (no power loss)
// for the next open.
func (r *lossyReplica) crashedOpen(point string) {
	r.t.Helper()
	fired := r.crashAt(point)
	if db, err := syncdb.Open(r.ctx, r.cfg); err == nil || !fired() {
		if db != nil {
			db.Close()
		}
		r.t.Fatalf("no crash at %s in the open: %v", point, err)
	}
	failpoint.Set(nil)
	r.rec.Resume()
	r.fs.Thaw()
}

// snapshot closes the replica, reads its files, as a disk snapshot would
// keep them, and opens it again.
func (r *lossyReplica) snapshot() map[string][]byte {
	r.t.Helper()
	r.db.Close()
	snap := map[string][]byte{}
	for _, f := range replicaFiles(r.t, r.cfg.Path) {
		snap[f], _ = os.ReadFile(f)
	}
	r.open()
	return snap
}

// rollBack closes the replica, restores the snapshot in place (same
// files, same inodes; files made since are removed, but for the lock) and
// opens it again.
func (r *lossyReplica) rollBack(snap map[string][]byte) {
	r.t.Helper()
	r.db.Close()
	if err := r.rec.PowerLoss(); err != nil { // forget the recorded files: the snapshot replaces them
		r.t.Fatal(err)
	}
	for _, f := range replicaFiles(r.t, r.cfg.Path) {
		if _, ok := snap[f]; !ok && !strings.HasSuffix(f, "-lock") {
			os.Remove(f)
		}
	}
	for f, data := range snap {
		if err := os.WriteFile(f, data, 0o644); err != nil { // same inode
			r.t.Fatal(err)
		}
	}
	r.open()
}

// pushedReplica opens another replica of url at dir/name, runs stmts on
// it and pushes them.
func pushedReplica(t *testing.T, url, dir, name string, stmts ...string) *syncdb.DB {
	t.Helper()
	db := open(t, syncdb.Config{Path: filepath.Join(dir, name), URL: url})
	for _, q := range stmts {
		mustExec(t, db, q)
	}
	if err := db.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}
