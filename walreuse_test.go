package syncdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
)

// The automatic checkpoint leaves the WAL file in place (RESTART): SQLite
// writes the next commits over the copied generation from its start, and
// the base's W names that generation's end (Copied). These tests write
// through several such checkpoints, with crashes and power losses at each
// step, and check the base against the server's revision page for page.

// newAutoCheckpointReplica is a lossy replica that checkpoints after every
// few writes (AutoCheckpointFrames 20), with the tables t and u synced.
func newAutoCheckpointReplica(t *testing.T, url string) *lossyReplica {
	t.Helper()
	r := newLossyReplica(t, url)
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	r.cfg.AutoCheckpointFrames = 20
	r.open()
	r.createTU()
	if err := r.db.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// countCheckpoints counts the replica's checkpoint copies (failpoint
// checkpoint.copied) until another failpoint hook is set.
func (r *lossyReplica) countCheckpoints() *atomic.Int32 {
	var n atomic.Int32
	failpoint.Set(func(name, owner string) {
		if name == "checkpoint.copied" && strings.HasPrefix(owner, r.cfg.Path) {
			n.Add(1)
		}
	})
	return &n
}

// localRows inserts rows from..to into t, one write each, and returns
// what t then holds (as rows prints it), with the rows before from.
func (r *lossyReplica) localRows(from, to int) string {
	r.t.Helper()
	for i := from; i <= to; i++ {
		mustExec(r.t, r.db, fmt.Sprintf("INSERT INTO t VALUES(%d, 'local %d')", i, i))
	}
	return tRows(to)
}

// tRows is t's rows 1..n as localRows writes them.
func tRows(n int) string {
	var b []string
	for i := 1; i <= n; i++ {
		b = append(b, fmt.Sprintf("%d|local %d", i, i))
	}
	return strings.Join(b, "\n")
}

// finishSync checks t and u on a, pushes and pulls, and checks that
// another replica gets the same rows and nothing is left to push.
func (r *lossyReplica) finishSync(url, wantT, wantU string) {
	r.t.Helper()
	ctx := context.Background()
	checkTU(r.t, r.db, "before the sync", wantT, wantU)
	if err := r.db.Sync(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.allPushed("after the sync")
	b := open(r.t, syncdb.Config{Path: filepath.Join(r.t.TempDir(), "b.db"), URL: url})
	checkTU(r.t, b, "the other replica", wantT, wantU)
	r.checkBase(url)
}

// Writes through several automatic checkpoints: the WAL file is reused,
// never emptied, and the base stays the server's revision (a checkpoint
// saves the base images of the pages of the restarted generation, which
// SQLite wrote over the frames of the copied one).
func TestAutoCheckpointReusesWAL(t *testing.T) {
	url := newServer(t)
	r := newAutoCheckpointReplica(t, url)
	n := r.countCheckpoints()
	minSize := int64(-1)
	var u []string
	for i := 1; i <= 40; i++ {
		r.localRows(i, i)
		// Table u's pages are in the base's frames of the first generation
		// (the sync's pull wrote them) and in no local frame before the
		// first checkpoint: their base images are first saved by the
		// second, which copies the generation SQLite restarted over the
		// first one's frames.
		if n.Load() == 1 {
			mustExec(t, r.db, fmt.Sprintf("INSERT INTO u VALUES(%d, 'u')", i))
			u = append(u, fmt.Sprintf("%d|u", i))
		}
		if n.Load() > 0 {
			if s := fileSize(t, r.cfg.Path+"-wal"); minSize < 0 || s < minSize {
				minSize = s
			}
		}
	}
	if n.Load() < 3 {
		t.Fatalf("%d automatic checkpoints in 40 writes, want 3 or more", n.Load())
	}
	if minSize <= 0 {
		t.Fatalf("the WAL was emptied by an automatic checkpoint (%d bytes)", minSize)
	}
	failpoint.Set(nil)
	r.checkBase(url)
	r.finishSync(url, tRows(40), strings.Join(u, "\n"))
}

// Killed at each step of an automatic checkpoint, with or without a power
// loss, then written through more checkpoints and killed after a commit
// with a power loss: nothing is lost, the base is the server's, and a sync
// lands every row once.
func TestAutoCheckpointCrashPowerLoss(t *testing.T) {
	for _, point := range []string{"checkpoint.revert", "checkpoint.meta", "checkpoint.copied"} {
		for _, power := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/power=%v", point, power), func(t *testing.T) {
				url := newServer(t)
				r := newAutoCheckpointReplica(t, url)
				// Past the first checkpoint: the second one restarts a
				// reused WAL.
				n := r.countCheckpoints()
				i := 0
				for n.Load() < 1 {
					i++
					r.localRows(i, i)
				}
				fired := r.crashAt(point)
				for !fired() {
					i++
					if _, err := r.db.Exec(context.Background(), fmt.Sprintf("INSERT INTO t VALUES(%d, 'local %d')", i, i)); err != nil && !fired() {
						t.Fatal(err)
					}
					if i > 100 {
						t.Fatalf("no crash at %s in 100 writes", point)
					}
				}
				r.restart(power)
				// The write that checkpointed had committed, durably.
				checkTU(t, r.db, "after the restart", tRows(i), "")
				r.checkBase(url)
				want := r.localRows(i+1, i+15)
				r.crashedWrite("write.committed", "INSERT INTO u VALUES(1, 'killed')")
				r.restart(true)
				r.checkBase(url)
				r.finishSync(url, want, "1|killed")
			})
		}
	}
}

