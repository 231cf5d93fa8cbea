package walfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sizes of the fixed parts of a WAL file.
const (
	HeaderSize      = 32 // WAL file header
	FrameHeaderSize = 24 // header in front of every page image
)

// Format constants of the WAL header.
const (
	MagicLittleEndian uint32 = 0x377f0682 // checksum words are little-endian
	MagicBigEndian    uint32 = 0x377f0683 // checksum words are big-endian
	FormatVersion     uint32 = 3007000
	MinPageSize              = 512
	MaxPageSize              = 65536
)

// ErrInvalidHeader is returned (wrapped) when a WAL header is not one SQLite
// would accept. SQLite treats a WAL with such a header as empty.
var ErrInvalidHeader = errors.New("walfile: invalid WAL header")

// Header is the decoded 32-byte WAL header.
type Header struct {
	Magic         uint32
	Version       uint32
	PageSize      uint32
	CheckpointSeq uint32
	Salt1         uint32
	Salt2         uint32
	Checksum1     uint32
	Checksum2     uint32
}

// ParseHeader decodes and validates a WAL header from the first HeaderSize
// bytes of b. It checks the magic number, the format version, the page size
// and the header checksum. If b holds at least HeaderSize bytes the decoded
// fields are returned even when validation fails, for diagnostics.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d", ErrInvalidHeader, len(b), HeaderSize)
	}
	h := Header{
		Magic:         binary.BigEndian.Uint32(b[0:]),
		Version:       binary.BigEndian.Uint32(b[4:]),
		PageSize:      binary.BigEndian.Uint32(b[8:]),
		CheckpointSeq: binary.BigEndian.Uint32(b[12:]),
		Salt1:         binary.BigEndian.Uint32(b[16:]),
		Salt2:         binary.BigEndian.Uint32(b[20:]),
		Checksum1:     binary.BigEndian.Uint32(b[24:]),
		Checksum2:     binary.BigEndian.Uint32(b[28:]),
	}
	if h.Magic != MagicLittleEndian && h.Magic != MagicBigEndian {
		return h, fmt.Errorf("%w: bad magic %#08x", ErrInvalidHeader, h.Magic)
	}
	if !validPageSize(h.PageSize) {
		return h, fmt.Errorf("%w: bad page size %d", ErrInvalidHeader, h.PageSize)
	}
	c1, c2 := checksum(h.BigEndianChecksum(), 0, 0, b[:24])
	if c1 != h.Checksum1 || c2 != h.Checksum2 {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrInvalidHeader)
	}
	if h.Version != FormatVersion {
		return h, fmt.Errorf("%w: unsupported version %d", ErrInvalidHeader, h.Version)
	}
	return h, nil
}

func validPageSize(n uint32) bool {
	return n >= MinPageSize && n <= MaxPageSize && n&(n-1) == 0
}

// BigEndianChecksum reports whether checksum words are read big-endian
// (magic 0x377f0683) rather than little-endian (0x377f0682).
func (h Header) BigEndianChecksum() bool { return h.Magic&1 == 1 }

// FrameSize is the size in bytes of one frame: frame header plus page.
func (h Header) FrameSize() int64 { return FrameHeaderSize + int64(h.PageSize) }

// FrameOffset is the file offset of the header of frame i (1-based).
func (h Header) FrameOffset(i int) int64 {
	return HeaderSize + int64(i-1)*h.FrameSize()
}

// Frame describes one valid, committed frame. It holds no page data; use
// ReadPage to read the page image.
type Frame struct {
	Index  int    // 1-based position of the frame in the WAL
	Pgno   uint32 // database page number the frame holds (never 0)
	DBSize uint32 // database size in pages after the commit; 0 unless commit frame
	Offset int64  // file offset of the page image (after the frame header)
}

// IsCommit reports whether f is the last frame of a transaction.
func (f Frame) IsCommit() bool { return f.DBSize != 0 }

// ReadPage reads the page image of f, pageSize bytes, into buf (grown if its
// capacity is too small) and returns the filled slice.
func ReadPage(r io.ReaderAt, f Frame, pageSize int, buf []byte) ([]byte, error) {
	if pageSize <= 0 || pageSize > MaxPageSize {
		return nil, fmt.Errorf("walfile: bad page size %d", pageSize)
	}
	if f.Offset < HeaderSize+FrameHeaderSize {
		return nil, fmt.Errorf("walfile: bad frame offset %d", f.Offset)
	}
	if cap(buf) < pageSize {
		buf = make([]byte, pageSize)
	}
	buf = buf[:pageSize]
	n, err := r.ReadAt(buf, f.Offset)
	if n == pageSize {
		return buf, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("walfile: reading page %d of frame %d: %w", f.Pgno, f.Index, err)
}

// frameHeader is a decoded frame header.
type frameHeader struct {
	pgno, dbSize, salt1, salt2, cksum1, cksum2 uint32
}

func parseFrameHeader(b []byte) frameHeader {
	_ = b[FrameHeaderSize-1]
	return frameHeader{
		pgno:   binary.BigEndian.Uint32(b[0:]),
		dbSize: binary.BigEndian.Uint32(b[4:]),
		salt1:  binary.BigEndian.Uint32(b[8:]),
		salt2:  binary.BigEndian.Uint32(b[12:]),
		cksum1: binary.BigEndian.Uint32(b[16:]),
		cksum2: binary.BigEndian.Uint32(b[20:]),
	}
}

// checkFrame validates one frame (header and page image, contiguous in b)
// against the header salts and the running checksum (s1, s2) of everything
// before it. It returns the decoded frame header, the new running checksum
// and whether the frame is valid.
func checkFrame(h Header, s1, s2 uint32, b []byte) (frameHeader, uint32, uint32, bool) {
	fh := parseFrameHeader(b)
	if fh.salt1 != h.Salt1 || fh.salt2 != h.Salt2 || fh.pgno == 0 {
		return fh, s1, s2, false
	}
	be := h.BigEndianChecksum()
	s1, s2 = checksum(be, s1, s2, b[:8])
	s1, s2 = checksum(be, s1, s2, b[FrameHeaderSize:FrameHeaderSize+int(h.PageSize)])
	return fh, s1, s2, s1 == fh.cksum1 && s2 == fh.cksum2
}

// checksum extends the running WAL checksum (s1, s2) over b, whose length
// must be a multiple of 8.
func checksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	if bigEndian {
		for ; len(b) >= 8; b = b[8:] {
			s1 += binary.BigEndian.Uint32(b) + s2
			s2 += binary.BigEndian.Uint32(b[4:]) + s1
		}
		return s1, s2
	}
	for ; len(b) >= 8; b = b[8:] {
		s1 += binary.LittleEndian.Uint32(b) + s2
		s2 += binary.LittleEndian.Uint32(b[4:]) + s1
	}
	return s1, s2
}
