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
		if got, err := PositionAt(r, 512, i); err != nil || got != s.Position() {
			t.Fatalf("PositionAt(%d) = %+v, %v; the scan's %+v", i, got, err, s.Position())
		}
		txn, err := s.Next()
		if err != nil {
			break
		}
		i = txn[len(txn)-1].Index
	}
	if _, err := PositionAt(r, 512, 1); !errors.Is(err, ErrPositionMismatch) {
		t.Fatalf("frame 1 (no commit): %v", err)
	}
	if _, err := PositionAt(r, 512, 4); err == nil {
		t.Fatal("frame 4 (past the end): no error")
	}
}

// EndsAt is true exactly when a Scan from the position would find nothing
// after it and accept it: nothing follows, or a torn frame, or a frame of
// an older generation (a WAL SQLite reuses from its start); false for a
// commit appended, a restart, a rewritten frame at the position, or frames
// of a transaction without its commit (the Scan then decides).
func TestEndsAt(t *testing.T) {
	const ps = 512
	fs := FrameHeaderSize + ps
	frames := []synthFrame{{1, 0, 1}, {2, 2, 2}, {3, 3, 3}}
	w := buildWAL(false, ps, 5, 6, 0, frames)
	posAt := func(b []byte, i int) Position {
		t.Helper()
		p, err := PositionAt(bytes.NewReader(b), ps, i)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// An older generation, longer than the new one: its frames stay after
	// the new generation's end.
	old := buildWAL(false, ps, 4, 9, 0, append(slices.Clone(frames), synthFrame{4, 4, 4}, synthFrame{5, 5, 5}))
	reused := append(slices.Clone(w), old[len(w):]...)
	noCommit := buildWAL(false, ps, 5, 6, 0, append(slices.Clone(frames), synthFrame{4, 0, 4}))
	rewritten := buildWAL(false, ps, 5, 6, 0, []synthFrame{{1, 0, 1}, {2, 2, 2}, {3, 3, 9}})
	restarted := buildWAL(false, ps, 6, 7, 1, frames)
	end := posAt(w, 3)
	for _, tc := range []struct {
		name string
		wal  []byte
		p    Position
		want bool
	}{
		{"at the end", w, end, true},
		{"a torn frame after it", append(slices.Clone(w), make([]byte, fs-1)...), end, true},
		{"an older generation's frames after it", reused, end, true},
		{"a commit after it", w, posAt(w, 2), false},
		{"frames without their commit after it", noCommit, end, false},
		{"the frame at it rewritten", rewritten, end, false},
		{"restarted", restarted, end, false},
		{"header only", w[:HeaderSize], posAt(w, 0), true},
		{"header, a commit after it", w, posAt(w, 0), false},
		{"no header", nil, end, false},
		{"zero position", w, Position{}, false},
	} {
		got, err := EndsAt(bytes.NewReader(tc.wal), tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if got { // the cheap answer agrees with a scan
			if pos, err := Scan(bytes.NewReader(tc.wal), int64(len(tc.wal)), tc.p, func([]Frame) error { return nil }); err != nil || pos != tc.p {
				t.Errorf("%s: EndsAt true, the scan ends at %+v, %v", tc.name, pos, err)
			}
		}
	}
}
