package syncdb_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/testhooks"
	"github.com/syncdb/syncdb/internal/walfile"
)

// With the WAL reused, the base's W is of an older generation than the
// frames a replica writes after an automatic checkpoint: the scans for the
// WAL's end (a pull's anchor, an automatic checkpoint's end; the clean
// close's when its checkpoint did not empty the WAL) start
// at the end of the replica's last write, not from the generation's first
// frame. What they read stays a few frames however long the WAL grows.
func TestWALEndScanCost(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	var counting atomic.Bool
	var read atomic.Int64
	hctx := testhooks.With(ctx, testhooks.Hooks{OnWALRead: func(n int) {
		if counting.Load() {
			read.Add(int64(n))
		}
	}})
	a, err := syncdb.Open(hctx, syncdb.Config{Path: path, URL: url, AutoCheckpointFrames: 300})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	var checkpoints atomic.Int32
	failpoint.Set(func(name, owner string) {
		if name == "checkpoint.copied" && strings.HasPrefix(owner, path) {
			checkpoints.Add(1)
		}
	})
	t.Cleanup(func() { failpoint.Set(nil) })
	for i := 0; checkpoints.Load() == 0; i++ {
		if i == 1000 {
			t.Fatal("no automatic checkpoint in 1000 writes")
		}
		mustExec(t, a, "INSERT INTO t(v) VALUES('before')")
	}
	frameSize := int64(walfile.FrameHeaderSize + dbactor.PageSize)
	cost := func(what string, f func() error) int64 {
		t.Helper()
		read.Store(0)
		counting.Store(true)
		err := f()
		counting.Store(false)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return read.Load()
	}
	pull := func(what string) int64 {
		t.Helper()
		mustExec(t, b, "INSERT INTO t(v) VALUES('remote')")
		if err := b.Push(ctx); err != nil {
			t.Fatal(err)
		}
		return cost(what, func() error {
			n, err := a.Pull(ctx)
			if err == nil && !n {
				t.Fatalf("%s: nothing pulled", what)
			}
			return err
		})
	}
	// The pull's anchor restarts the WAL over the copied generation.
	small := pull("the first pull after the checkpoint")
	before := len(replicaWALTxns(t, path))
	for range 60 {
		mustExec(t, a, "INSERT INTO t(v) VALUES('after')")
	}
	grown := len(replicaWALTxns(t, path)) - before
	large := pull("a pull after 60 writes")
	if checkpoints.Load() != 1 {
		t.Fatalf("%d automatic checkpoints, want 1: the WAL must hold every write since", checkpoints.Load())
	}
	if grown < 60 {
		t.Fatalf("the WAL grew by %d transactions in 60 writes", grown)
	}
	t.Logf("WAL end scans: %d bytes in the first pull, %d after %d more transactions", small, large, grown)
	if large > small+frameSize {
		t.Errorf("a pull's WAL end scans read %d bytes after %d more transactions in the WAL, %d before: they grow with the WAL", large, grown, small)
	}
	// The next automatic checkpoint: its end (finishCheckpoint) is
	// scanned from the end of the write that triggered it.
	var worst int64
	for i := 0; checkpoints.Load() == 1; i++ {
		if i == 1000 {
			t.Fatal("no second automatic checkpoint in 1000 writes")
		}
		txns := len(replicaWALTxns(t, path))
		c := cost("a write", func() error { _, err := a.Exec(ctx, "INSERT INTO t(v) VALUES('more')"); return err })
		if checkpoints.Load() == 2 && c > 2*frameSize {
			t.Errorf("the write that checkpointed a WAL of %d transactions read %d bytes (%d frames' worth) in its WAL end scans", txns, c, c/frameSize)
		}
		worst = max(worst, c)
	}
	t.Logf("at most %d bytes per write up to the second checkpoint", worst)
}
