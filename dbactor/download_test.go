package dbactor_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
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
	if err := first.Reset(); !errors.Is(err, dbactor.ErrDownloadClosed) {
		t.Errorf("a reset of a replaced sink: %v, want ErrDownloadClosed", err)
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
