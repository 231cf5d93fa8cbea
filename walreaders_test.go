package syncdb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/testhooks"
)

// A checkpoint held back part of the way by a read-pool reader whose
// snapshot predates a pull's T1 has not copied all of the base's frames: W
// must stay in the WAL (not Copied), or the base reads T1's pages from the
// database file's stale copy and the next checkpoint saves the wrong image
// into -revert (dbactor/checkpoint.go: copyWAL, "all"). The explicit
// Checkpoint waits out the writer's busy timeout for the reader, made
// short here (shortBusyTimeout): the reader holds on however long it waits.
func TestCheckpointHeldBackByReaderBeforePull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := newServer(t)
	r := newAutoCheckpointReplica(t, url)
	r.cfg.AutoCheckpointFrames = -1
	r.db.Close()
	r.shortBusyTimeout()
	r.open()
	b := pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO u VALUES(2, 'remote')", "UPDATE t SET v = v")
	defer b.Close()
	r.localRows(1, 3)
	rs, err := r.db.Query(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if !rs.Next() {
		t.Fatalf("the reader has no row: %v", rs.Err())
	}
	if _, err := r.db.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	r.localRows(4, 5)
	if err := r.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rs.Close()
	mustExec(t, r.db, "INSERT INTO u VALUES(50, 'local u')")
	r.checkBase(url)
	r.finishSync(url, tRows(5), "2|remote\n50|local u")
}

// An explicit checkpoint held back by a reader whose snapshot has every
// frame copies them all but cannot truncate: W is Copied and the writes
// made while the reader holds on are appended to the copied generation.
// A pull killed at T1 with a power loss must keep them and the base.
func TestCheckpointReaderBlocksTruncate(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	r := newAutoCheckpointReplica(t, url)
	r.db.Close()
	r.shortBusyTimeout()
	r.open()
	b := pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO u VALUES(2, 'remote')")
	defer b.Close()
	r.localRows(1, 5)
	rs, err := r.db.Query(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if !rs.Next() {
		t.Fatalf("the reader has no row: %v", rs.Err())
	}
	if err := r.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if s := fileSize(t, r.cfg.Path+"-wal"); s == 0 {
		t.Fatal("the WAL was truncated: the reader did not hold it")
	}
	r.localRows(6, 8)
	rs.Close()
	r.localRows(9, 10)
	r.crashedPull("pull.t1")
	r.restart(true)
	checkTU(t, r.db, "after the pull's restart", tRows(10), "2|remote")
	r.localRows(11, 40)
	r.checkBase(url)
	r.finishSync(url, tRows(40), "2|remote")
}

// Killed right after an automatic checkpoint copied the whole WAL (W
// Copied, the WAL not yet restarted): the reopened SQLite rebuilds its
// index with nothing marked copied, so the next commit is appended to the
// copied generation instead of restarting it, and a pull's anchor commit
// goes there too. Writes, a pull killed at T1 or T2, with and without a
// power loss, and more checkpoints after must keep every row and the base.
func TestCopiedWALReopened(t *testing.T) {
	for _, extra := range []int{0, 3} {
		for _, point := range []string{"pull.t1", "pull.t2"} {
			for _, power := range []bool{false, true} {
				t.Run(fmt.Sprintf("extra=%d/%s/power=%v", extra, point, power), func(t *testing.T) {
					url := newServer(t)
					r := newAutoCheckpointReplica(t, url)
					b := pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO u VALUES(2, 'remote')")
					defer b.Close()
					n := r.countCheckpoints()
					i := 0
					for n.Load() < 1 {
						i++
						r.localRows(i, i)
					}
					r.crashedWrite("write.captured", "INSERT INTO t VALUES(1000, 'lost')")
					r.restart(power)
					checkTU(t, r.db, "after the kill", tRows(i), "")
					r.localRows(i+1, i+extra)
					i += extra
					r.crashedPull(point)
					r.restart(power)
					checkTU(t, r.db, "after the pull's restart", tRows(i), "2|remote")
					r.localRows(i+1, i+30) // more checkpoints
					i += 30
					r.checkBase(url)
					r.finishSync(url, tRows(i), "2|remote")
				})
			}
		}
	}
}

// shortBusyTimeout makes the writer's busy timeout 200 ms from the next
// open, instead of 10 s: a checkpoint that a test's reader holds back on
// purpose gives up as soon, with the same outcome (the reader does not
// let go while it waits), and the test does not idle 10 s.
func (r *lossyReplica) shortBusyTimeout() {
	h := testhooks.From(r.ctx)
	h.WriterBusyTimeout = 200 * time.Millisecond
	r.ctx = testhooks.With(context.Background(), h)
}
