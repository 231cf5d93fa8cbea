package pageactor_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/pageactor"
)

// The presence log (PATH-present) has one writer, the Pages that has it
// open: while it does, Create (a bootstrap's) cannot replace the file and a
// second Open cannot append to it; once it is closed, both may. Readers
// (LoadPresence: ReadStats, checks) change nothing, not even a torn tail.
func TestPresenceLogOneWriter(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize})
	files := layout.For(r.path)

	if err := pageactor.Create(fsx.OS, files, roaring.BitmapOf(1, 2)); !errors.Is(err, pageactor.ErrLogInUse) {
		t.Errorf("Create of a log a Pages has open: %v, want ErrLogInUse", err)
	}
	sys := actors.NewSystem(actors.Options{Name: "second"})
	defer sys.Stop()
	cfg := r.cfg
	cfg.Sys = sys
	if p, err := pageactor.Open(cfg); !errors.Is(err, pageactor.ErrLogInUse) {
		t.Errorf("a second Open of a log a Pages has open: %v, want ErrLogInUse", err)
		if err == nil {
			p.Close()
		}
	}
	// The claim names the file, not the spelling of its path: through a
	// symlinked directory it is the same log (keyed as shimvfs keys files,
	// symlinks resolved).
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(filepath.Dir(r.path), link); err != nil {
		t.Fatal(err)
	}
	viaLink := layout.For(filepath.Join(link, filepath.Base(r.path)))
	if err := pageactor.Create(fsx.OS, viaLink, roaring.BitmapOf(1, 2)); !errors.Is(err, pageactor.ErrLogInUse) {
		t.Errorf("Create through a symlinked directory of a log a Pages has open: %v, want ErrLogInUse", err)
	}
	cfg.Path = viaLink.DB
	if p, err := pageactor.Open(cfg); !errors.Is(err, pageactor.ErrLogInUse) {
		t.Errorf("a second Open through a symlinked directory: %v, want ErrLogInUse", err)
		if err == nil {
			p.Close()
		}
	}
	if err := r.pages.Fetch(5, ""); err != nil {
		t.Fatal(err)
	}
	r.close()
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 5, 6, 7, 8}) {
		t.Fatalf("the log records %v, want [1 5 6 7 8]: the refused calls changed it", got)
	}

	// A torn tail is the writer's to cut (at its next Open), not a reader's.
	b, err := os.ReadFile(files.Present)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(slices.Clone(b), 1, 2, 3, 4, 5)
	if err := os.WriteFile(files.Present, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 5, 6, 7, 8}) {
		t.Errorf("LoadPresence of a torn log: %v, want [1 5 6 7 8]", got)
	}
	if after, _ := os.ReadFile(files.Present); !bytes.Equal(after, torn) {
		t.Errorf("LoadPresence changed the log: %d bytes, was %d", len(after), len(torn))
	}
	os.Remove(files.Present)
	if bm, err := pageactor.LoadPresence(fsx.OS, r.path, snap.dbSize); err != nil || !bm.IsEmpty() {
		t.Errorf("LoadPresence of a missing log: %v, %v; want no pages", bm, err)
	}
	if _, err := os.Stat(files.Present); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPresence created the log: %v", err)
	}

	// Closed: the bootstrap's Create may write it again, and Open take it.
	if err := pageactor.Create(fsx.OS, files, roaring.BitmapOf(1, 2)); err != nil {
		t.Fatalf("Create after the Pages closed: %v", err)
	}
	r.open(t, ts.url)
	if !r.pages.Present(2) || r.pages.Present(5) {
		t.Errorf("after Create([1 2]) and Open: page 2 present %v, page 5 present %v", r.pages.Present(2), r.pages.Present(5))
	}

	// A failed Open gives its claim back.
	cfg.Path = filepath.Join(t.TempDir(), "none.db")
	if p, err := pageactor.Open(cfg); err == nil {
		p.Close()
		t.Fatal("Open of a missing database succeeded")
	}
	if err := pageactor.Create(fsx.OS, layout.For(cfg.Path), roaring.BitmapOf(1)); err != nil {
		t.Errorf("Create after a failed Open: %v", err)
	}
}
