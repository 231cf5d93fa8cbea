package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/walfile"
)

// A byte of a base frame before the previous base's commit frame changes
// after the base was loaded (bit rot, a tool editing a page in the WAL):
// a pull's reload does not scan those frames (walIndexAfter), but the
// checkpoint, which would copy them into the database file, scans the
// base's frames from the start first (dbactor checkBaseFrames) and
// reports ErrExternalModification. Planted (checkBaseFrames returning
// nil): the checkpoint succeeds (see the commit).
func TestCheckpointSeesChangedBaseFrame(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	path := filepath.Join(t.TempDir(), "a.db")
	a := open(t, syncdb.Config{Path: path, URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'one')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(2, 'two')")
	if len(replicaWALTxns(t, path)) < 2 {
		t.Fatal("want frames before the base's commit frame")
	}
	f, err := os.OpenFile(path+"-wal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(walfile.HeaderSize + walfile.FrameHeaderSize + 100)
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := a.Checkpoint(ctx); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("checkpoint over a changed base frame: %v, want ErrExternalModification", err)
	}
	if _, err := a.Exec(ctx, "INSERT INTO t VALUES(3, 'three')"); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("a write after: %v, want ErrExternalModification", err)
	}
}
