package syncdb_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// TestPullWriterReopenFails: a pull replaces the writer connection after
// T1, and the new one may not open (a full disk, an I/O error; here the
// disk fails every write and open from right after T1's commit, the
// process living on). The pull, and every request after it while the disk
// fails, is refused with ErrNoWriter: recoverPull found T1 and read
// through a nil connection, and the actor panicked. Once the disk works again, the next
// request reopens the writer and finishes the pull.
func TestPullWriterReopenFails(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	a := newLossyReplica(t, url)
	var panicked atomic.Value
	h := testhooks.From(a.ctx)
	h.OnPanic = func(err error) { panicked.Store(err) }
	a.db.Close()
	a.ctx = testhooks.With(context.Background(), h)
	a.open()

	a.unpushedRow(false)
	pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO u VALUES(2, 'remote')")

	// Once the journal is saved, the first sync of the WAL is T1's commit:
	// right after it, every write and open fails (the process lives on).
	var armed, hit atomic.Bool
	failpoint.Set(func(name, owner string) {
		if name == "pull.pending" && strings.HasPrefix(owner, a.cfg.Path) {
			armed.Store(true)
		}
	})
	a.rec.SetAfterSync(func(path string) {
		if path == a.cfg.Path+"-wal" && armed.Load() && hit.CompareAndSwap(false, true) {
			a.rec.Crash()
		}
	})
	_, err := a.db.Pull(ctx)
	failpoint.Set(nil)
	a.rec.SetAfterSync(nil)
	if !hit.Load() {
		t.Fatal("T1 did not commit")
	}
	if p := panicked.Load(); p != nil {
		t.Fatalf("the actor panicked: %v", p)
	}
	if !errors.Is(err, dbactor.ErrNoWriter) {
		t.Fatalf("pull: %v, want ErrNoWriter", err)
	}
	if _, err := a.db.Exec(ctx, "INSERT INTO t VALUES(3, 'later')"); !errors.Is(err, dbactor.ErrNoWriter) {
		t.Fatalf("write with the writer gone: %v, want ErrNoWriter", err)
	}
	if _, err := a.db.Pull(ctx); !errors.Is(err, dbactor.ErrNoWriter) {
		t.Fatalf("pull with the writer gone: %v, want ErrNoWriter", err)
	}
	if _, err := a.db.Stats(ctx); !errors.Is(err, dbactor.ErrNoWriter) {
		t.Fatalf("stats with the writer gone: %v, want ErrNoWriter", err)
	}

	a.rec.Resume() // the disk works again
	mustExec(t, a.db, "INSERT INTO t VALUES(3, 'later')")
	if _, err := a.db.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if p := panicked.Load(); p != nil {
		t.Fatalf("the actor panicked: %v", p)
	}
	if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n3|later" {
		t.Fatalf("t %q", got)
	}
	if got := rows(t, a.db, "SELECT id, v FROM u ORDER BY id"); got != "2|remote" {
		t.Fatalf("u %q", got)
	}
	a.db.Close()
	a.db = nil
	checkSyncedBase(t, a.cfg.Path, url)
	a.open()
	if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n3|later" {
		t.Fatalf("after a reopen: t %q", got)
	}
}
