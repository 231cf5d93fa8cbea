package walfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
)

// synthFrame describes a frame for buildWAL; the page image is filled with
// fill.
type synthFrame struct {
	pgno, dbSize uint32
	fill         byte
}

// buildWAL writes a WAL image with valid checksums in the given byte order.
func buildWAL(bigEndian bool, pageSize int, salt1, salt2, ckpt uint32, frames []synthFrame) []byte {
	buf := make([]byte, HeaderSize, HeaderSize+len(frames)*(FrameHeaderSize+pageSize))
	magic := MagicLittleEndian
	if bigEndian {
		magic = MagicBigEndian
	}
	be := binary.BigEndian
	be.PutUint32(buf[0:], magic)
	be.PutUint32(buf[4:], FormatVersion)
	be.PutUint32(buf[8:], uint32(pageSize))
	be.PutUint32(buf[12:], ckpt)
	be.PutUint32(buf[16:], salt1)
	be.PutUint32(buf[20:], salt2)
	c1, c2 := checksum(bigEndian, 0, 0, buf[:24])
	be.PutUint32(buf[24:], c1)
	be.PutUint32(buf[28:], c2)
	for _, f := range frames {
		fr := make([]byte, FrameHeaderSize+pageSize)
		be.PutUint32(fr[0:], f.pgno)
		be.PutUint32(fr[4:], f.dbSize)
		be.PutUint32(fr[8:], salt1)
		be.PutUint32(fr[12:], salt2)
		for i := FrameHeaderSize; i < len(fr); i++ {
			fr[i] = f.fill + byte(i)
		}
		c1, c2 = checksum(bigEndian, c1, c2, fr[:8])
		c1, c2 = checksum(bigEndian, c1, c2, fr[FrameHeaderSize:])
		be.PutUint32(fr[16:], c1)
		be.PutUint32(fr[20:], c2)
		buf = append(buf, fr...)
	}
	return buf
}

// scanBytes returns all transactions of a WAL image after from.
func scanBytes(t testing.TB, b []byte, from Position) ([][]Frame, *Scanner) {
	t.Helper()
	s, err := NewScanner(bytes.NewReader(b), int64(len(b)), from)
	if err != nil {
		t.Fatalf("NewScanner: %v", err)
	}
	var txns [][]Frame
	for {
		txn, err := s.Next()
		if err == io.EOF {
			return txns, s
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		txns = append(txns, txn)
	}
}

func pgnos(txn []Frame) []uint32 {
	var out []uint32
	for _, f := range txn {
		out = append(out, f.Pgno)
	}
	return out
}

func TestChecksumKnownAnswers(t *testing.T) {
	b := []byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4}
	// Big-endian words 1,2,3,4: s1=1, s2=2+1=3; s1=1+3+3=7, s2=3+4+7=14.
	if s1, s2 := checksum(true, 0, 0, b); s1 != 7 || s2 != 14 {
		t.Errorf("big-endian: got %d,%d want 7,14", s1, s2)
	}
	// Little-endian words 1<<24, 2<<24, 3<<24, 4<<24.
	if s1, s2 := checksum(false, 0, 0, b); s1 != 7<<24 || s2 != 14<<24 {
		t.Errorf("little-endian: got %#x,%#x want %#x,%#x", s1, s2, 7<<24, 14<<24)
	}
	// Continuing from a running value, with wrap-around.
	if s1, s2 := checksum(true, 0xffffffff, 1, b[:8]); s1 != 1 || s2 != 4 {
		// s1 = 0xffffffff + 1 + 1 = 1 (mod 2^32), s2 = 1 + 2 + 1 = 4
		t.Errorf("running: got %d,%d want 1,4", s1, s2)
	}
}

