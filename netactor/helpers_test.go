package netactor

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock never sleeps: After fires at once and advances Now by the
// requested duration. It records every requested wait.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	block bool // After never fires
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if !c.block {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return ch
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// spawn starts a system with a network actor; the system stops at cleanup.
func spawn(t *testing.T, cfg Config) Handle {
	t.Helper()
	sys := actors.NewSystem(actors.Options{Name: t.Name(), OnPanic: func(p *actors.PanicError) { t.Errorf("panic: %v", p) }})
	pid, err := Spawn(sys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Stop)
	return pid
}

// byteCounts measures request and response body bytes on the server side.
type byteCounts struct{ in, out atomic.Int64 }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type countingResponse struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingResponse) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w countingResponse) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// realServer runs our sync server in-process on loopback, behind a byte
// counter.
func realServer(t *testing.T, cfg server.Config) (string, *byteCounts) {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	counts := &byteCounts{}
	h := s.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = countingBody{r.Body, &counts.in}
		h.ServeHTTP(countingResponse{w, &counts.out}, r)
	}))
	t.Cleanup(func() {
		s.BeginShutdown()
		hs.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return hs.URL, counts
}

// faultServer is an httptest server with a handler under test control.
func faultServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}

// pullResult collects what a pull handed to its callbacks.
type pullResult struct {
	info    messages.PullInfo
	headers []*syncpb.PullUpdatesRespProtoBody
	pages   map[uint32][]byte
	order   []uint32
}

func pull(ctx context.Context, h Handle, req *syncpb.PullUpdatesReqProtoBody) (*pullResult, error) {
	res := &pullResult{pages: map[uint32][]byte{}}
	info, err := h.PullUpdates(ctx, &messages.PullUpdates{
		Req: req,
		OnHeader: func(h *syncpb.PullUpdatesRespProtoBody) error {
			res.headers = append(res.headers, h)
			return nil
		},
		OnPage: func(pgno uint32, data []byte) error {
			res.pages[pgno] = append([]byte(nil), data...)
			res.order = append(res.order, pgno)
			return nil
		},
	})
	res.info = info
	return res, err
}

func mustPull(t *testing.T, h Handle, req *syncpb.PullUpdatesReqProtoBody) *pullResult {
	t.Helper()
	res, err := pull(context.Background(), h, req)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if len(res.headers) != 1 {
		t.Fatalf("OnHeader called %d times", len(res.headers))
	}
	return res
}

// batch is a Hrana pipeline of one unconditional batch.
func batch(stmts ...string) hrana.PipelineReqBody {
	steps := make([]hrana.BatchStep, len(stmts))
	for i := range stmts {
		steps[i] = hrana.BatchStep{Stmt: hrana.Stmt{SQL: &stmts[i]}}
	}
	return hrana.PipelineReqBody{Requests: []hrana.StreamRequest{{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: steps}}}}
}

func exec(t *testing.T, h Handle, stmts ...string) *hrana.BatchResult {
	t.Helper()
	resp, err := h.Pipeline(context.Background(), &messages.Pipeline{Body: batch(stmts...)})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Type != hrana.ResultOK {
		t.Fatalf("pipeline results: %+v", resp.Results)
	}
	br := resp.Results[0].Response.BatchResult
	for i, e := range br.StepErrors {
		if e != nil {
			t.Fatalf("step %d (%s): %v", i, stmts[i], e)
		}
	}
	return br
}

// writeStream writes a valid pull-updates response: a raw header and pages
// 1..n (page i filled with byte i).
func writeStream(w http.ResponseWriter, rev string, n int) {
	w.Header().Set("Content-Type", "application/protobuf")
	w.WriteHeader(http.StatusOK)
	wire.WriteDelimited(w, &syncpb.PullUpdatesRespProtoBody{
		ServerRevision: rev,
		DbSize:         uint64(n),
		RawEncoding:    &syncpb.PageSetRawEncodingProto{},
	})
	for i := 1; i <= n; i++ {
		w.Write(wire.AppendPage(nil, uint64(i-1), testPage(byte(i))))
	}
}

func testPage(b byte) []byte {
	p := make([]byte, wire.PageSize)
	for i := range p {
		p[i] = b
	}
	return p
}

// abort ends the response abruptly: the client sees a truncated body.
func abort(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}
