package history

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func page(seed int) []byte {
	b := make([]byte, PageSize)
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	// Half compressible, half random, so both storage forms are used.
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

func commit(size uint32, pages map[uint32]int) Commit {
	return Commit{DBSize: size, Pages: func(fn func(Page) error) error {
		for pg, seed := range pages {
			if err := fn(Page{Pgno: pg, Data: page(seed)}); err != nil {
				return err
			}
		}
		return nil
	}}
}

// model is the expected image of every page at every revision.
type model map[int64]map[uint32]int

func TestHistorySemantics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.sqlite")
	s, err := Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Initialized() {
		t.Fatal("new history claims to be initialized")
	}
	m := model{1: {1: 1, 2: 2, 3: 3}}
	if err := s.Init(t.Context(), "abc", commit(3, m[1]), Cursor{}, 1000); err != nil {
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
		rev, err := s.Append(t.Context(), []Commit{commit(size, changed)}, Cursor{Frame: int(seq)}, 1000+seq)
		if err != nil {
			t.Fatal(err)
		}
		if rev.Seq != seq || rev.DBSize != size {
			t.Fatalf("append gave %+v", rev)
		}
	}
	check := func(from int64) {
		t.Helper()
		rd, err := s.Reader(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		for seq := from; seq <= 40; seq++ {
			rev, err := s.Check(seq)
			if err != nil || rev.DBSize != uint32(len(m[seq])) {
				t.Fatalf("check %d: %+v %v (want size %d)", seq, rev, err, len(m[seq]))
			}
			for pg, v := range m[seq] {
				got, err := rd.PageAt(nil, pg, seq)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, page(v)) {
					t.Fatalf("page %d at %d differs", pg, seq)
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
	}
	check(1)

	// Reopen: state survives.
	s.Close()
	if s, err = Open(path, ""); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Latest().Seq != 40 || s.ID() != "abc" || s.Cursor().Frame != 40 {
		t.Fatalf("reopened: latest %+v id %q cursor %+v", s.Latest(), s.ID(), s.Cursor())
	}
	check(1)

	// Compaction keeps every revision from the horizon on intact.
	deleted, err := s.Compact(t.Context(), 25)
	if err != nil || deleted == 0 {
		t.Fatalf("compact: %d %v", deleted, err)
	}
	check(25)
	if _, err := s.Check(24); !errors.Is(err, ErrTooOld) {
		t.Fatalf("below horizon: %v", err)
	}
	if _, err := s.Check(41); !errors.Is(err, ErrFuture) {
		t.Fatalf("future: %v", err)
	}
}
