package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/server/history/historytest"
)

// historyImage is the database file of revision rev, read page by page.
func historyImage(t *testing.T, h history.Backend, rev history.Revision) []byte {
	t.Helper()
	rd, err := h.Reader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var img []byte
	for pg := uint32(1); pg <= rev.DBSize; pg++ {
		if img, err = rd.PageAt(img, pg, rev.Seq); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// A warm copy that catches up writes only the pages written since its
// revision, and holds exactly what a copy built from scratch holds: also
// when the database shrank and grew again without writing the pages it
// grew by (they read as of the revision: their old images).
func TestWarmCopyCatchesUpIncrementally(t *testing.T) {
	h, err := history.Open(filepath.Join(t.TempDir(), "h.sqlite"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// 600 pages: runs of runPages (256) and a remainder in the first
	// build; each step reads the whole image back page by page, so the
	// size is most of the test's time.
	const base = 600
	pages := map[uint32]int{}
	for pg := uint32(1); pg <= base; pg++ {
		pages[pg] = int(pg)
	}
	if err := h.Init(t.Context(), "w", historytest.Commit(base, pages), history.Cursor{}, 1); err != nil {
		t.Fatal(err)
	}
	var full, incremental int
	w := &warmCopy{path: filepath.Join(t.TempDir(), mainFile), onCopy: func(f bool, n int) {
		if f {
			full += n
		} else {
			incremental += n
		}
	}}
	catchUp := func(step string) {
		t.Helper()
		if err := w.catchUp(t.Context(), h); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(w.path)
		if err != nil {
			t.Fatal(err)
		}
		if want := historyImage(t, h, h.Latest()); !bytes.Equal(got, want) {
			t.Fatalf("%s: the warm copy (%d bytes) is not revision %d (%d bytes)", step, len(got), h.Latest().Seq, len(want))
		}
	}
	catchUp("first build")
	if full != base || incremental != 0 {
		t.Fatalf("first build wrote %d pages in full, %d incrementally", full, incremental)
	}
	r := rand.New(rand.NewPCG(1, 2))
	size := uint32(base)
	seed := 10 * base
	written := 0
	for step := range 40 {
		var commits []history.Commit
		for range 1 + r.IntN(3) {
			changed := map[uint32]int{}
			switch step % 8 {
			case 3: // shrink
				size -= 100
			case 5: // grow back, writing only some of the new pages
				size += 150
				changed[size] = seed
				seed++
			}
			for range 1 + r.IntN(5) {
				changed[uint32(1+r.IntN(int(size)))] = seed
				seed++
			}
			commits = append(commits, historytest.Commit(size, changed))
		}
		before := h.Latest().DBSize
		if _, err := h.Append(t.Context(), history.Fence{}, commits, history.Cursor{}, int64(step)); err != nil {
			t.Fatal(err)
		}
		prev := incremental
		catchUp(fmt.Sprintf("step %d", step))
		written = incremental - prev
		if max := 3*5 + 3 + int(max(size, before)-min(size, before)); written > max {
			t.Fatalf("step %d: the catch-up wrote %d pages, more than the %d it may need", step, written, max)
		}
	}
	if full != base {
		t.Fatalf("catching up rebuilt the copy (%d pages in full builds)", full)
	}
	if incremental == 0 || incremental > 40*(3*5+3+150) {
		t.Fatalf("40 catch-ups wrote %d pages", incremental)
	}

	// The working copy is not the warm copy's to change.
	w.working = true
	if _, err := h.Append(t.Context(), history.Fence{}, []history.Commit{historytest.Commit(size, map[uint32]int{1: 7})}, history.Cursor{}, 99); err != nil {
		t.Fatal(err)
	}
	prev := incremental
	if err := w.catchUp(t.Context(), h); err != nil || incremental != prev {
		t.Fatalf("a catch-up of the working copy: %v, %d pages", err, incremental-prev)
	}
}
