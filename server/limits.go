package server

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Deadlines. A client that stops sending its request body or stops reading
// the response for Config.IOTimeout is dropped, and whatever its request
// held (a history read view, a read transaction on the database, memory)
// is released. The deadline is renewed at every read and every write, so a
// slow but steady client is served.

// deadlineReader reads a request body, renewing the connection's read
// deadline before each read.
type deadlineReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	d.rc.SetReadDeadline(time.Now().Add(d.timeout))
	return d.r.Read(p)
}

// deadlineWriter writes a response, renewing the connection's write
// deadline before each write.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration) *deadlineWriter {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

// writeChunk is how much of a response is written under one deadline.
const writeChunk = 256 << 10

// writeAll writes b in chunks, each under a fresh deadline.
func (d *deadlineWriter) writeAll(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		if _, err := d.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// copyFrom copies r (a file: the kernel copies it, sendfile) in chunks,
// each under a fresh deadline.
func (d *deadlineWriter) copyFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
		n, err := io.CopyN(d.w, r, 4<<20)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// memBudget bounds the memory that requests hold at once: request bodies
// and pipeline responses reserve what they use and give it back when done.
// A reservation beyond the budget fails at once rather than wait.
type memBudget struct {
	limit int64
	used  atomic.Int64
}

// reserve takes n bytes of the budget, or reports false if they are not
// there.
func (m *memBudget) reserve(n int64) bool {
	if m.used.Add(n) > m.limit {
		m.used.Add(-n)
		return false
	}
	return true
}

func (m *memBudget) release(n int64) { m.used.Add(-n) }
