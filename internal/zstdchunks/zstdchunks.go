// Package zstdchunks writes and reads a zstd stream made of independent
// chunks, so that both sides can use every core: the writer compresses
// chunks in parallel, and the reader decodes them in parallel.
//
// The stream is standard zstd (RFC 8878), readable by any decoder, and so
// fit for HTTP's "Content-Encoding: zstd". Each chunk is one zstd frame of
// at most MaxChunk decompressed bytes, preceded by a skippable frame (which
// standard decoders skip) that holds the compressed size of the frame after
// it: a reader learns where each frame ends without decoding it. A stream
// without these announcements (any other zstd stream) is decoded
// sequentially.
package zstdchunks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

const (
	// ChunkSize is how many bytes Writer compresses into each frame.
	ChunkSize = 1 << 20
	// MaxChunk bounds what Reader accepts as one frame's content.
	MaxChunk = 4 << 20
	// maxFrame bounds a frame's compressed size: incompressible content is
	// stored in raw blocks with a few bytes of headers.
	maxFrame = MaxChunk + MaxChunk/64

	// announceMagic is the skippable frame that announces a chunk: magic
	// (little endian), payload size 4, the next frame's compressed size.
	announceMagic = 0x184D2A5B
	announceSize  = 12

	// maxWindow bounds the window of a stream that is not chunked: what
	// encoders use by default at every level.
	maxWindow = 8 << 20
)

// ErrMalformed is wrapped by errors about a stream that breaks the format.
var ErrMalformed = errors.New("zstdchunks: malformed stream")

// One encoder and one decoder for the whole process: EncodeAll and
// DecodeAll may be called concurrently, and each runs at most GOMAXPROCS
// of them at once, which bounds the CPU that compression takes from the
// rest of the process however many streams are open.
var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		// Text with few repeats (hex, base64) still halves with entropy
		// coding alone, which SpeedFastest otherwise skips.
		zstd.WithAllLitEntropyCompression(true))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(MaxChunk))
)

// inflight is how many chunks a stream keeps being compressed or decoded
// ahead of the one it writes or reads.
func inflight() int { return runtime.GOMAXPROCS(0) + 1 }

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, ChunkSize); return &b }}

func getBuf() []byte { return (*chunkBufs.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if cap(b) >= ChunkSize && cap(b) <= maxFrame {
		chunkBufs.Put(&b)
	}
}

// job is one chunk, compressed or decoded by a goroutine of its own.
type job struct {
	in, out []byte
	err     error
	done    chan struct{}
}

// Writer compresses what is written to it into a chunked stream on w. It
// is not safe for concurrent use.
type Writer struct {
	w     io.Writer
	buf   []byte
	queue []*job
	err   error
}

// NewWriter returns a Writer to w. Close it to write the last chunk.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, buf: getBuf()} }

// Write buffers p, compressing each chunk it completes in the background.
// The error is that of an earlier write to the underlying writer.
func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.err != nil {
			return n, w.err
		}
		k := copy(w.buf[len(w.buf):ChunkSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p, n = p[k:], n+k
		if len(w.buf) == ChunkSize {
			w.submit()
		}
	}
	return n, w.err
}

func (w *Writer) submit() {
	j := &job{in: w.buf, done: make(chan struct{})}
	w.buf = getBuf()
	go func() {
		j.out = encoder.EncodeAll(j.in, getBuf())
		close(j.done)
	}()
	w.queue = append(w.queue, j)
	for len(w.queue) > inflight() {
		w.writeOldest()
	}
}

// writeOldest waits for the oldest chunk and writes it with its
// announcement.
func (w *Writer) writeOldest() {
	j := w.queue[0]
	w.queue = w.queue[1:]
	<-j.done
	if w.err == nil {
		var a [announceSize]byte
		binary.LittleEndian.PutUint32(a[0:], announceMagic)
		binary.LittleEndian.PutUint32(a[4:], 4)
		binary.LittleEndian.PutUint32(a[8:], uint32(len(j.out)))
		if _, err := w.w.Write(a[:]); err != nil {
			w.err = err
		} else if _, err := w.w.Write(j.out); err != nil {
			w.err = err
		}
	}
	putBuf(j.in)
	putBuf(j.out)
}

// Close compresses and writes what is left. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if len(w.buf) > 0 && w.err == nil {
		w.submit()
	}
	for len(w.queue) > 0 {
		w.writeOldest()
	}
	if w.buf != nil {
		putBuf(w.buf)
		w.buf = nil
	}
	return w.err
}

