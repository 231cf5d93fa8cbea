package dbactor

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/internal/fsx"
)

// The run writer's content hash is the file's (ContentHash) when the
// pages came each once, in order, from page 1 to the last; otherwise it
// declines, and the bootstrap's stamp hashes the file it wrote.
func TestRunWriterContentHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	page := func() []byte {
		p := make([]byte, PageSize)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	const pages = 600 // more than two 1 MiB runs
	for _, c := range []struct {
		name  string
		size  uint32 // the file's pages
		order []uint32
		ok    bool
	}{
		{"in order", pages, seq(1, pages), true},
		{"one page", 1, seq(1, 1), true},
		{"the last page missing", pages, seq(1, pages-1), false},
		{"a page twice", pages, append(seq(1, 300), seq(300, pages)...), false},
		{"a page missing in the middle", pages, append(seq(1, 299), seq(301, pages)...), false},
		{"not from page 1", pages, seq(2, pages), false},
	} {
		path := filepath.Join(t.TempDir(), "db")
		f, err := fsx.OS.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		w := newRunWriter(f)
		for _, pg := range c.order {
			if err := w.add(pg, page()); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		w.close()
		if err := f.Truncate(int64(c.size) * PageSize); err != nil {
			t.Fatal(err)
		}
		f.Close()
		ok := w.hashes(uint64(c.size))
		if ok != c.ok {
			t.Fatalf("%s: hashes %v, want %v", c.name, ok, c.ok)
		}
		if !ok {
			continue
		}
		want, err := ContentHash(path)
		if err != nil {
			t.Fatal(err)
		}
		if w.hash != want {
			t.Fatalf("%s: the writer's hash %x, the file's %x", c.name, w.hash, want)
		}
	}
}

// seq is the page numbers from to to, inclusive.
func seq(from, to uint32) []uint32 {
	var s []uint32
	for pg := from; pg <= to; pg++ {
		s = append(s, pg)
	}
	return s
}
