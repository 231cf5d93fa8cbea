package syncdb_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/netactor"
)

// failingProxy forwards requests to a real server, but answers the next
// `left` requests to one endpoint in the way `mode` says: "503" (the
// server never sees it), "400" (the same), or "cut" (the server answers,
// and the proxy drops the connection one byte before the end).
type failingProxy struct {
	target string

	mu       sync.Mutex
	endpoint string
	mode     string
	left     int
	seen     int // requests to endpoint since arm
}

func (p *failingProxy) arm(endpoint, mode string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoint, p.mode, p.left, p.seen = endpoint, mode, n, 0
}

func (p *failingProxy) requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

func (p *failingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode := ""
	p.mu.Lock()
	if p.endpoint != "" && strings.HasSuffix(r.URL.Path, p.endpoint) {
		p.seen++
		if p.left > 0 {
			p.left--
			mode = p.mode
		}
	}
	p.mu.Unlock()
	switch mode {
	case "503", "400":
		io.Copy(io.Discard, r.Body)
		http.Error(w, "proxy says "+mode, map[string]int{"503": 503, "400": 400}[mode])
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.Path, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(resp.StatusCode)
	if mode == "cut" && len(body) > 1 {
		w.Write(body[:len(body)-1])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the client sees the stream end early
	}
	w.Write(body)
}

// countHandler counts log records with one message.
type countHandler struct {
	msg string
	n   *atomic.Int32
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// One retry policy on a real server on loopback: a pull whose stream is
// cut twice after its header is retried by the workflow (netactor does not
// send it again: the caller has seen part of it), a request answered 503
// twice is retried by netactor, both within the budget and succeeding at
// the third attempt; a 400 is not retried at all.
func TestRetryPolicyLoopback(t *testing.T) {
	const budget = 20 * time.Second
	ctx := context.Background()
	dir := t.TempDir()
	p := &failingProxy{target: newServer(t)}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	var retries atomic.Int32
	logger := slog.New(countHandler{msg: "retrying after a transient failure", n: &retries})

	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: hs.URL, MaxRetryTime: budget})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: hs.URL, MaxRetryTime: budget, Logger: logger})
	write := func(id int) {
		t.Helper()
		mustExec(t, a, "INSERT INTO t VALUES(?, randomblob(20000))", id)
		if err := a.Push(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Cut after the header, twice: the workflow's retry.
	write(1)
	p.arm(netactor.EndpointPull, "cut", 2)
	start := time.Now()
	if _, err := b.Pull(ctx); err != nil {
		t.Fatalf("pull cut twice: %v (%d requests, %d retries)", err, p.requests(), retries.Load())
	}
	took := time.Since(start)
	if n, r := p.requests(), retries.Load(); n != 3 || r != 2 || took > budget {
		t.Fatalf("pull cut twice: %d requests, %d workflow retries, %v (want 3, 2, within %v)", n, r, took, budget)
	}
	if got := rows(t, b, "SELECT count(*) FROM t"); got != "1" {
		t.Fatalf("rows after the pull: %s", got)
	}

	// 503 twice: netactor's retry of the request.
	write(2)
	retries.Store(0)
	p.arm(netactor.EndpointPull, "503", 2)
	if _, err := b.Pull(ctx); err != nil {
		t.Fatalf("pull after two 503: %v", err)
	}
	if n, r := p.requests(), retries.Load(); n != 3 || r != 0 {
		t.Fatalf("pull after two 503: %d requests, %d workflow retries (want 3, 0)", n, r)
	}
	if got := rows(t, b, "SELECT count(*) FROM t"); got != "2" {
		t.Fatalf("rows after the pull: %s", got)
	}

	// A permanent error: one request, at once.
	mustExec(t, b, "INSERT INTO t VALUES(3, 'b')")
	p.arm(netactor.EndpointPipeline, "400", 1000)
	start = time.Now()
	err := b.Push(ctx)
	var he *netactor.HTTPError
	if !errors.As(err, &he) || he.Status != 400 || p.requests() != 1 || retries.Load() != 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("push answered 400: %v after %d requests, %d workflow retries, %v", err, p.requests(), retries.Load(), time.Since(start))
	}
	p.arm("", "", 0)
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
}

// The live loop waits MaxBackoff after a failure that waiting does not fix
// (IsTransient false), and backs off from 200 ms after one it may fix.
func TestLiveWaitsLongAfterPermanentFailures(t *testing.T) {
	// Waits on timers (little CPU) and touches no process-wide state
	// (failpoints, hooks, environment): runs beside the other such tests.
	t.Parallel()
	const window = 2500 * time.Millisecond
	ctx := context.Background()
	dir := t.TempDir()
	p := &failingProxy{target: newServer(t)}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	setup := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: hs.URL})
	mustExec(t, setup, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	if err := setup.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := setup.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode     string
		min, max int64
	}{
		// 503: waits of 200, 400, 800 ms (±50 %) put a 3rd failure
		// within 1.05 s; 400: the 2nd comes after 4 s.
		{"503", 3, 100},
		{"400", 0, 1},
	} {
		p.arm(netactor.EndpointPull, c.mode, 1<<30)
		var errs atomic.Int64
		db, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: hs.URL, MaxRetryTime: -1, Live: &syncdb.LiveSync{
			PushDelay: 10 * time.Millisecond, PollTimeout: time.Second, MaxBackoff: 4 * time.Second,
			OnError: func(error) { errs.Add(1) },
		}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(window)
		n := errs.Load()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if n < c.min || n > c.max {
			t.Errorf("%s: %d failures reported in %v, want %d to %d", c.mode, n, window, c.min, c.max)
		}
	}
}
