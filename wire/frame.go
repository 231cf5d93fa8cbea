// Package wire implements the byte-level encodings of the Turso sync
// protocol that are not plain protobuf or JSON.
//
// A POST /pull-updates response body is a concatenation of length-delimited
// protobuf messages: each is the message length as a base-128 varint,
// followed by that many bytes of protobuf encoding (what prost's
// encode_length_delimited and protobuf-java's writeDelimitedTo produce).
// The first message is a syncpb.PullUpdatesRespProtoBody header; for the
// PAGES stream kind, syncpb.PageData messages follow until EOF. A page is
// PageSize bytes and its page_id is 0-based (SQLite page number = id+1).
// The request body, by contrast, is a bare PullUpdatesReqProtoBody.
//
// The request's server_pages_selector is a RoaringBitmap of page ids in the
// portable serialization format; see EncodeSelector and DecodeSelector.
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// PageSize is the only page size the protocol's clients accept.
const PageSize = 4096

// DefaultMaxMessage is the message size limit NewFrameReader uses when
// given a non-positive limit. A PageData frame is about 4 KiB; headers are
// tiny unless they carry many MVCC log ranges.
const DefaultMaxMessage = 16 << 20

// Errors reported by FrameReader, wrapped with details.
var (
	// ErrFrameTooLarge means a length prefix exceeds the reader's limit.
	ErrFrameTooLarge = errors.New("wire: message too large")
	// ErrBadFrame means a length prefix or message body is malformed.
	ErrBadFrame = errors.New("wire: malformed message")
)

// PageData field tags, precomputed for the hand-written codec.
const (
	tagPageID = 1<<3 | byte(protowire.VarintType) // field 1, varint
	tagPage   = 2<<3 | byte(protowire.BytesType)  // field 2, bytes
)

// AppendDelimited appends the length-delimited encoding of m to dst.
func AppendDelimited(dst []byte, m proto.Message) ([]byte, error) {
	size := proto.Size(m)
	dst = slices.Grow(dst, protowire.SizeVarint(uint64(size))+size)
	dst = protowire.AppendVarint(dst, uint64(size))
	// UseCachedSize skips the second size pass; proto.Size just filled it.
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(dst, m)
}

// WriteDelimited writes the length-delimited encoding of m to w in a single
// Write call and returns the number of bytes written.
func WriteDelimited(w io.Writer, m proto.Message) (int, error) {
	b, err := AppendDelimited(nil, m)
	if err != nil {
		return 0, err
	}
	return w.Write(b)
}

// AppendPage appends one length-delimited PageData{page_id, encoded_page}
// to dst, byte-for-byte what proto.Marshal would produce (proto3 omits a
// zero page_id and an empty page). It allocates only to grow dst, which
// keeps the server's page-streaming loop free of per-page garbage.
func AppendPage(dst []byte, pageID uint64, page []byte) []byte {
	return append(AppendPageHeader(dst, pageID, len(page)), page...)
}

// AppendPageHeader appends everything of AppendPage's frame except the page
// bytes themselves, so a writer can send those without copying them first.
func AppendPageHeader(dst []byte, pageID uint64, pageLen int) []byte {
	size := 0
	if pageID != 0 {
		size += 1 + protowire.SizeVarint(pageID)
	}
	if pageLen > 0 {
		size += 1 + protowire.SizeBytes(pageLen)
	}
	dst = protowire.AppendVarint(dst, uint64(size))
	if pageID != 0 {
		dst = append(dst, tagPageID)
		dst = protowire.AppendVarint(dst, pageID)
	}
	if pageLen > 0 {
		dst = append(dst, tagPage)
		dst = protowire.AppendVarint(dst, uint64(pageLen))
	}
	return dst
}

// FrameReader reads length-delimited protobuf messages from a stream.
type FrameReader struct {
	r     *bufio.Reader
	max   int
	buf   []byte // body of the current message, reused between calls
	nread int64
}

// NewFrameReader returns a buffered FrameReader over r that rejects
// messages longer than maxMessage bytes (DefaultMaxMessage if
// maxMessage <= 0).
func NewFrameReader(r io.Reader, maxMessage int) *FrameReader {
	if maxMessage <= 0 {
		maxMessage = DefaultMaxMessage
	}
	// 64 KiB holds a dozen pages, so most page reads are a copy out of
	// the buffer rather than a syscall.
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), max: maxMessage}
}

// BytesRead returns the number of bytes consumed from the stream so far,
// length prefixes included.
func (f *FrameReader) BytesRead() int64 { return f.nread }

// Next reads the next message into m (which is reset first). It returns
// io.EOF at a clean end of stream between messages and
// io.ErrUnexpectedEOF if the stream ends inside a message.
func (f *FrameReader) Next(m proto.Message) error {
	b, err := f.frame()
	if err != nil {
		return err
	}
	// proto.Unmarshal copies bytes fields, so reusing f.buf is safe.
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return nil
}

// NextPage reads the next message as a PageData without going through
// protobuf reflection. The returned page aliases an internal buffer and is
// valid only until the next call on f. Unknown fields are skipped, as
// proto.Unmarshal would; the page length is not checked here.
func (f *FrameReader) NextPage() (pageID uint64, page []byte, err error) {
	b, err := f.frame()
	if err != nil {
		return 0, nil, err
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, fmt.Errorf("%w: PageData: %v", ErrBadFrame, protowire.ParseError(n))
		}
		if !num.IsValid() {
			return 0, nil, fmt.Errorf("%w: PageData: invalid field number %d", ErrBadFrame, num)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			pageID, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.BytesType:
			page, n = protowire.ConsumeBytes(b)
		default:
			// Like protobuf-go, a known field with the wrong wire type is
			// treated as an unknown field.
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return 0, nil, fmt.Errorf("%w: PageData field %d: %v", ErrBadFrame, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return pageID, page, nil
}

// frame reads one length prefix and message body; the body is valid until
// the next call.
func (f *FrameReader) frame() ([]byte, error) {
	size, err := f.readVarint()
	if err != nil {
		return nil, err
	}
	if size > uint64(f.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, f.max)
	}
	return f.readBody(int(size))
}

// readVarint reads a length prefix byte by byte so that EOF before its
// first byte can be told apart from EOF inside it.
func (f *FrameReader) readVarint() (uint64, error) {
	var v uint64
	for i := 0; ; i++ {
		c, err := f.r.ReadByte()
		if err != nil {
			if err == io.EOF && i > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		f.nread++
		if i == 9 && c > 1 {
			return 0, fmt.Errorf("%w: length prefix overflows 64 bits", ErrBadFrame)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
}

// readBody reads exactly n bytes into f.buf. The buffer grows with the
// data actually received rather than to n up front, so a lying length
// prefix on a short stream cannot force a large allocation.
func (f *FrameReader) readBody(n int) ([]byte, error) {
	b := f.buf[:0]
	for len(b) < n {
		chunk := min(n-len(b), max(len(b), 64<<10))
		b = slices.Grow(b, chunk)
		got, err := io.ReadFull(f.r, b[len(b):len(b)+chunk])
		b = b[:len(b)+got]
		f.nread += int64(got)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			f.buf = b
			return nil, err
		}
	}
	f.buf = b
	return b, nil
}
