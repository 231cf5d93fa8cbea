package syncdb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// lossyReplica is a replica that a test can kill at a failpoint, with or
// without a power loss: SQLite's files go through the shim VFS's Recorder
// and syncdb's own through a CrashFS, the simulator's two crash models
// (sim/world.go), so a power loss takes back every write that was not
// fsynced and every directory change that was not made durable.
type lossyReplica struct {
	t   *testing.T
	cfg syncdb.Config
	ctx context.Context
	rec *shimvfs.Recorder
	fs  *fsx.CrashFS
	db  *syncdb.DB
}

func newLossyReplica(t *testing.T, url string) *lossyReplica {
	t.Helper()
	return newLossyReplicaWith(t, url, nil)
}

// newLossyReplicaWith is newLossyReplica with cfg changing its config
// before its first open (its bootstrap).
func newLossyReplicaWith(t *testing.T, url string, cfg func(*syncdb.Config)) *lossyReplica {
	t.Helper()
	vfs, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := shimvfs.Record(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Stop)
	r := &lossyReplica{t: t, cfg: syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url}, rec: rec, fs: fsx.NewCrashFS()}
	if cfg != nil {
		cfg(&r.cfg)
	}
	r.ctx = testhooks.With(context.Background(), testhooks.Hooks{VFS: vfs, FS: r.fs, OnPanic: func(error) {}})
	r.open()
	t.Cleanup(func() {
		failpoint.Set(nil)
		if r.db != nil {
			r.db.Close()
		}
	})
	return r
}

func (r *lossyReplica) open() {
	r.t.Helper()
	db, err := syncdb.Open(r.ctx, r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.db = db
}

// crashAt arms failpoint point: the first time this replica hits it, the
// process "dies" there (its files take no more writes) and the actor
// panics. fired reports whether it was hit.
func (r *lossyReplica) crashAt(point string) (fired func() bool) {
	return r.crashAtHit(point, 1)
}

// crashAtHit is crashAt at the n-th hit of point.
func (r *lossyReplica) crashAtHit(point string, n int) (fired func() bool) {
	var armed atomic.Bool
	var hits atomic.Int32
	armed.Store(true)
	failpoint.Set(func(name, owner string) {
		if name == point && strings.HasPrefix(owner, r.cfg.Path) && hits.Add(1) == int32(n) && armed.CompareAndSwap(true, false) {
			r.fs.Freeze()
			r.rec.Crash()
			panic(failpoint.Crash{Name: name, Owner: owner})
		}
	})
	return func() bool { return !armed.Load() }
}

// allPushed fails the test unless every local change is pushed and no
// conflict is on record.
func (r *lossyReplica) allPushed(when string) {
	r.t.Helper()
	st, err := r.db.Stats(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	if st.CDCOperations != 0 || st.Conflicts != 0 {
		r.t.Fatalf("%s: %d changes not pushed, %d conflicts", when, st.CDCOperations, st.Conflicts)
	}
}

// createTU creates the tables t and u (id INTEGER PRIMARY KEY, v TEXT).
func (r *lossyReplica) createTU() {
	r.t.Helper()
	mustExec(r.t, r.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(r.t, r.db, "CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT)")
}

// restart closes the dead replica, loses power if power (what was not
// fsynced is gone), and opens it again.
func (r *lossyReplica) restart(power bool) {
	r.t.Helper()
	r.down(power)
	r.open()
}

// restartAfter is restart(true) with disk changes between the power loss
// and the open: what a real disk may have kept that CrashFS takes back.
func (r *lossyReplica) restartAfter(kept func()) {
	r.t.Helper()
	failpoint.Set(nil)
	r.db.Close()
	r.db = nil
	if err := r.fs.PowerLoss(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.rec.PowerLoss(); err != nil {
		r.t.Fatal(err)
	}
	kept()
	r.fs.Thaw()
	r.open()
}

// A push records what the server took in one local SQLite transaction (the
// push record, and the pushed changes dropped from the change log) and
// rewrites no -info. The fsyncs of the -info rewrite it made before
// guarded against a power loss only (a torn -info.tmp, a lost rename); a
// lost record is the state of a crash right after the server committed
// (push.sent), which the server's mark recovers. So: killed at push.sent
// (nothing recorded) or at push.recorded (recorded and fsynced), with or
// without a power loss, the replica loses nothing and sends nothing twice:
// after the restart nothing is left to push but the next write, another
// replica gets every row once, and nobody has a conflict (a change applied
// twice would meet its own row and fail its guard).
func TestPushCrashPowerLoss(t *testing.T) {
	for _, point := range []string{"push.sent", "push.recorded"} {
		for _, power := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/power=%v", point, power), func(t *testing.T) {
				ctx := context.Background()
				url := newServer(t)
				a := newLossyReplica(t, url)
				mustExec(t, a.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
				if err := a.db.Push(ctx); err != nil {
					t.Fatal(err)
				}
				mustExec(t, a.db, "INSERT INTO t VALUES(1, 'one')")
				mustExec(t, a.db, "UPDATE t SET v = 'uno' WHERE id = 1")
				mustExec(t, a.db, "INSERT INTO t VALUES(2, 'two')")
				fired := a.crashAt(point)
				if err := a.db.Push(ctx); err == nil || !fired() {
					t.Fatalf("no crash at %s: %v", point, err)
				}
				a.restart(power)

				if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|uno\n2|two" {
					t.Fatalf("after the restart: %q", got)
				}
				mustExec(t, a.db, "INSERT INTO t VALUES(3, 'three')")
				if err := a.db.Push(ctx); err != nil {
					t.Fatal(err)
				}
				a.allPushed("after the next push")
				b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
				if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|uno\n2|two\n3|three" {
					t.Fatalf("another replica: %q", got)
				}
				// A change sent twice would conflict on b's next write.
				mustExec(t, b, "UPDATE t SET v = 'dos' WHERE id = 2")
				if err := b.Push(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := a.db.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|uno\n2|dos\n3|three" {
					t.Fatalf("after pulling b's update: %q", got)
				}
			})
		}
	}
}