// A pull right after an automatic checkpoint copied the whole WAL: its T1
// is the first commit since, which SQLite writes at the start of a new
// generation. Killed after T1 or T2, with or without a power loss, the
// pull is finished at the next open (recovery finds T1 after the anchor
// commit, in the same generation), the local rows kept.
func TestPullAfterAutoCheckpointCrash(t *testing.T) {
	for _, point := range []string{"pull.t1", "pull.t2"} {
		for _, power := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/power=%v", point, power), func(t *testing.T) {
				url := newServer(t)
				r := newAutoCheckpointReplica(t, url)
				b := pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO u VALUES(2, 'remote')")
				defer b.Close()
				n := r.countCheckpoints()
				i := 0
				for n.Load() < 2 { // stop at the write that checkpointed
					i++
					r.localRows(i, i)
				}
				r.crashedPull(point)
				r.restart(power)
				checkTU(t, r.db, "after the restart", tRows(i), "2|remote")
				r.checkBase(url)
				r.finishSync(url, tRows(i), "2|remote")
			})
		}
	}
}

// Another program's commit into a WAL the automatic checkpoint left in
// place lands over the copied generation's frames, within the file's
// size: the next write is refused as a foreign one all the same.
func TestForeignWriteInReusedWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	db := open(t, syncdb.Config{Path: path, AutoCheckpointFrames: 20})
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	for i := 1; i <= 30; i++ {
		mustExec(t, db, fmt.Sprintf("INSERT INTO t VALUES(%d, 'local')", i))
	}
	size := fileSize(t, path+"-wal")
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec("INSERT INTO t VALUES(100, 'foreign')"); err != nil {
		t.Fatal(err)
	}
	other.Close() // not the last connection: no checkpoint
	if got := fileSize(t, path+"-wal"); got != size {
		t.Fatalf("the foreign commit changed the WAL's size (%d, was %d): the test tests nothing", got, size)
	}
	if _, err := db.Exec(ctx, "INSERT INTO t VALUES(31, 'local')"); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("write after a foreign commit in the reused WAL: %v, want ErrExternalModification", err)
	}
}

// A transaction that grows the WAL far past the automatic checkpoint's
// threshold does not leave the file that large until Close: SQLite cuts it
// back (journal_size_limit, twice the threshold) at the first commit after
// it restarts the WAL.
func TestReusedWALSizeLimited(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	db := open(t, syncdb.Config{Path: path, AutoCheckpointFrames: 20})
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := db.Tx(ctx, func(tx *syncdb.Tx) error {
		for i := 0; i < 500; i++ {
			if _, err := tx.Exec(ctx, "INSERT INTO t(v) VALUES(hex(randomblob(1000)))"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	big := fileSize(t, path+"-wal")
	limit := int64(32 + 2*20*(24+4096))
	if big <= 2*limit {
		t.Fatalf("the transaction's WAL has %d bytes, not far past the limit (%d): the test tests nothing", big, limit)
	}
	mustExec(t, db, "INSERT INTO t(v) VALUES('after')") // the WAL restarted and cut
	if got := fileSize(t, path+"-wal"); got > limit {
		t.Fatalf("the WAL has %d bytes after a restart, want at most %d (it had %d)", got, limit, big)
	}
}
