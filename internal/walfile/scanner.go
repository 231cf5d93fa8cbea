package walfile

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// ErrPositionMismatch is returned (wrapped) by NewScanner when a Position
// names the current WAL generation (same salts) but the file no longer holds
// the committed frame it refers to with the recorded checksum. SQLite never
// rewrites committed frames within a generation, so this means the position
// is not from this file, or the log lost committed frames (for example an OS
// crash before they reached the disk) and was then appended to again.
var ErrPositionMismatch = errors.New("walfile: position does not match WAL contents")

// Position identifies a point in a WAL just after a commit frame (or just
// after the header when Frame is 0). It is everything needed to resume
// validation at the next frame: the generation's salts, the number of frames
// consumed and the running checksum after the last of them. The zero
// Position means "from the beginning, no previous knowledge".
type Position struct {
	Salt1, Salt2   uint32
	Frame          int // frames consumed: index of the last commit frame read, 0 for none
	Cksum1, Cksum2 uint32
}

// IsZero reports whether p is the zero Position.
func (p Position) IsZero() bool { return p == Position{} }

// Scanner reads the committed transactions of a WAL, one transaction per
// call to Next, validating every frame as SQLite recovery does. It works on
// a snapshot of the file of the size given to NewScanner; to pick up later
// commits, create a new Scanner from Position(). Work per Scanner is
// proportional to the frames after the starting position (plus the frames of
// a still unfinished transaction at the tail, which are read but not
// returned). A Scanner is not safe for concurrent use.
type Scanner struct {
	r         io.ReaderAt
	size      int64
	hdr       Header
	restarted bool
	pos       Position
	done      bool
	err       error

	buf    []byte // file bytes [bufOff, bufOff+len(buf))
	bufOff int64
}

// readAhead is roughly how many bytes the Scanner reads per ReadAt call.
const readAhead = 256 << 10