// A pull records itself as pending in the replay journal (written in
// place and fsynced before T1; journal.written is before that fsync), not
// in -info, whose two fsyncs guarded that record against a power loss. The
// journal also holds the true header of the new base's page 1, which T1
// writes with a bumped schema cookie: it replaced -revert.next (a page-1
// copy with an fsync of its own, renamed over -revert after T2 with another
// directory sync). Killed at each of its steps, with or without a power
// loss, the replica comes back either without the pull (before T1
// committed) or with it, the local row on top, and nothing lost; and its
// synced base is the server's revision byte for byte, page 1 included (the
// other replica's CREATE TABLE makes the server send page 1). Then it
// writes a row and dies again with a power loss: a journal that came back
// (an abandoned pull's, or a finished pull's never removed) must not take
// that write for T1. The remote row is in a table of its own, so that a
// replica that took the wrong base would never get it (later pulls do not
// send its page). At the end every replica has every row once and no
// conflict.
func TestPullCrashPowerLoss(t *testing.T) {
	points := []string{"journal.written", "pull.journal", "pull.pending", "pull.t1", "pull.t2", "pull.done"}
	for i, point := range points {
		for _, power := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/power=%v", point, power), func(t *testing.T) {
				ctx := context.Background()
				url := newServer(t)
				a := newLossyReplica(t, url)
				a.unpushedRow(false)
				b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE w(x)", "INSERT INTO u VALUES(2, 'remote')")
				a.crashedPull(point)
				a.restart(power)
				remote := "2|remote"
				if i < 3 { // T1 had not run: the pull is undone
					remote = ""
				}
				checkTU(t, a.db, "after the restart", "1|local", remote)
				a.checkBase(url)

				a.crashedWrite("write.committed", "INSERT INTO t VALUES(3, 'three')")
				a.restart(true)
				checkTU(t, a.db, "after a write and a power loss", "1|local\n3|three", remote)
				a.checkBase(url)

				if err := a.db.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				checkTU(t, a.db, "after a sync", "1|local\n3|three", "2|remote")
				a.allPushed("after a sync")
				if _, err := b.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				checkTU(t, b, "the other replica", "1|local\n3|three", "2|remote")
				// The sync's pull did not change page 1: the base kept its
				// recorded header.
				a.checkBase(url)
			})
		}
	}
}