// Reader decompresses a zstd stream. Chunks announced as Writer announces
// them are decoded in parallel, ahead of the reads; any other stream is
// decoded sequentially. It is not safe for concurrent use.
type Reader struct {
	src    io.ReadCloser
	chunks chan *job // in stream order
	stop   chan struct{}
	exited chan struct{} // the producer has returned
	once   sync.Once

	cur *job
	off int
	err error
}

// NewReader returns a Reader of src. Close closes src.
func NewReader(src io.ReadCloser) *Reader {
	r := &Reader{src: src, chunks: make(chan *job, inflight()), stop: make(chan struct{}), exited: make(chan struct{})}
	go r.produce()
	return r
}

// produce reads the stream, starts a decode per chunk and queues the jobs
// in order. A failure is queued as a job with its error.
func (r *Reader) produce() {
	defer close(r.exited)
	defer close(r.chunks)
	br := bufio.NewReaderSize(r.src, 64<<10)
	head, err := br.Peek(4)
	if err == io.EOF && len(head) == 0 {
		return // an empty stream
	}
	if err != nil || binary.LittleEndian.Uint32(head) != announceMagic {
		r.sequential(br)
		return
	}
	for {
		var a [announceSize]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			if err == io.EOF {
				return
			}
			r.fail(fmt.Errorf("%w: chunk announcement: %w", ErrMalformed, unexpected(err)))
			return
		}
		size := binary.LittleEndian.Uint32(a[8:])
		if binary.LittleEndian.Uint32(a[0:]) != announceMagic || binary.LittleEndian.Uint32(a[4:]) != 4 || size > maxFrame {
			r.fail(fmt.Errorf("%w: bad chunk announcement %x", ErrMalformed, a))
			return
		}
		in := getBuf()
		if cap(in) < int(size) {
			in = make([]byte, 0, size)
		}
		in = in[:size]
		if _, err := io.ReadFull(br, in); err != nil {
			putBuf(in)
			r.fail(fmt.Errorf("chunk of %d bytes: %w", size, unexpected(err)))
			return
		}
		j := &job{in: in, done: make(chan struct{})}
		go func() {
			j.out, j.err = decoder.DecodeAll(j.in, getBuf())
			if j.err != nil {
				j.err = fmt.Errorf("%w: %w", ErrMalformed, j.err)
			}
			putBuf(j.in)
			j.in = nil
			close(j.done)
		}()
		if !r.queue(j) {
			<-j.done
			putBuf(j.out)
			return
		}
	}
}

// sequential decodes a stream that does not announce its chunks.
func (r *Reader) sequential(br io.Reader) {
	dec, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxWindow))
	if err != nil {
		r.fail(err)
		return
	}
	defer dec.Close()
	for {
		out := getBuf()
		var err error
		for len(out) < ChunkSize && err == nil {
			var n int
			n, err = dec.Read(out[len(out):ChunkSize])
			out = out[:len(out)+n]
		}
		if len(out) > 0 && !r.queue(&job{out: out, done: closed}) {
			return
		}
		if len(out) == 0 {
			putBuf(out)
		}
		switch {
		case err == io.EOF:
			return
		case err != nil:
			if errors.Is(err, zstd.ErrMagicMismatch) || errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
				err = fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			r.fail(err)
			return
		}
	}
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (r *Reader) queue(j *job) bool {
	select {
	case r.chunks <- j:
		return true
	case <-r.stop:
		return false
	}
}

func (r *Reader) fail(err error) { r.queue(&job{err: err, done: closed}) }

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Read returns decompressed bytes in order.
func (r *Reader) Read(p []byte) (int, error) {
	for r.err == nil {
		if r.cur == nil {
			j, ok := <-r.chunks
			if !ok {
				r.err = io.EOF
				break
			}
			<-j.done
			if j.err != nil {
				r.err = j.err
				break
			}
			r.cur, r.off = j, 0
		}
		n := copy(p, r.cur.out[r.off:])
		r.off += n
		if r.off == len(r.cur.out) {
			putBuf(r.cur.out)
			r.cur = nil
		}
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
	return 0, r.err
}

// Close stops reading, closes the source and waits for the decodes under
// way.
func (r *Reader) Close() error {
	var err error
	r.once.Do(func() {
		close(r.stop)
		err = r.src.Close()
		<-r.exited
		for j := range r.chunks {
			<-j.done
			putBuf(j.out)
		}
		if r.cur != nil {
			putBuf(r.cur.out)
			r.cur = nil
		}
		if r.err == nil {
			r.err = errors.New("zstdchunks: read after Close")
		}
	})
	return err
}