func TestParseHeader(t *testing.T) {
	for _, bigEndian := range []bool{false, true} {
		w := buildWAL(bigEndian, 4096, 11, 22, 3, nil)
		h, err := ParseHeader(w)
		if err != nil {
			t.Fatalf("bigEndian=%v: %v", bigEndian, err)
		}
		want := Header{Version: FormatVersion, PageSize: 4096, CheckpointSeq: 3, Salt1: 11, Salt2: 22,
			Checksum1: binary.BigEndian.Uint32(w[24:]), Checksum2: binary.BigEndian.Uint32(w[28:])}
		want.Magic = MagicLittleEndian
		if bigEndian {
			want.Magic = MagicBigEndian
		}
		if h != want || h.BigEndianChecksum() != bigEndian {
			t.Errorf("got %+v want %+v", h, want)
		}
	}

	good := buildWAL(false, 1024, 1, 2, 0, nil)
	resum := func(b []byte) []byte {
		c1, c2 := checksum(binary.BigEndian.Uint32(b)&1 == 1, 0, 0, b[:24])
		binary.BigEndian.PutUint32(b[24:], c1)
		binary.BigEndian.PutUint32(b[28:], c2)
		return b
	}
	cases := map[string][]byte{
		"short":       good[:31],
		"magic":       resum(putU32(good, 0, 0x377f0681)),
		"version":     resum(putU32(good, 4, 3007001)),
		"pagesize":    resum(putU32(good, 8, 1000)),
		"pagesize0":   resum(putU32(good, 8, 0)),
		"pagesize256": resum(putU32(good, 8, 256)),
		"pagesizeBig": resum(putU32(good, 8, 131072)),
		"checksum":    putU32(good, 12, 9), // checkpoint seq changed, checksum not
		"byteorder":   putU32(good, 0, MagicBigEndian),
	}
	for name, b := range cases {
		if _, err := ParseHeader(b); !errors.Is(err, ErrInvalidHeader) {
			t.Errorf("%s: err = %v, want ErrInvalidHeader", name, err)
		}
	}
	if _, err := ParseHeader(resum(putU32(good, 8, 65536))); err != nil {
		t.Errorf("page size 65536: %v", err)
	}
}

func putU32(b []byte, off int, v uint32) []byte {
	c := slices.Clone(b)
	binary.BigEndian.PutUint32(c[off:], v)
	return c
}

func TestSyntheticBothByteOrders(t *testing.T) {
	frames := []synthFrame{
		{1, 0, 1}, {2, 3, 2}, // txn 1
		{3, 0, 3}, {1, 0, 4}, {3, 4, 5}, // txn 2, page 3 twice
		{4, 5, 6}, // txn 3
		{5, 0, 7}, // unfinished
	}
	for _, bigEndian := range []bool{false, true} {
		w := buildWAL(bigEndian, 512, 0xdeadbeef, 7, 0, frames)
		txns, s := scanBytes(t, w, Position{})
		got := [][]uint32{}
		for _, txn := range txns {
			got = append(got, pgnos(txn))
		}
		want := [][]uint32{{1, 2}, {3, 1, 3}, {4}}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("bigEndian=%v: got %v want %v", bigEndian, got, want)
		}
		if p := s.Position(); p.Frame != 6 || p.Salt1 != 0xdeadbeef || p.Salt2 != 7 {
			t.Errorf("position %+v", p)
		}
		// Page data offsets and content.
		f := txns[1][2]
		if f.Index != 5 || f.DBSize != 4 || !f.IsCommit() || txns[1][0].IsCommit() {
			t.Errorf("frame %+v", f)
		}
		page, err := ReadPage(bytes.NewReader(w), f, 512, nil)
		if err != nil || page[0] != 5+FrameHeaderSize%256 {
			t.Errorf("ReadPage: %v %v", err, page[:4])
		}
		if lp := LatestPerPage(txns[1]); len(lp) != 2 || lp[0].Pgno != 1 || lp[1].Pgno != 3 || lp[1].Index != 5 {
			t.Errorf("LatestPerPage = %+v", lp)
		}

		// The same bytes read with the other byte order fail validation:
		// flip the magic and fix only the header checksum.
		other := putU32(w, 0, binary.BigEndian.Uint32(w)^1)
		c1, c2 := checksum(!bigEndian, 0, 0, other[:24])
		binary.BigEndian.PutUint32(other[24:], c1)
		binary.BigEndian.PutUint32(other[28:], c2)
		if txns, _ := scanBytes(t, other, Position{}); len(txns) != 0 {
			t.Errorf("bigEndian=%v: wrong byte order accepted %d txns", bigEndian, len(txns))
		}
	}
}

