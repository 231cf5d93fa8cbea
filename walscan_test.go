package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/walfile"
)

// replicaWALTxns lists the committed transactions in the replica's WAL.
func replicaWALTxns(t *testing.T, path string) [][]walfile.Frame {
	t.Helper()
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var txns [][]walfile.Frame
	if _, err := walfile.Scan(f, st.Size(), walfile.Position{}, func(txn []walfile.Frame) error {
		txns = append(txns, txn)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return txns
}

// breakReplicaFrame makes frame i of the replica's WAL invalid (its stored
// checksum changes), as a torn write can: SQLite's recovery, and syncdb's
// scans, see no commit at or after it; the frames after it stay in the file.
func breakReplicaFrame(t *testing.T, path string, i int) {
	t.Helper()
	f, err := os.OpenFile(path+"-wal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := walfile.HeaderSize + int64(i-1)*(walfile.FrameHeaderSize+dbactor.PageSize) + 16
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Local commits after a bad frame in the middle of the local layer's WAL
// are lost to SQLite's recovery, as a power loss loses unsynced commits:
// the scans of the local layer (walEnd for the pull's anchor and the clean
// close, dirtyPages for the peel and the checkpoint, walPages for the
// checkpoint's content hash) stop there quietly too, so the replica goes
// on with the commits before it: they are pushed, a pull peels them and
// puts them back, a checkpoint (right after the open, the stale frames
// still in the file, or at Close) keeps the file's content hash right, and
// the next open takes no foreign write.
func TestLocalWALBadFrame(t *testing.T) {
	for _, checkpointFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync first", true: "checkpoint first"}[checkpointFirst], func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "a.db")
			a := open(t, syncdb.Config{Path: path, URL: url})
			mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			mustExec(t, a, "INSERT INTO t VALUES(1, 'pushed')")
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			before := len(replicaWALTxns(t, path))
			mustExec(t, a, "INSERT INTO t VALUES(2, 'kept')")
			mustExec(t, a, "INSERT INTO t VALUES(3, 'lost')")
			mustExec(t, a, "INSERT INTO t VALUES(4, hex(randomblob(100000)))") // many frames: a long stale tail
			txns := replicaWALTxns(t, path)
			if len(txns) != before+3 {
				t.Fatalf("%d transactions in the WAL after 3 inserts, %d before", len(txns), before)
			}
			closeAs(t, a, path, true)
			breakReplicaFrame(t, path, txns[before+1][0].Index)

			b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
			mustExec(t, b, "INSERT INTO t VALUES(5, 'remote')")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			a = open(t, syncdb.Config{Path: path, URL: url})
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|pushed\n2|kept" {
				t.Fatalf("after the reopen: %q", got)
			}
			if checkpointFirst {
				if err := a.Checkpoint(ctx); err != nil {
					t.Fatalf("checkpoint after a bad frame in the WAL: %v", err)
				}
			}
			if err := a.Sync(ctx); err != nil {
				t.Fatalf("sync after a bad frame in the WAL: %v", err)
			}
			want := "1|pushed\n2|kept\n5|remote"
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != want {
				t.Fatalf("after the sync: %q", got)
			}
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != want {
				t.Fatalf("the other replica: %q", got)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			// New times make the open judge the file by its content hash,
			// which the checkpoints carried.
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(path, later, later); err != nil {
				t.Fatal(err)
			}
			a = open(t, syncdb.Config{Path: path, URL: url})
			mustExec(t, a, "INSERT INTO t VALUES(6, 'after')")
			if err := a.Sync(ctx); err != nil {
				t.Fatalf("sync after the checkpoint: %v", err)
			}
			a.Close()
			checkSyncedBase(t, path, url)
		})
	}
}

// A pull stopped after its T2, whose WAL has a bad frame in the middle:
// in T2 (SQLite's recovery sees T1 only: pullProgress finds T1 without
// T2, and recovery runs T2 again from the journal), or in T1 (it sees
// neither: the pull did not happen, and is abandoned). Either way nothing
// is lost and nothing is reported.
func TestPullWALBadFrame(t *testing.T) {
	for _, tc := range []struct {
		name  string
		point string
		which int // the transaction broken, from the end
		after string
	}{
		{"in T2", "pull.t2", 1, "1|local\n2|remote"},
		{"in T1", "pull.t1", 1, "1|local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			path := closedReplica(t, url, dir, "local") // row 1, not pushed
			b := pushedReplica(t, url, dir, "b.db", "INSERT INTO t VALUES(2, 'remote')")
			stoppedPull(t, path, tc.point)
			txns := replicaWALTxns(t, path)
			if len(txns) < 2 {
				t.Fatalf("%d transactions in the WAL, want the anchor and T1 (and T2)", len(txns))
			}
			breakReplicaFrame(t, path, txns[len(txns)-tc.which][0].Index)
			a, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url})
			if err != nil {
				t.Fatalf("open after a bad frame %s: %v", tc.name, err)
			}
			t.Cleanup(func() { a.Close() })
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != tc.after {
				t.Fatalf("after the reopen: %q, want %q", got, tc.after)
			}
			if tc.after == "1|local" {
				if _, err := a.Pull(ctx); err != nil {
					t.Fatal(err)
				}
			}
			syncedAll(t, a, b, path, url, "1|local\n2|remote")
		})
	}
}

// A bad frame before the synced base's position (W) loses frames of the
// base: SQLite's recovery sees nothing after it, and the base cannot be
// read. walIndex reports it: the replica opens detached and refuses
// writes as modified outside syncdb, not taken for one with a shorter base.
func TestBaseWALBadFrame(t *testing.T) {
	ctx := context.Background()
	url, path, a := baseInWAL(t)
	txns := replicaWALTxns(t, path)
	if len(txns) < 4 {
		t.Fatalf("%d transactions in the WAL, want the anchor, T1, T2 and the insert", len(txns))
	}
	// -info learns the new base (the pull defers its write) from the open
	// after a crash; crashed again, the WAL still holds the base's frames.
	closeAs(t, a, path, true)
	a = open(t, syncdb.Config{Path: path, URL: url})
	closeAs(t, a, path, true)
	breakReplicaFrame(t, path, txns[0][0].Index)
	a = open(t, syncdb.Config{Path: path, URL: url})
	defer a.Close()
	if _, err := a.Exec(ctx, "INSERT INTO t VALUES(4, 'local')"); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("a write with frames of the base lost: %v, want ErrExternalModification (t %q)", err, rows(t, a, "SELECT id, v FROM t ORDER BY id"))
	}
}

// baseInWAL returns an open replica at path, synced with the server at url,
// whose synced base's frames are in its WAL (W after a pull's T1, t rows 1
// and 2 from the server) with one unpushed insert (3, 'local') after them.
func baseInWAL(t *testing.T) (url, path string, a *syncdb.DB) {
	t.Helper()
	ctx := context.Background()
	url = newServer(t)
	dir := t.TempDir()
	path = filepath.Join(dir, "a.db")
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, b, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, b, "INSERT INTO t VALUES(1, 'remote')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	a = open(t, syncdb.Config{Path: path, URL: url})
	if err := a.Close(); err != nil { // the WAL empty
		t.Fatal(err)
	}
	a = open(t, syncdb.Config{Path: path, URL: url})
	mustExec(t, b, "INSERT INTO t VALUES(2, 'remote')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil { // W after T1, in the WAL
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(3, 'local')")
	return url, path, a
}
