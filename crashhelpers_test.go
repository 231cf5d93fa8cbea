package syncdb_test

import (
	"bufio"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// Helpers the crash tests share (ARCHITECTURE §7 item 9). The replica
// killed with a power loss is powerloss_test.go's lossyReplica; newServer,
// open, mustExec and rows are syncdb_test.go's, serverWith disk_test.go's,
// closedReplica copies_test.go's.

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

// kill kills the replica where it stands: its files take no more writes.
func (r *lossyReplica) kill() {
	r.fs.Freeze()
	r.rec.Crash()
}

// powerCut kills the replica where it stands and restarts it after a
// power loss.
func (r *lossyReplica) powerCut() {
	r.t.Helper()
	r.kill()
	r.restart(true)
}

// down closes the crashed replica (dead: closing writes nothing) and lets
// its files take writes again, after a power loss if power: what the next
// open finds.
func (r *lossyReplica) down(power bool) {
	r.t.Helper()
	failpoint.Set(nil)
	if r.db != nil {
		r.db.Close()
		r.db = nil
	}
	if power {
		if err := r.fs.PowerLoss(); err != nil {
			r.t.Fatal(err)
		}
		if err := r.rec.PowerLoss(); err != nil {
			r.t.Fatal(err)
		}
	} else {
		r.rec.Resume()
	}
	r.fs.Thaw()
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
// failpoint point, then lets the files take writes again (after a power
// loss if power) for the next open.
func (r *lossyReplica) crashedOpen(point string, power bool) {
	r.t.Helper()
	fired := r.crashAt(point)
	if db, err := syncdb.Open(r.ctx, r.cfg); err == nil || !fired() {
		if db != nil {
			db.Close()
		}
		r.t.Fatalf("no crash at %s in the open: %v", point, err)
	}
	r.down(power)
}

// snapshot closes the replica, reads its files, as a disk snapshot would
// keep them, and opens it again.
func (r *lossyReplica) snapshot() map[string][]byte {
	r.t.Helper()
	r.db.Close()
	snap := snapshotFiles(r.t, r.cfg.Path)
	r.open()
	return snap
}

// snapshotFiles reads the files of the closed replica at path, as a disk
// snapshot would keep them.
func snapshotFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	snap := map[string][]byte{}
	for _, f := range replicaFiles(t, path) {
		snap[f], _ = os.ReadFile(f)
	}
	return snap
}

// restoreFiles restores the snapshot of the closed replica at path in
// place: same files, same inodes; files made since are removed, but for
// the lock.
func restoreFiles(t *testing.T, path string, snap map[string][]byte) {
	t.Helper()
	for _, f := range replicaFiles(t, path) {
		if _, ok := snap[f]; !ok && !strings.HasSuffix(f, "-lock") {
			os.Remove(f)
		}
	}
	for f, data := range snap {
		if err := os.WriteFile(f, data, 0o644); err != nil { // same inode
			t.Fatal(err)
		}
	}
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
	restoreFiles(r.t, r.cfg.Path, snap)
	r.open()
}

// pushedReplica opens another replica of url at dir/name, runs stmts on
// it and pushes them.
func pushedReplica(t *testing.T, url, dir, name string, stmts ...string) *syncdb.DB {
	t.Helper()
	db := open(t, syncdb.Config{Path: filepath.Join(dir, name), URL: url})
	execAll(t, db, stmts...)
	if err := db.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
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

// stoppedPull opens the closed replica at path, runs a pull that must stop
// at failpoint point (stopAt), and closes the replica, its files as the
// stop left them.
func stoppedPull(t *testing.T, path, point string) {
	t.Helper()
	ctx := context.Background()
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
}

// forgeServerDB runs q on the database file of the server whose data
// directory is dataDir, behind the server's back, as a compromised server
// would serve it: the server takes it in with its next commit.
func forgeServerDB(t *testing.T, dataDir, q string, args ...any) {
	t.Helper()
	plain, err := sql.Open("sqlite", filepath.Join(dataDir, "default", "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

// syncedPair checks that a has rows want in t, one change to push and no
// conflict, syncs it, and that b then pulls the same rows.
func syncedPair(t *testing.T, a, b *syncdb.DB, want string) {
	t.Helper()
	ctx := context.Background()
	if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != want {
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
	if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != want {
		t.Fatalf("the other replica: %q", got)
	}
}

// crashedPull runs a pull that must crash at failpoint point (crashAt).
func (r *lossyReplica) crashedPull(point string) {
	r.t.Helper()
	fired := r.crashAt(point)
	if _, err := r.db.Pull(context.Background()); err == nil || !fired() {
		r.t.Fatalf("no crash at %s: %v", point, err)
	}
}

// crashedCheckpoint runs a checkpoint that must crash at failpoint point
// (crashAt).
func (r *lossyReplica) crashedCheckpoint(point string) {
	r.t.Helper()
	fired := r.crashAt(point)
	if err := r.db.Checkpoint(context.Background()); err == nil || !fired() {
		r.t.Fatalf("no crash at %s: %v", point, err)
	}
}

// crashedWrite runs the write q, which must crash at failpoint point.
func (r *lossyReplica) crashedWrite(point, q string) {
	r.t.Helper()
	fired := r.crashAt(point)
	if _, err := r.db.Exec(context.Background(), q); err == nil || !fired() {
		r.t.Fatalf("no crash after the write: %v", err)
	}
}

// checkBase closes the replica, checks its recorded base against the
// server's (checkSyncedBase) and opens it again.
func (r *lossyReplica) checkBase(url string) {
	r.t.Helper()
	r.db.Close()
	checkSyncedBase(r.t, r.cfg.Path, url)
	r.open()
}

// checkTU fails the test unless db's tables t and u hold wantT and wantU
// (rows "id|v").
func checkTU(t *testing.T, db *syncdb.DB, when, wantT, wantU string) {
	t.Helper()
	gotT := rows(t, db, "SELECT id, v FROM t ORDER BY id")
	gotU := rows(t, db, "SELECT id, v FROM u ORDER BY id")
	if gotT != wantT || gotU != wantU {
		t.Fatalf("%s: t %q, u %q; want %q, %q", when, gotT, gotU, wantT, wantU)
	}
}

// wantRows checks, on each of dbs (by name), that every query of want
// gives its rows (as rows prints them).
func wantRows(t *testing.T, dbs map[string]*syncdb.DB, want map[string]string) {
	t.Helper()
	for name, db := range dbs {
		for q, w := range want {
			if got := rows(t, db, q); got != w {
				t.Errorf("%s: %s: %q, want %q", name, q, got, w)
			}
		}
	}
}

// workerCmd is a crash worker (see TestMain): this test binary run again,
// with SYNCDB_CRASH_WORKER and env added to the environment.
func workerCmd(env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "SYNCDB_CRASH_WORKER=1"), env...)
	return cmd
}

// startWorker starts the worker cmd; ready is closed once it printed its
// first line (a worker prints "ready" once its replica is open), and
// stderr collects what it says.
func startWorker(t *testing.T, cmd *exec.Cmd) (ready <-chan struct{}, stderr *strings.Builder) {
	t.Helper()
	stdout, _ := cmd.StdoutPipe()
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := make(chan struct{})
	go func() {
		if sc := bufio.NewScanner(stdout); sc.Scan() {
			close(c)
		}
	}()
	return c, stderr
}

// runKilled runs the worker cmd to its end, which must be a SIGKILL: the
// worker's dieAt at failpoint point.
func runKilled(t *testing.T, cmd *exec.Cmd, point string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the worker was not killed at %s: %v\n%s", point, err, out)
	}
}

// dieAt, in a crash worker, arms failpoint point for the replica at path:
// the first hit kills the process by SIGKILL, its files as they are.
func dieAt(path, point string) {
	failpoint.Set(func(name, owner string) {
		if name == point && strings.HasPrefix(owner, path) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
}