// A pull does not write -info: its T2 records the new base in the
// database (_syncdb_local 'synced_base', fsynced with T2's commit), and
// -info takes it in memory, written by the next update that writes (a
// checkpoint, a clean close, an open). That removed the pull's last -info
// rewrite, its fsync and its directory sync. So -info on disk may be one
// pull (or more) behind: a power loss after a finished pull then finds it
// stale, and open takes the base from the database (reconcileBase) once
// it has finished or abandoned a pending pull. Here a finished pull is followed by a
// write, or by a second pull killed at each of its steps, then a power
// loss: the replica keeps every row, its base is the server's revision
// page for page, and a sync lands everything once. The second pull's
// journal replaces the first's, so only the database's record can tell
// the first pull finished (a second pull killed before its T1 would
// otherwise be abandoned onto the first pull's old base).
func TestPullDeferredInfoPowerLoss(t *testing.T) {
	for _, point := range []string{"write.committed", "checkpoint.revert", "pull.journal", "pull.t1", "pull.t2", "pull.done"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			a := newLossyReplica(t, url)
			// The base before the first pull has pages in the revert store.
			a.unpushedRow(true)
			b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE w(x)", "INSERT INTO u VALUES(2, 'remote')")
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			wantT, wantU, finalU := "1|local", "2|remote", "2|remote"
			fired := a.crashAt(point)
			switch point {
			case "write.committed":
				if _, err := a.db.Exec(ctx, "INSERT INTO t VALUES(3, 'three')"); err == nil || !fired() {
					t.Fatalf("no crash after the write: %v", err)
				}
				wantT = "1|local\n3|three"
			case "checkpoint.revert":
				// The checkpoint overwrites the revert store from its
				// start (the new base's is empty) and syncs it, before it
				// writes -info: a stale -info's base would read these.
				mustExec(t, a.db, "INSERT INTO t VALUES(3, 'three')")
				if err := a.db.Checkpoint(ctx); err == nil || !fired() {
					t.Fatalf("no crash at %s: %v", point, err)
				}
				wantT = "1|local\n3|three"
			default:
				mustExec(t, b, "INSERT INTO u VALUES(4, 'remote2')")
				if err := b.Push(ctx); err != nil {
					t.Fatal(err)
				}
				finalU = "2|remote\n4|remote2"
				if _, err := a.db.Pull(ctx); err == nil || !fired() {
					t.Fatalf("no crash at %s: %v", point, err)
				}
				if point != "pull.journal" { // T1 committed: the second pull is kept
					wantU = "2|remote\n4|remote2"
				}
			}
			a.restartAfter(func() {
				if point != "write.committed" {
					return
				}
				// The first pull cut the old revert store without
				// syncing: a real disk may keep that (CrashFS takes it
				// back). Its journal stays in place (the next pull
				// rewrites it), and only the database's record says the
				// pull finished.
				if err := os.Truncate(a.cfg.Path+"-revert", 0); err != nil {
					t.Fatal(err)
				}
			})
			checkTU(t, a.db, "after the power loss", wantT, wantU)
			a.checkBase(url)
			mustExec(t, a.db, "INSERT INTO t VALUES(5, 'five')")
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after a sync")
			wantT += "\n5|five"
			checkTU(t, a.db, "after a sync", wantT, finalU)
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			checkTU(t, b, "the other replica", wantT, finalU)
			a.checkBase(url)
		})
	}
}

