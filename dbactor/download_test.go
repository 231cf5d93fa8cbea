package dbactor_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
)

// A pull's download (PATH-changes) has one owner, the database actor: it
// creates the file, and once it has closed a sink (applied, dropped,
// replaced, stopped) nothing written through that sink reaches the disk
// again; a sink it no longer has open can be neither applied nor used to
// drop the current one.
func TestDownloadOwner(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a.db")
	l := openLocal(t, path)
	changes := layout.For(path).Changes
	page := make([]byte, dbactor.PageSize)
	size := func() int64 {
		t.Helper()
		st, err := os.Stat(changes)
		if errors.Is(err, os.ErrNotExist) {
			return -1
		}
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	const rec = 4 + dbactor.PageSize + 4

	first, err := l.db.Download(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Add(2, page); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != rec {
		t.Fatalf("after one page, %s has %d bytes, want %d", changes, got, rec)
	}

	// A new download replaces the first (an attempt whose Ask ended
	// early): the first sink's late writes are refused and change nothing.
	second, err := l.db.Download(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Add(3, page); err != nil {
		t.Fatal(err)
	}
	if err := first.Add(4, page); !errors.Is(err, dbactor.ErrDownloadClosed) {
		t.Errorf("a write through a replaced sink: %v, want ErrDownloadClosed", err)
	}
	if got := size(); got != rec || second.Pages() != 1 {
		t.Fatalf("the replaced sink changed the new download: %d bytes, %d pages; want %d, 1", got, second.Pages(), rec)
	}
	if _, err := l.db.ApplyPull(ctx, &messages.ApplyPull{Download: first}); err == nil {
		t.Error("ApplyPull of a replaced sink succeeded")
	}
	if err := l.db.DropDownload(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != rec {
		t.Fatalf("dropping a replaced sink removed the current download: %d bytes", got)
	}

	// Dropped: the file is gone and stays gone.
	if err := l.db.DropDownload(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := second.Add(5, page); !errors.Is(err, dbactor.ErrDownloadClosed) {
		t.Errorf("a write through a dropped sink: %v, want ErrDownloadClosed", err)
	}
	if got := size(); got != -1 {
		t.Fatalf("after DropDownload, %s has %d bytes, want it removed", changes, got)
	}

	// Applied (an empty pull of the revision the replica has): closed and
	// removed before the answer, whatever the answer.
	third, err := l.db.Download(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.db.ApplyPull(ctx, &messages.ApplyPull{Download: third, DBSize: 1})
	t.Logf("ApplyPull of an empty download: %v", err)
	if got := size(); got != -1 {
		t.Errorf("after ApplyPull, %s has %d bytes, want it removed", changes, got)
	}
	if err := third.Add(2, page); !errors.Is(err, dbactor.ErrDownloadClosed) {
		t.Errorf("a write through an applied sink: %v, want ErrDownloadClosed", err)
	}

	// Stopped with a download open (its requester stopped first): removed.
	fourth, err := l.db.Download(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fourth.Add(2, page); err != nil {
		t.Fatal(err)
	}
	l.sys.Stop()
	if got := size(); got != -1 {
		t.Errorf("after the actor stopped, %s has %d bytes, want it removed", changes, got)
	}
	if err := fourth.Add(3, page); !errors.Is(err, dbactor.ErrDownloadClosed) {
		t.Errorf("a write through the sink of a stopped actor: %v, want ErrDownloadClosed", err)
	}
}

// The sink's lock: netactor's goroutine may still be writing through a
// sink (its Ask ended early) while the actor closes it, by DropDownload,
// ApplyPull or a newer Download. Each write is either whole in the open
// download or refused (ErrDownloadClosed, and so is every later one), and
// a stale sink changes neither the file's absence nor the current
// download. Run it with -race: the lock is what it checks.
func TestDownloadSinkRace(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a.db")
	l := openLocal(t, path)
	changes := layout.For(path).Changes
	page := make([]byte, dbactor.PageSize)
	const rec = 4 + dbactor.PageSize + 4
	writes := 0
	for round := range 200 {
		sink, err := l.db.Download(ctx)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		done := make(chan staleResult, 1)
		go func() { done <- writeStale(sink, page, started) }()
		<-started
		var cur messages.PageSink
		switch round % 3 {
		case 0:
			err = l.db.DropDownload(ctx, sink)
		case 1:
			// A size no download here can fill: refused before it writes
			// anything, after it took (closed) the sink.
			if _, aerr := l.db.ApplyPull(ctx, &messages.ApplyPull{Download: sink, DBSize: 1 << 20}); aerr == nil {
				t.Fatalf("round %d: ApplyPull of an incomplete download succeeded", round)
			}
		case 2:
			if cur, err = l.db.Download(ctx); err == nil {
				for pg := uint32(2); pg <= 4 && err == nil; pg++ {
					err = cur.Add(pg, page)
				}
			}
		}
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		res := <-done
		if res.err != nil {
			t.Fatalf("round %d: the stale sink: %v", round, res.err)
		}
		writes += res.written
		st, err := os.Stat(changes)
		switch {
		case cur == nil && !errors.Is(err, os.ErrNotExist):
			t.Fatalf("round %d: %s after its download was closed and removed: %v, want it absent", round, changes, err)
		case cur != nil && (err != nil || st.Size() != 3*rec || cur.Pages() != 3):
			t.Fatalf("round %d: the stale sink changed the current download: %v, %d pages; want %d bytes, 3 pages", round, st, cur.Pages(), 3*rec)
		case cur != nil:
			if err := l.db.DropDownload(ctx, cur); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d writes through sinks being closed", writes)
}

type staleResult struct {
	written int
	err     error
}

// writeStale writes pages through sink, as netactor's goroutine does, until
// the sink refuses one; the writes after that must be refused too. It
// closes started after its first write.
func writeStale(sink messages.PageSink, page []byte, started chan<- struct{}) staleResult {
	var r staleResult
	for i := 0; ; i++ {
		err := sink.Add(uint32(2+i%8), page)
		sink.Pages()
		if i == 0 {
			close(started)
		}
		if errors.Is(err, dbactor.ErrDownloadClosed) {
			break
		}
		if err != nil {
			r.err = fmt.Errorf("write %d: %w", i, err)
			return r
		}
		r.written++
		if i > 10000 {
			r.err = errors.New("the sink was never closed")
			return r
		}
		runtime.Gosched() // let the actor in, on a loaded machine too
	}
	for range 20 {
		if err := sink.Add(2, page); !errors.Is(err, dbactor.ErrDownloadClosed) {
			r.err = fmt.Errorf("a write after the sink refused one: %v, want ErrDownloadClosed", err)
			return r
		}
		sink.Pages()
	}
	return r
}

// A Download that cannot create PATH-changes still removes the download it
// replaces: the old one's space goes back now, not at the next open.
func TestDownloadReplacedWhenCreateFails(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a.db")
	changes := layout.For(path).Changes
	fs := &failingOpen{FS: fsx.OS, path: changes}
	l := openLocalFS(t, path, fs)
	old, err := l.db.Download(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Add(2, make([]byte, dbactor.PageSize)); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	if _, err := l.db.Download(ctx); !errors.Is(err, errOpenInjected) {
		t.Fatalf("Download with %s failing to open: %v, want the injected error", changes, err)
	}
	if st, err := os.Stat(changes); err == nil {
		t.Errorf("after a failed Download, the replaced download is still there (%d bytes), want it removed", st.Size())
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := old.Add(3, make([]byte, dbactor.PageSize)); !errors.Is(err, dbactor.ErrDownloadClosed) {
		t.Errorf("a write through the replaced sink: %v, want ErrDownloadClosed", err)
	}
}

var errOpenInjected = errors.New("injected open failure")

// failingOpen fails opens of path while fail is set.
type failingOpen struct {
	fsx.FS
	path string
	fail atomic.Bool
}

func (f *failingOpen) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	if f.fail.Load() && filepath.Clean(name) == f.path {
		return nil, errOpenInjected
	}
	return f.FS.OpenFile(name, flag, perm)
}
