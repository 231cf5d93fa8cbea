package walfile

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// Scan gives fn every transaction before a bad frame in the middle of the
// log and stops there without an error, at the position after the last
// one; its errors are the header's, the position's and fn's.
func TestScan(t *testing.T) {
	frames := []synthFrame{{1, 0, 1}, {2, 2, 2}, {3, 3, 3}, {4, 0, 4}, {5, 5, 5}, {6, 6, 6}}
	w := buildWAL(false, 512, 5, 6, 0, frames)
	fs := int(FrameHeaderSize + 512)
	off := func(i int) int { return HeaderSize + (i-1)*fs }
	scan := func(b []byte, from Position) ([][]uint32, Position, error) {
		var got [][]uint32
		pos, err := Scan(bytes.NewReader(b), int64(len(b)), from, func(txn []Frame) error {
			got = append(got, pgnos(txn))
			return nil
		})
		return got, pos, err
	}

	got, all, err := scan(w, Position{})
	if err != nil || len(got) != 4 || all.Frame != 6 {
		t.Fatalf("whole log: %v at %+v, %v", got, all, err)
	}
	// Frame 4 (the first of the third transaction) is bad: two
	// transactions, no error, the position after frame 3.
	bad := slices.Clone(w)
	bad[off(4)+FrameHeaderSize+7] ^= 1
	got, pos, err := scan(bad, Position{})
	if err != nil || !slices.EqualFunc(got, [][]uint32{{1, 2}, {3}}, slices.Equal) || pos.Frame != 3 {
		t.Fatalf("bad frame 4: %v at %+v, %v", got, pos, err)
	}
	// Resuming there finds nothing more, quietly.
	if got, again, err := scan(bad, pos); err != nil || len(got) != 0 || again != pos {
		t.Fatalf("resumed before the bad frame: %v at %+v, %v", got, again, err)
	}
	// A torn last frame ends the log the same way.
	if got, pos, err := scan(w[:len(w)-10], Position{}); err != nil || len(got) != 3 || pos.Frame != 5 {
		t.Fatalf("torn tail: %v at %+v, %v", got, pos, err)
	}
	// fn's error stops the scan and comes back as it is.
	boom := errors.New("boom")
	n := 0
	if _, err := Scan(bytes.NewReader(w), int64(len(w)), Position{}, func([]Frame) error {
		n++
		return boom
	}); err != boom || n != 1 {
		t.Fatalf("fn's error: %v after %d calls", err, n)
	}
	// A bad header and a position the file does not hold are errors.
	hdr := putU32(w, 4, 1)
	if _, _, err := scan(hdr, Position{}); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("bad header: %v", err)
	}
	wrong := all
	wrong.Cksum1++
	if _, _, err := scan(w, wrong); !errors.Is(err, ErrPositionMismatch) {
		t.Fatalf("wrong position: %v", err)
	}
}

// PositionAt gives, from the header and one frame header, the position a
// scan reaches at that commit frame; a frame that is not a commit, or one
// past the end, is an error.
func TestPositionAt(t *testing.T) {
	frames := []synthFrame{{1, 0, 1}, {2, 2, 2}, {3, 3, 3}}
	w := buildWAL(false, 512, 5, 6, 0, frames)
	r := bytes.NewReader(w)
	s, err := NewScanner(r, int64(len(w)), Position{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; {
		if got, err := PositionAt(r, i); err != nil || got != s.Position() {
			t.Fatalf("PositionAt(%d) = %+v, %v; the scan's %+v", i, got, err, s.Position())
		}
		txn, err := s.Next()
		if err != nil {
			break
		}
		i = txn[len(txn)-1].Index
	}
	if _, err := PositionAt(r, 1); !errors.Is(err, ErrPositionMismatch) {
		t.Fatalf("frame 1 (no commit): %v", err)
	}
	if _, err := PositionAt(r, 4); err == nil {
		t.Fatal("frame 4 (past the end): no error")
	}
}
