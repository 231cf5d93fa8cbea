// Package historytest is the conformance suite of history.Backend: every
// implementation (the SQLite file, PostgreSQL) must pass Run.
package historytest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/server/history"
)

// Backends opens the backend under test.
type Backends struct {
	// New opens an empty history.
	New func(t *testing.T) history.Backend
	// Reopen closes b and opens the same history again.
	Reopen func(t *testing.T, b history.Backend) history.Backend
}

// Page is the deterministic image of seed: even seeds compress well, odd
// ones do not, so both storage forms are used.
func Page(seed int) []byte {
	b := make([]byte, history.PageSize)
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	if seed%2 == 0 {
		for i := range b {
			b[i] = byte(seed)
		}
		return b
	}
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Commit is a commit of size pages writing the images of the seeds.
func Commit(size uint32, pages map[uint32]int) history.Commit {
	return history.Commit{DBSize: size, Pages: func(fn func(history.Page) error) error {
		for pg, seed := range pages {
			if err := fn(history.Page{Pgno: pg, Data: Page(seed)}); err != nil {
				return err
			}
		}
		return nil
	}}
}

// model is the expected image of every page at every revision.
type model map[int64]map[uint32]int

// Run runs the suite.
func Run(t *testing.T, bs Backends) {
	t.Run("semantics", func(t *testing.T) { semantics(t, bs) })
	t.Run("multi-commit append", func(t *testing.T) { multiCommit(t, bs) })
	t.Run("uninitialized", func(t *testing.T) { uninitialized(t, bs) })
	t.Run("scan", func(t *testing.T) { scan(t, bs) })
}

func semantics(t *testing.T, bs Backends) {
	s := bs.New(t)
	if s.Initialized() {
		t.Fatal("new history claims to be initialized")
	}
	m := model{1: {1: 1, 2: 2, 3: 3}}
	if err := s.Init(t.Context(), "abc", Commit(3, m[1]), history.Cursor{}, 1000); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	size := uint32(3)
	seed := 10
	for seq := int64(2); seq <= 40; seq++ {
		prev := m[seq-1]
		cur := map[uint32]int{}
		for pg, v := range prev {
			cur[pg] = v
		}
		changed := map[uint32]int{}
		switch {
		case seq%10 == 0 && size > 2: // shrink
			size -= 2
		case seq%3 == 0: // grow
			size++
			seed++
			changed[size] = seed
		}
		for i := 0; i < 1+r.IntN(2); i++ {
			seed++
			changed[uint32(1+r.IntN(int(size)))] = seed
		}
		for pg := range cur {
			if pg > size {
				delete(cur, pg)
			}
		}
		for pg, v := range changed {
			cur[pg] = v
		}
		m[seq] = cur
		rev, err := s.Append(t.Context(), history.Fence{}, []history.Commit{Commit(size, changed)}, history.Cursor{Frame: int(seq)}, 1000+seq)
		if err != nil {
			t.Fatal(err)
		}
		if rev.Seq != seq || rev.DBSize != size || s.Latest() != rev {
			t.Fatalf("append gave %+v, latest %+v", rev, s.Latest())
		}
	}
	check(t, s, m, 1, 40)

	s = bs.Reopen(t, s)
	if s.Latest().Seq != 40 || s.ID() != "abc" || !s.Initialized() {
		t.Fatalf("reopened: latest %+v id %q", s.Latest(), s.ID())
	}
	check(t, s, m, 1, 40)

	// Compaction keeps every revision from the horizon on intact.
	deleted, err := s.Compact(t.Context(), 25)
	if err != nil || deleted == 0 {
		t.Fatalf("compact: %d %v", deleted, err)
	}
	if s.Horizon() != 25 {
		t.Fatalf("horizon %d after compacting to 25", s.Horizon())
	}
	check(t, s, m, 25, 40)
	if _, err := s.Check(t.Context(), 24); !errors.Is(err, history.ErrTooOld) {
		t.Fatalf("below horizon: %v", err)
	}
	if _, err := s.Check(t.Context(), 41); !errors.Is(err, history.ErrFuture) {
		t.Fatalf("future: %v", err)
	}
	if seq, err := s.SeqAtOrBefore(t.Context(), 1030); err != nil || seq != 30 {
		t.Fatalf("SeqAtOrBefore(1030) = %d, %v; want 30", seq, err)
	}
	s = bs.Reopen(t, s)
	if s.Horizon() != 25 {
		t.Fatalf("horizon %d after reopening", s.Horizon())
	}
	check(t, s, m, 25, 40)
}

// check compares every page of every revision in [from, to] with m, and
// the changed sets between consecutive revisions.
func check(t *testing.T, s history.Backend, m model, from, to int64) {
	t.Helper()
	rd, err := s.Reader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for seq := from; seq <= to; seq++ {
		rev, err := s.Check(t.Context(), seq)
		if err != nil || rev.DBSize != uint32(len(m[seq])) {
			t.Fatalf("check %d: %+v %v (want size %d)", seq, rev, err, len(m[seq]))
		}
		for pg, v := range m[seq] {
			got, err := rd.PageAt(nil, pg, seq)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, Page(v)) {
				t.Fatalf("page %d at %d differs", pg, seq)
			}
			stored, compressed, err := rd.StoredPageAt(nil, pg, seq)
			if err != nil {
				t.Fatal(err)
			}
			if compressed != (v%2 == 0) || (!compressed && !bytes.Equal(stored, Page(v))) {
				t.Fatalf("page %d at %d: stored compressed=%v for seed %d", pg, seq, compressed, v)
			}
		}
		if seq > from {
			ch, err := rd.ChangedBetween(t.Context(), seq-1, seq)
			if err != nil {
				t.Fatal(err)
			}
			for pg, v := range m[seq] {
				if m[seq-1][pg] != v && !ch.Contains(pg) {
					t.Fatalf("page %d changed at %d but is not reported", pg, seq)
				}
			}
		}
	}
	for seq := from; seq <= to; seq++ {
		// Every page, a page never written (zeros) and one beyond.
		pages := history.AllPages(uint32(len(m[seq])))
		pages.Add(1 << 20)
		want := map[uint32]int{}
		for pg, v := range m[seq] {
			want[pg] = v
		}
		scanned(t, rd, seq, pages, want)
	}
	// A page never written reads as zeros.
	got, err := rd.PageAt(nil, 1<<20, to)
	if err != nil || !bytes.Equal(got, make([]byte, history.PageSize)) {
		t.Fatalf("unwritten page: %v", err)
	}
}