// A checkpoint first saves, in the revert store, the base image of every
// page the WAL's local frames hold (then -info records it, with
// Checkpointing set), then copies the WAL into the database file, then
// records the finished checkpoint in -info (fsx.renamed, its second hit:
// renamed, the directory not yet synced). Killed at each step, with or
// without a power loss, then reopened, written (a page the checkpoint did
// not save: table u) and killed again after a commit with a power loss,
// which may take back the finishing -info write of a process that died
// before its directory sync: the replica loses nothing. A pull rebases the
// local changes before they are pushed (so a base that took in a local
// page would hide its change from the replay), and the other replica gets
// every row. Found by the simulator at seed 76: the recovery copied the
// later commits into the database file, without their base images.
func TestCheckpointCrashPowerLoss(t *testing.T) {
	points := []struct {
		name string
		hit  int
	}{{"checkpoint.revert", 1}, {"fsx.renamed", 1}, {"checkpoint.meta", 1}, {"checkpoint.copied", 1}, {"fsx.synced", 2}, {"fsx.renamed", 2}}
	for _, p := range points {
		for _, power := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s-%d/power=%v", p.name, p.hit, power), func(t *testing.T) {
				ctx := context.Background()
				url := newServer(t)
				a := newLossyReplica(t, url)
				a.createTU()
				// Pushed and pulled: the synced base has both tables' pages.
				if err := a.db.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				mustExec(t, a.db, "INSERT INTO t VALUES(1, 'local')") // not pushed
				fired := a.crashAtHit(p.name, p.hit)
				if err := a.db.Checkpoint(ctx); err == nil || !fired() {
					t.Fatalf("no crash at %s #%d: %v", p.name, p.hit, err)
				}
				a.restart(power)
				checkTU(t, a.db, "after the restart", "1|local", "")

				mustExec(t, a.db, "INSERT INTO u VALUES(1, 'after')")
				a.crashedWrite("write.committed", "INSERT INTO t VALUES(2, 'killed')")
				a.restart(true)
				checkTU(t, a.db, "after writes and a power loss", "1|local\n2|killed", "1|after")

				b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
				mustExec(t, b, "INSERT INTO t VALUES(3, 'remote')")
				if err := b.Push(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := a.db.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				checkTU(t, a.db, "after a pull", "1|local\n2|killed\n3|remote", "1|after")
				if err := a.db.Push(ctx); err != nil {
					t.Fatal(err)
				}
				a.allPushed("after the push")
				if _, err := b.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				checkTU(t, b, "the other replica", "1|local\n2|killed\n3|remote", "1|after")
			})
		}
	}
}

// A clean close whose checkpoint could not record its end (an -info write
// failed) leaves the checkpoint to the next open, with the close's WAL end
// recorded (a SyncNormal replica's close commits once more). A crash while
// that open recovers the checkpoint (after its copy emptied the WAL) must
// not make the open after it take the emptied WAL for a foreign write.
// Found by the simulator at seed 151.
func TestCheckpointRecoveryCrashAfterCleanClose(t *testing.T) {
	a := newSyncNormalReplica(t, newServer(t))
	mustExec(t, a.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a.db, "INSERT INTO t VALUES(1, 'one')")
	var writes atomic.Int32
	a.fs.SetFault(func(op, path string) error {
		if op == "write" && strings.Contains(filepath.Base(path), "-info") && writes.Add(1) == 2 {
			return errors.New("injected write error") // the checkpoint's last record
		}
		return nil
	})
	a.db.Close()
	a.db = nil
	a.fs.SetFault(nil)
	if writes.Load() < 3 {
		t.Fatalf("%d -info writes at close: the checkpoint's end and the clean close were not both tried", writes.Load())
	}
	a.crashedOpen("checkpoint.copied", false) // in the open's checkpoint recovery
	a.open()
	mustExec(t, a.db, "INSERT INTO t VALUES(2, 'two')")
	if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|one\n2|two" {
		t.Fatalf("rows %q", got)
	}
}
