package syncdb_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/walfile"
)

// garbleWALHeader writes garbage over the replica's WAL header, as a torn
// write of a restart header can leave it, and checks that frames follow.
func garbleWALHeader(t *testing.T, path string) {
	t.Helper()
	if s := fileSize(t, path+"-wal"); s <= walfile.HeaderSize {
		t.Fatalf("the WAL has %d bytes, want frames after its header", s)
	}
	f, err := os.OpenFile(path+"-wal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, walfile.HeaderSize)
	for i := range b {
		b[i] = byte(0xa5 ^ i)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// A torn restart header over a WAL an automatic checkpoint copied whole
// (W Copied, its frames still in the file): SQLite takes the WAL for an
// empty one, which loses nothing, every frame being in the database file.
// The replica opens, writes and syncs as SQLite sees it, not refusing the
// first write as foreign.
func TestTornRestartHeaderCopied(t *testing.T) {
	for _, first := range []string{"write", "checkpoint", "sync"} {
		t.Run(first+" first", func(t *testing.T) {
			url := newServer(t)
			r := newAutoCheckpointReplica(t, url)
			n := r.countCheckpoints()
			i := 0
			for n.Load() < 1 {
				i++
				r.localRows(i, i)
			}
			// Killed before the next commit restarts the WAL over the
			// copied one.
			r.crashedWrite("write.captured", "INSERT INTO t VALUES(1000, 'lost')")
			r.restartKilled(func() { garbleWALHeader(t, r.cfg.Path) })
			checkTU(t, r.db, "after the reopen", tRows(i), "")
			switch first {
			case "checkpoint":
				if err := r.db.Checkpoint(context.Background()); err != nil {
					t.Fatalf("checkpoint after the reopen: %v", err)
				}
			case "sync":
				if err := r.db.Sync(context.Background()); err != nil {
					t.Fatalf("sync after the reopen: %v", err)
				}
			}
			r.localRows(i+1, i+5)
			r.finishSync(url, tRows(i+5), "")
		})
	}
}

// An invalid header over a WAL whose frames the base still reads (W not
// Copied) lost them: the replica opens detached and refuses writes.
func TestInvalidHeaderBaseWAL(t *testing.T) {
	ctx := context.Background()
	url, path, a := baseInWAL(t)
	closeAs(t, a, path, true)
	a = open(t, syncdb.Config{Path: path, URL: url})
	closeAs(t, a, path, true)
	garbleWALHeader(t, path)
	a = open(t, syncdb.Config{Path: path, URL: url})
	defer a.Close()
	if _, err := a.Exec(ctx, "INSERT INTO t VALUES(4, 'local')"); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("a write with the base's WAL header invalid: %v, want ErrExternalModification (t %q)", err, rows(t, a, "SELECT id, v FROM t ORDER BY id"))
	}
}