// NewScanner prepares to read the WAL held by r, of size bytes, after from.
//
// If the WAL is shorter than a header it has no frames; Restarted then
// reports whether from was non-zero. Otherwise the header must be valid (an
// error wrapping ErrInvalidHeader if not). If from is zero or its salts
// differ from the header's, scanning starts at frame 1, and Restarted reports
// true when from was non-zero: the log was restarted (or replaced) since from
// was recorded, and from's frame count no longer applies. If the salts match,
// scanning resumes after from.Frame; the frame there must still carry the
// recorded checksum (ErrPositionMismatch otherwise).
func NewScanner(r io.ReaderAt, size int64, from Position) (*Scanner, error) {
	if from.Frame < 0 {
		return nil, fmt.Errorf("%w: negative frame %d", ErrPositionMismatch, from.Frame)
	}
	s := &Scanner{r: r, size: size}
	if size < HeaderSize {
		s.restarted = !from.IsZero()
		s.done = true
		return s, nil
	}
	var hb [HeaderSize]byte
	if err := readFull(r, hb[:], 0); err != nil {
		return nil, fmt.Errorf("walfile: reading WAL header: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	s.hdr = h
	s.pos = Position{Salt1: h.Salt1, Salt2: h.Salt2, Cksum1: h.Checksum1, Cksum2: h.Checksum2}
	if from.IsZero() {
		return s, nil
	}
	if from.Salt1 != h.Salt1 || from.Salt2 != h.Salt2 {
		s.restarted = true
		return s, nil
	}
	if from.Frame == 0 {
		if from != s.pos {
			return nil, fmt.Errorf("%w: header checksum differs", ErrPositionMismatch)
		}
		return s, nil
	}
	if int64(from.Frame) > (size-HeaderSize)/h.FrameSize() {
		return nil, fmt.Errorf("%w: frame %d is beyond the end of the WAL", ErrPositionMismatch, from.Frame)
	}
	var fb [FrameHeaderSize]byte
	if err := readFull(r, fb[:], h.FrameOffset(from.Frame)); err != nil {
		return nil, fmt.Errorf("walfile: reading frame %d header: %w", from.Frame, err)
	}
	fh := parseFrameHeader(fb[:])
	if fh.salt1 != h.Salt1 || fh.salt2 != h.Salt2 || fh.dbSize == 0 ||
		fh.cksum1 != from.Cksum1 || fh.cksum2 != from.Cksum2 {
		return nil, fmt.Errorf("%w: frame %d is not the recorded commit frame", ErrPositionMismatch, from.Frame)
	}
	s.pos = from
	return s, nil
}

// PositionAt returns the position after commit frame i of the WAL held by
// r, whose pages are pageSize bytes (i 0: after the header), reading only
// that frame's header (the header, for i 0): what a writer that knows
// where its own commit ended (SQLite's WAL hook) needs to resume scanning
// there. The frame must be a commit frame, and its salts are taken for its
// generation's: neither the WAL header nor the checksum chain is read (a
// NewScanner or EndsAt from the position compares them).
func PositionAt(r io.ReaderAt, pageSize, i int) (Position, error) {
	if i <= 0 {
		var hb [HeaderSize]byte
		if err := readFull(r, hb[:], 0); err != nil {
			return Position{}, fmt.Errorf("walfile: reading WAL header: %w", err)
		}
		h, err := ParseHeader(hb[:])
		if err != nil {
			return Position{}, err
		}
		return Position{Salt1: h.Salt1, Salt2: h.Salt2, Cksum1: h.Checksum1, Cksum2: h.Checksum2}, nil
	}
	if !validPageSize(uint32(pageSize)) {
		return Position{}, fmt.Errorf("walfile: bad page size %d", pageSize)
	}
	h := Header{PageSize: uint32(pageSize)}
	var fb [FrameHeaderSize]byte
	if err := readFull(r, fb[:], h.FrameOffset(i)); err != nil {
		return Position{}, fmt.Errorf("walfile: reading frame %d header: %w", i, err)
	}
	fh := parseFrameHeader(fb[:])
	if fh.dbSize == 0 || fh.pgno == 0 {
		return Position{}, fmt.Errorf("%w: frame %d is not a commit frame", ErrPositionMismatch, i)
	}
	return Position{Salt1: fh.salt1, Salt2: fh.salt2, Frame: i, Cksum1: fh.cksum1, Cksum2: fh.cksum2}, nil
}

// EndsAt reports whether the WAL held by r still ends at p, as far as two
// reads tell: its header is p's generation, the frame at p (for frame 0,
// the header) still carries p's checksum, and the frame after it is not a
// valid continuation (absent, torn, of another generation, or failing the
// checksum chain). It is the cheap check of a writer that recorded p after
// its last commit; false means "look closer" (Scan from p): another
// writer's commit, a restart, or frames a rolled-back transaction spilled
// (valid, but no commit). An unreadable header or a frame at p that no
// longer matches is false too, for the Scan to report.
func EndsAt(r io.ReaderAt, p Position) (bool, error) {
	if p.IsZero() {
		return false, nil
	}
	var hb [HeaderSize]byte
	if err := readFull(r, hb[:], 0); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	h, err := ParseHeader(hb[:])
	if err != nil || h.Salt1 != p.Salt1 || h.Salt2 != p.Salt2 {
		return false, nil
	}
	fs := h.FrameSize()
	if p.Frame == 0 {
		if h.Checksum1 != p.Cksum1 || h.Checksum2 != p.Cksum2 {
			return false, nil
		}
		b := make([]byte, fs)
		n, err := r.ReadAt(b, h.FrameOffset(1))
		if int64(n) < fs {
			if err == nil || err == io.EOF {
				return true, nil
			}
			return false, err
		}
		_, _, _, valid := checkFrame(h, p.Cksum1, p.Cksum2, b)
		return !valid, nil
	}
	b := make([]byte, 2*fs)
	n, err := r.ReadAt(b, h.FrameOffset(p.Frame))
	if int64(n) < fs {
		if err == nil || err == io.EOF {
			return false, nil // the frame at p is gone
		}
		return false, err
	}
	fh := parseFrameHeader(b)
	if fh.salt1 != h.Salt1 || fh.salt2 != h.Salt2 || fh.dbSize == 0 || fh.cksum1 != p.Cksum1 || fh.cksum2 != p.Cksum2 {
		return false, nil
	}
	if int64(n) < 2*fs {
		if err == nil || err == io.EOF {
			return true, nil
		}
		return false, err
	}
	_, _, _, valid := checkFrame(h, p.Cksum1, p.Cksum2, b[fs:])
	return !valid, nil
}

// Header returns the WAL header; it is the zero Header if the WAL is shorter
// than a header.
func (s *Scanner) Header() Header { return s.hdr }

// PageSize returns the page size from the header (0 without a header).
func (s *Scanner) PageSize() int { return int(s.hdr.PageSize) }

// Restarted reports whether the Position given to NewScanner belongs to an
// earlier WAL generation than the file now holds (different salts, or no
// header at all). Frames are then read from frame 1 of the new generation.
func (s *Scanner) Restarted() bool { return s.restarted }

// Position returns the position after the last transaction returned by Next
// (or the starting position). It is the zero Position if the WAL has no
// header.
func (s *Scanner) Position() Position { return s.pos }

// Next returns the frames of the next committed transaction in WAL order,
// the commit frame last. A page can occur more than once in a transaction;
// the later frame holds the page's final content (see LatestPerPage).
// Next returns io.EOF when no further complete, valid transaction exists:
// at the end of the file, at a torn or invalid frame (including stale frames
// of an older generation), or before the frames of a transaction whose commit
// frame has not been written yet. Other errors are I/O errors.
func (s *Scanner) Next() ([]Frame, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.done {
		return nil, io.EOF
	}
	var txn []Frame
	c1, c2 := s.pos.Cksum1, s.pos.Cksum2
	for i := s.pos.Frame + 1; ; i++ {
		b, err := s.frame(i)
		if err != nil {
			if err == errNoFrame {
				s.done = true
				return nil, io.EOF
			}
			s.err = err
			return nil, err
		}
		fh, n1, n2, ok := checkFrame(s.hdr, c1, c2, b)
		if !ok {
			s.done = true
			return nil, io.EOF
		}
		c1, c2 = n1, n2
		txn = append(txn, Frame{
			Index:  i,
			Pgno:   fh.pgno,
			DBSize: fh.dbSize,
			Offset: s.hdr.FrameOffset(i) + FrameHeaderSize,
		})
		if fh.dbSize != 0 {
			s.pos.Frame = i
			s.pos.Cksum1, s.pos.Cksum2 = c1, c2
			return txn, nil
		}
	}
}

var errNoFrame = errors.New("no whole frame")

// frame returns the bytes of frame i (header and page), or errNoFrame if the
// file does not hold all of them.
func (s *Scanner) frame(i int) ([]byte, error) {
	fs := s.hdr.FrameSize()
	off := s.hdr.FrameOffset(i)
	if off > s.size-fs {
		return nil, errNoFrame
	}
	if off >= s.bufOff && off+fs <= s.bufOff+int64(len(s.buf)) {
		return s.buf[off-s.bufOff:][:fs], nil
	}
	// The first read is of one frame: a scan from a recorded end usually
	// finds nothing after it (or, in a WAL SQLite reuses from its start,
	// a stale frame of an older generation), and must stay cheap.
	n := max(fs, readAhead/fs*fs)
	if len(s.buf) == 0 {
		n = fs
	}
	n = min(n, (s.size-off)/fs*fs)
	if int64(cap(s.buf)) < n {
		s.buf = make([]byte, n)
	}
	s.buf = s.buf[:n]
	got, err := s.r.ReadAt(s.buf, off)
	if int64(got) < n && err == nil {
		err = io.ErrNoProgress // ReaderAt contract violated
	}
	s.bufOff = off
	s.buf = s.buf[:got]
	if int64(got) >= fs {
		return s.buf[:fs], nil
	}
	if err == io.EOF {
		// The file is shorter than the size we were given (it was
		// truncated meanwhile): treat as the end of the log.
		return nil, errNoFrame
	}
	return nil, fmt.Errorf("walfile: reading frame %d: %w", i, err)
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Each calls fn with the frames of every remaining committed transaction,
// in order (the commit frame of each last), and then returns nil: like
// Next, it stops quietly where the valid log ends (the end of the file, a
// torn or invalid frame, a transaction whose commit frame is missing), as
// SQLite's recovery does. It returns Next's I/O errors and fn's own, as
// they are. Afterwards Position is the position after the last
// transaction fn was given; a caller that needs the log to reach a given
// point compares it.
func (s *Scanner) Each(fn func(txn []Frame) error) error {
	for {
		txn, err := s.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(txn); err != nil {
			return err
		}
	}
}

// Scan is the WAL scan loop: it reads the committed transactions of the
// WAL held by r (size bytes) after from, calling fn with each (see Each),
// and returns the position after the last one. Its errors are NewScanner's
// (ErrInvalidHeader, ErrPositionMismatch), I/O errors and fn's; the
// Position is meaningful only without one.
func Scan(r io.ReaderAt, size int64, from Position, fn func(txn []Frame) error) (Position, error) {
	s, err := NewScanner(r, size, from)
	if err != nil {
		return Position{}, err
	}
	if err := s.Each(fn); err != nil {
		return Position{}, err
	}
	return s.Position(), nil
}

// ReadAll reads the committed frames of the WAL file at path, in order. A
// missing or empty file (shorter than a header) yields the zero Header, no
// frames and no error.
func ReadAll(path string) (Header, []Frame, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Header{}, nil, nil
		}
		return Header{}, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Header{}, nil, err
	}
	s, err := NewScanner(f, st.Size(), Position{})
	if err != nil {
		return Header{}, nil, err
	}
	var frames []Frame
	if err := s.Each(func(txn []Frame) error { frames = append(frames, txn...); return nil }); err != nil {
		return s.Header(), nil, err
	}
	return s.Header(), frames, nil
}

// LatestPerPage returns, for every page in frames, the frame with the highest
// Index, sorted by page number. Applied to one transaction it gives the
// page images the transaction committed.
func LatestPerPage(frames []Frame) []Frame {
	latest := make(map[uint32]Frame, len(frames))
	for _, f := range frames {
		if cur, ok := latest[f.Pgno]; !ok || f.Index > cur.Index {
			latest[f.Pgno] = f
		}
	}
	out := make([]Frame, 0, len(latest))
	for _, f := range latest {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Frame) int { return cmp.Compare(a.Pgno, b.Pgno) })
	return out
}