func multiCommit(t *testing.T, bs Backends) {
	s := bs.New(t)
	if err := s.Init(t.Context(), "m", Commit(1, map[uint32]int{1: 2}), history.Cursor{}, 1); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Append(t.Context(), history.Fence{}, []history.Commit{
		Commit(2, map[uint32]int{2: 4}),
		Commit(3, map[uint32]int{1: 5, 3: 6}),
		Commit(3, map[uint32]int{2: 7}),
	}, history.Cursor{}, 2)
	if err != nil || rev.Seq != 4 || rev.DBSize != 3 {
		t.Fatalf("append: %+v %v", rev, err)
	}
	check(t, s, model{
		1: {1: 2},
		2: {1: 2, 2: 4},
		3: {1: 5, 2: 4, 3: 6},
		4: {1: 5, 2: 7, 3: 6},
	}, 1, 4)
	rd, err := s.Reader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ch, err := rd.ChangedBetween(t.Context(), 1, 4)
	if err != nil || ch.GetCardinality() != 3 {
		t.Fatalf("changed 1..4: %v %v", ch, err)
	}
}

func uninitialized(t *testing.T, bs Backends) {
	s := bs.New(t)
	if _, err := s.Append(t.Context(), history.Fence{}, []history.Commit{Commit(1, map[uint32]int{1: 1})}, history.Cursor{}, 1); err == nil {
		t.Fatal("append to an uninitialized history succeeded")
	}
	if err := s.Init(t.Context(), "x", Commit(1, map[uint32]int{1: 1}), history.Cursor{}, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Init(t.Context(), "y", Commit(1, map[uint32]int{1: 1}), history.Cursor{}, 1); err == nil {
		t.Fatal("a second Init succeeded")
	}
}

// scanned checks that ScanPages of pages at seq gives the images of want,
// zeros for the pages want does not have, in order, each once.
func scanned(t *testing.T, rd history.View, seq int64, pages *roaring.Bitmap, want map[uint32]int) {
	t.Helper()
	next := pages.Iterator()
	var img []byte
	err := rd.ScanPages(t.Context(), seq, pages, func(pgno uint32, data []byte, compressed bool) error {
		if !next.HasNext() {
			return fmt.Errorf("page %d after the last one asked for", pgno)
		}
		if w := next.Next(); pgno != w {
			return fmt.Errorf("page %d where %d was due", pgno, w)
		}
		img = append(img[:0], data...)
		if compressed {
			var err error
			if img, err = history.DecodePage(nil, data); err != nil {
				return err
			}
		}
		v, ok := want[pgno]
		switch {
		case !ok && !bytes.Equal(img, make([]byte, history.PageSize)):
			return fmt.Errorf("page %d at %d: never written, not zeros", pgno, seq)
		case ok && !bytes.Equal(img, Page(v)):
			return fmt.Errorf("page %d at %d differs", pgno, seq)
		case ok && compressed != (v%2 == 0):
			return fmt.Errorf("page %d at %d: compressed=%v for seed %d", pgno, seq, compressed, v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan at %d: %v", seq, err)
	}
	if next.HasNext() {
		t.Fatalf("scan at %d ended before page %d", seq, next.Next())
	}
}

// scan reads a database of more pages than a backend reads in one batch,
// whole and in pieces, as of old and new revisions.
func scan(t *testing.T, bs Backends) {
	s := bs.New(t)
	const size = 20000
	m := model{1: {}}
	for pg := uint32(1); pg <= size; pg++ {
		if pg%5 != 0 { // every fifth page never written
			m[1][pg] = int(2 * pg) // compressible
		}
	}
	for pg := uint32(3); pg <= size; pg += 997 {
		m[1][pg] = int(2*pg + 1) // incompressible
	}
	if err := s.Init(t.Context(), "scan", Commit(size, m[1]), history.Cursor{}, 1); err != nil {
		t.Fatal(err)
	}
	// Page 1 changes in every revision (a long history of one page), a few
	// others now and then.
	for seq := int64(2); seq <= 30; seq++ {
		changed := map[uint32]int{1: int(2 * (size + seq))}
		if seq%7 == 0 {
			changed[uint32(seq*613)%size+1] = int(2*(2*size+seq) + 1)
		}
		cur := map[uint32]int{}
		for pg, v := range m[seq-1] {
			cur[pg] = v
		}
		for pg, v := range changed {
			cur[pg] = v
		}
		m[seq] = cur
		if _, err := s.Append(t.Context(), history.Fence{}, []history.Commit{Commit(size, changed)}, history.Cursor{}, seq); err != nil {
			t.Fatal(err)
		}
	}
	rd, err := s.Reader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, seq := range []int64{1, 14, 30} {
		scanned(t, rd, seq, history.AllPages(size), m[seq])
	}
	// A selection: a segment, scattered pages, the last page.
	sel := roaring.New()
	sel.AddRange(4097, 4097+32)
	for pg := uint32(1); pg <= size; pg += 1234 {
		sel.Add(pg)
	}
	sel.Add(size)
	scanned(t, rd, 21, sel, m[21])
	// A scan that stops early returns fn's error.
	stop := errors.New("stop")
	n := 0
	err = rd.ScanPages(t.Context(), 30, history.AllPages(size), func(uint32, []byte, bool) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Fatalf("a stopped scan: %v after %d pages", err, n)
	}
}
