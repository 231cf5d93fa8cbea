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

// TestPullWriterReopenFails: the disk fails every write and open from
// right after a pull's T1 committed (a full disk, an I/O error), the
// process living on. A pull used to replace the writer connection there,
// and the new one could not open: recoverPull then read through a nil
// connection and the actor panicked (a7dcfaa made that ErrNoWriter). The
// writer now stays (it only empties its page cache, refreshWriter; it is
// replaced only if that fails), so T2 meets the failing disk: the pull
// fails, and so does every write after it while the disk fails (the pull
// must be finished first), without a panic. Once the disk works again,
// the next request finishes the pull. Case "reopen": the connection is
// replaced after all (Skip "pull.reset-cache", as when the writer has TEMP
// objects or the reset is refused), and the new one cannot open: the pull,
// and every request after it while the disk fails, is refused with
// ErrNoWriter.
func TestPullWriterReopenFails(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		name := "kept"
		if reopen {
			name = "reopen"
		}
		t.Run(name, func(t *testing.T) { testPullWriterReopenFails(t, reopen) })
	}
}

func testPullWriterReopenFails(t *testing.T, reopen bool) {
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
	if reopen {
		failpoint.SetSwitch(func(name, owner string) bool { return name == "pull.reset-cache" && owner == a.cfg.Path })
		defer failpoint.SetSwitch(nil)
	}
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
	if reopen {
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
	} else {
		if err == nil {
			t.Fatal("the pull succeeded on a failing disk")
		}
		if errors.Is(err, dbactor.ErrNoWriter) {
			t.Fatalf("pull: %v, want T2's failure on the kept writer", err)
		}
		if _, err := a.db.Exec(ctx, "INSERT INTO t VALUES(3, 'later')"); err == nil {
			t.Fatal("a write succeeded on a failing disk, before the pull was finished")
		}
		if _, err := a.db.Pull(ctx); err == nil {
			t.Fatal("a pull succeeded on a failing disk")
		}
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