func TestSyntheticInvalidFrames(t *testing.T) {
	frames := []synthFrame{{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {4, 4, 4}}
	w := buildWAL(false, 512, 5, 6, 0, frames)
	fs := int(FrameHeaderSize + 512)
	off := func(i int) int { return HeaderSize + (i-1)*fs }

	all, _ := scanBytes(t, w, Position{})
	if len(all) != 4 {
		t.Fatalf("got %d txns", len(all))
	}
	check := func(name string, b []byte, want int) {
		t.Helper()
		txns, _ := scanBytes(t, b, Position{})
		if len(txns) != want {
			t.Errorf("%s: got %d txns, want %d", name, len(txns), want)
		}
	}
	// Page number 0 makes a frame invalid even with a correct checksum.
	zero := buildWAL(false, 512, 5, 6, 0, []synthFrame{{1, 1, 1}, {0, 2, 2}, {3, 3, 3}})
	check("pgno0", zero, 1)
	// Salt mismatch in frame 3.
	check("salt", putU32(w, off(3)+8, 99), 2)
	// Checksum field wrong in frame 2.
	check("cksum", putU32(w, off(2)+16, 1), 1)
	// Page byte flipped in frame 4.
	b := slices.Clone(w)
	b[off(4)+FrameHeaderSize+100] ^= 1
	check("page", b, 3)
	// Torn frames.
	check("torn", w[:len(w)-1], 3)
	check("torn-header", w[:off(4)+10], 3)
	check("header-only", w[:HeaderSize], 0)
	check("header+junk", w[:HeaderSize+7], 0)
	// The commit size field is covered by the checksum.
	check("dbsize", putU32(w, off(2)+4, 7), 1)

	// Empty and short files have no header and no frames.
	for _, n := range []int{0, 1, 31} {
		s, err := NewScanner(bytes.NewReader(w[:n]), int64(n), Position{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Next(); err != io.EOF || s.Header() != (Header{}) || s.Restarted() {
			t.Errorf("size %d: err=%v header=%+v", n, err, s.Header())
		}
	}
	// A bad header is an error.
	if _, err := NewScanner(bytes.NewReader(w), int64(len(w)), Position{}); err != nil {
		t.Fatal(err)
	}
	bad := putU32(w, 4, 1)
	if _, err := NewScanner(bytes.NewReader(bad), int64(len(bad)), Position{}); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("bad header: %v", err)
	}
}

func TestSyntheticResume(t *testing.T) {
	frames := []synthFrame{{1, 0, 1}, {2, 2, 2}, {3, 3, 3}, {1, 0, 4}, {2, 0, 5}}
	w := buildWAL(true, 1024, 5, 6, 0, frames)
	txns, s := scanBytes(t, w, Position{})
	if len(txns) != 2 {
		t.Fatalf("got %d txns", len(txns))
	}
	pos := s.Position()

	// Nothing new: no transactions, same position.
	txns, s = scanBytes(t, w, pos)
	if len(txns) != 0 || s.Position() != pos || s.Restarted() {
		t.Errorf("resume at end: %d txns, %+v", len(txns), s.Position())
	}
	// Complete the pending transaction.
	w2 := buildWAL(true, 1024, 5, 6, 0, append(slices.Clone(frames), synthFrame{6, 6, 6}))
	txns, s = scanBytes(t, w2, pos)
	if len(txns) != 1 || !slices.Equal(pgnos(txns[0]), []uint32{1, 2, 6}) || txns[0][0].Index != 4 {
		t.Errorf("resume: %+v", txns)
	}
	if s.Position().Frame != 6 {
		t.Errorf("position %+v", s.Position())
	}

	// Position after the header only.
	_, s0 := scanBytes(t, w[:HeaderSize], Position{})
	txns, _ = scanBytes(t, w2, s0.Position())
	if len(txns) != 3 {
		t.Errorf("from header position: %d txns", len(txns))
	}

	// Same salts but different content at the recorded frame.
	other := buildWAL(true, 1024, 5, 6, 0, []synthFrame{{1, 0, 9}, {2, 2, 9}, {3, 3, 9}})
	if _, err := NewScanner(bytes.NewReader(other), int64(len(other)), pos); !errors.Is(err, ErrPositionMismatch) {
		t.Errorf("diverged: %v", err)
	}
	if _, err := NewScanner(bytes.NewReader(w[:HeaderSize+1024]), HeaderSize+1024, pos); !errors.Is(err, ErrPositionMismatch) {
		t.Errorf("short: %v", err)
	}
	bogus := pos
	bogus.Frame = 1 // not a commit frame
	if _, err := NewScanner(bytes.NewReader(w), int64(len(w)), bogus); !errors.Is(err, ErrPositionMismatch) {
		t.Errorf("non-commit: %v", err)
	}
	bogus.Frame = -1
	if _, err := NewScanner(bytes.NewReader(w), int64(len(w)), bogus); !errors.Is(err, ErrPositionMismatch) {
		t.Errorf("negative: %v", err)
	}

	// New salts: restarted, read from frame 1.
	gen2 := buildWAL(true, 1024, 6, 77, 1, []synthFrame{{9, 9, 1}})
	txns, s = scanBytes(t, gen2, pos)
	if !s.Restarted() || len(txns) != 1 || txns[0][0].Index != 1 {
		t.Errorf("restart: %v %+v", s.Restarted(), txns)
	}
	// Empty file after a non-zero position: restarted, zero position.
	s, err := NewScanner(bytes.NewReader(nil), 0, pos)
	if err != nil || !s.Restarted() || !s.Position().IsZero() {
		t.Errorf("empty: %v %v %+v", err, s.Restarted(), s.Position())
	}
}

// errReader fails every read.
type errReader struct{}

var errBoom = errors.New("boom")

func (errReader) ReadAt([]byte, int64) (int, error) { return 0, errBoom }

// afterReader fails reads beyond n bytes.
type afterReader struct {
	b []byte
	n int64
}

func (r afterReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.n {
		return 0, errBoom
	}
	return copy(p, r.b[off:]), nil
}

func TestReadErrors(t *testing.T) {
	w := buildWAL(false, 512, 1, 2, 0, []synthFrame{{1, 1, 1}, {2, 2, 2}})
	if _, err := NewScanner(errReader{}, int64(len(w)), Position{}); !errors.Is(err, errBoom) {
		t.Errorf("header read: %v", err)
	}
	s, err := NewScanner(afterReader{w, HeaderSize}, int64(len(w)), Position{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); !errors.Is(err, errBoom) {
		t.Errorf("frame read: %v", err)
	}
	if _, err := s.Next(); !errors.Is(err, errBoom) {
		t.Errorf("sticky: %v", err)
	}
	// The file shrank below the size we were told: end of log, not error.
	s, err = NewScanner(bytes.NewReader(w[:len(w)-10]), int64(len(w)), Position{})
	if err != nil {
		t.Fatal(err)
	}
	if txns, err := s.Next(); err != nil || len(txns) != 1 {
		t.Errorf("first: %v %v", txns, err)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("shrunk: %v", err)
	}
	if _, err := ReadPage(bytes.NewReader(w), Frame{Index: 3, Offset: int64(len(w)) + FrameHeaderSize}, 512, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadPage past end: %v", err)
	}
	if _, err := ReadPage(bytes.NewReader(w), Frame{Index: 1, Offset: 0}, 512, nil); err == nil {
		t.Error("ReadPage bad offset: no error")
	}
	buf := make([]byte, 0, 4096)
	p, err := ReadPage(bytes.NewReader(w), Frame{Index: 1, Pgno: 1, Offset: HeaderSize + FrameHeaderSize}, 512, buf)
	if err != nil || len(p) != 512 || &p[0] != &buf[:1][0] {
		t.Errorf("ReadPage reuse: %v", err)
	}
}

func TestIndexSynthetic(t *testing.T) {
	frames := []Frame{
		{Index: 1, Pgno: 1}, {Index: 2, Pgno: 2, DBSize: 2},
		{Index: 3, Pgno: 2}, {Index: 4, Pgno: 3, DBSize: 3},
		{Index: 5, Pgno: 1, DBSize: 3},
		{Index: 6, Pgno: 2, DBSize: 2},
	}
	x := BuildIndex(frames)
	shuffled := []Frame{frames[3], frames[0], frames[5], frames[1], frames[4], frames[2], frames[2]}
	y := BuildIndex(shuffled)
	var z Index
	for _, f := range frames {
		if err := z.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Add(frames[5]); err == nil {
		t.Error("Add out of order: no error")
	}
	for _, ix := range []*Index{x, y, &z} {
		if ix.Len() != 6 || ix.Last() != 6 {
			t.Fatalf("Len %d Last %d", ix.Len(), ix.Last())
		}
		lookups := []struct {
			pgno  uint32
			upTo  int
			index int
		}{
			{1, 0, 0}, {1, 1, 1}, {1, 4, 1}, {1, 5, 5}, {1, 100, 5},
			{2, 1, 0}, {2, 2, 2}, {2, 3, 3}, {2, 5, 3}, {2, 6, 6},
			{3, 3, 0}, {3, 4, 4}, {4, 6, 0},
		}
		for _, l := range lookups {
			f, ok := ix.Lookup(l.pgno, l.upTo)
			if ok != (l.index != 0) || f.Index != l.index {
				t.Errorf("Lookup(%d,%d) = %+v,%v want index %d", l.pgno, l.upTo, f, ok, l.index)
			}
		}
		for _, c := range []struct {
			w    int
			want []uint32
		}{{0, []uint32{1, 2, 3}}, {2, []uint32{1, 2, 3}}, {4, []uint32{1, 2}}, {5, []uint32{2}}, {6, nil}, {-3, []uint32{1, 2, 3}}} {
			if got := ix.ChangedAfter(c.w); !slices.Equal(got, c.want) {
				t.Errorf("ChangedAfter(%d) = %v want %v", c.w, got, c.want)
			}
		}
		for _, c := range []struct {
			upTo int
			size uint32
		}{{0, 0}, {1, 0}, {2, 2}, {3, 2}, {4, 3}, {5, 3}, {6, 2}, {9, 2}} {
			if got, ok := ix.DBSize(c.upTo); got != c.size || ok != (c.size != 0) {
				t.Errorf("DBSize(%d) = %d,%v want %d", c.upTo, got, ok, c.size)
			}
		}
	}
	var empty Index
	if _, ok := empty.Lookup(1, 10); ok || empty.Last() != 0 || empty.ChangedAfter(0) != nil {
		t.Error("empty index")
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r     io.ReaderAt
	n     int64
	calls int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	c.calls++
	return n, err
}

func TestResumeReadsOnlyNewFrames(t *testing.T) {
	const pageSize, total, resumeAt = 4096, 3000, 2991
	frames := make([]synthFrame, total)
	for i := range frames {
		frames[i] = synthFrame{pgno: uint32(i%50 + 1), dbSize: uint32(i%3/2) * 60, fill: byte(i)}
	}
	frames[total-1].dbSize = 60
	w := buildWAL(false, pageSize, 1, 2, 0, frames)

	// Position at commit frame resumeAt (frames 3, 6, 9, ... are commits).
	var pos Position
	s, err := NewScanner(bytes.NewReader(w), int64(len(w)), Position{})
	if err != nil {
		t.Fatal(err)
	}
	for s.Position().Frame < resumeAt {
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
	}
	pos = s.Position()
	if pos.Frame != resumeAt {
		t.Fatalf("position %d", pos.Frame)
	}

	cr := &countingReader{r: bytes.NewReader(w)}
	s, err = NewScanner(cr, int64(len(w)), pos)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		txn, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(txn)
	}
	if n != total-resumeAt {
		t.Fatalf("got %d frames, want %d", n, total-resumeAt)
	}
	fs := int64(FrameHeaderSize + pageSize)
	want := int64(HeaderSize+FrameHeaderSize) + (total-resumeAt)*fs
	if cr.n != want {
		t.Errorf("read %d bytes in %d calls, want %d (header, one frame header, new frames)", cr.n, cr.calls, want)
	}
}

func BenchmarkScan(b *testing.B) {
	frames := make([]synthFrame, 1000)
	for i := range frames {
		frames[i] = synthFrame{pgno: uint32(i + 1), fill: byte(i)}
		if i%10 == 9 {
			frames[i].dbSize = uint32(i + 1)
		}
	}
	w := buildWAL(false, 4096, 1, 2, 0, frames)
	b.SetBytes(int64(len(w)))
	for b.Loop() {
		s, err := NewScanner(bytes.NewReader(w), int64(len(w)), Position{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := s.Next(); err != nil {
				break
			}
		}
	}
}
