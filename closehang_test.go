package syncdb_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/syncdb/syncdb"
)

// Proxy modes: how stallProxy treats the requests it stalls.
const (
	forward = iota // pass everything through
	silent         // read the request, never answer
	partial        // forward it, answer the headers and half the body, then stall
	watch          // announce it, then pass it through (a long poll waits there)
)

// stallProxy sits between a replica and a healthy server. Requests whose
// body contains match (all, if empty) are stalled as mode says; the others
// pass through. Each stalled (or watched) request is announced on stalled. A stalled
// handler waits until its client hangs up, or the test ends.
type stallProxy struct {
	t       *testing.T
	backend *url.URL
	fwd     *httputil.ReverseProxy
	client  *http.Client // the partial mode's, to the backend
	mode    atomic.Int32
	mu      sync.Mutex
	match   string
	stalled chan string
	release chan struct{}
	URL     string
}

func newStallProxy(t *testing.T, backend string) *stallProxy {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	p := &stallProxy{t: t, backend: u, fwd: httputil.NewSingleHostReverseProxy(u), client: &http.Client{Transport: tr},
		stalled: make(chan string, 16), release: make(chan struct{})}
	p.fwd.Transport = tr
	hs := httptest.NewServer(p)
	t.Cleanup(func() {
		close(p.release)
		hs.Close()
		tr.CloseIdleConnections()
	})
	p.URL = hs.URL
	return p
}

func (p *stallProxy) set(mode int, match string) {
	p.mu.Lock()
	p.match = match
	p.mu.Unlock()
	p.mode.Store(int32(mode))
}

func (p *stallProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	p.mu.Lock()
	match := p.match
	p.mu.Unlock()
	mode := int(p.mode.Load())
	if mode == watch {
		p.stalled <- r.URL.Path
	}
	if mode == forward || mode == watch || !bytes.Contains(decoded(p.t, r.Header, body), []byte(match)) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.fwd.ServeHTTP(w, r)
		return
	}
	if mode == partial {
		req, err := http.NewRequest(r.Method, p.backend.String()+r.URL.Path, bytes.NewReader(body))
		if err != nil {
			p.t.Error(err)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := p.client.Do(req)
		if err != nil {
			p.t.Error(err)
			return
		}
		full, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			p.t.Error(err)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(full)))
		w.WriteHeader(resp.StatusCode)
		w.Write(full[:len(full)/2])
		w.(http.Flusher).Flush()
	}
	p.stalled <- r.URL.Path
	select {
	case <-r.Context().Done():
	case <-p.release:
	}
}

// closeWithin closes db and fails the test, with every goroutine's stack,
// if that takes longer than bound.
func closeWithin(t *testing.T, db *syncdb.DB, bound time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		took := time.Since(start)
		if took > bound {
			t.Errorf("Close took %v (bound %v)", took, bound)
		}
		t.Logf("Close took %v", took)
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(bound + 10*time.Second):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("Close still waiting after %v:\n%s", bound+10*time.Second, buf)
	}
}

// Close while a Pull, Push or Sync waits on a server that accepted the
// request and does not answer (silent), or answered the headers and half
// the body (partial), returns at once; the call returns ErrClosed; no
// goroutine stays behind; nothing is lost or applied twice: reopened
// against the server, healthy again, the replica has its rows and syncs.
// A partial push stalls the batch itself (the server committed it, its
// answer is lost), the others the first request.
func TestCloseDuringStalledRequest(t *testing.T) {
	ops := map[string]func(ctx context.Context, db *syncdb.DB) error{
		"Pull": func(ctx context.Context, db *syncdb.DB) error { _, err := db.Pull(ctx); return err },
		"Push": func(ctx context.Context, db *syncdb.DB) error { return db.Push(ctx) },
		"Sync": func(ctx context.Context, db *syncdb.DB) error { return db.Sync(ctx) },
	}
	modes := map[string]int{"silent": silent, "partial": partial}
	for mname, mode := range modes {
		for oname, op := range ops {
			for _, how := range []string{"Close", "cancel"} {
				t.Run(mname+"/"+oname+"/"+how, func(t *testing.T) {
					match := ""
					if mode == partial && oname == "Push" {
						match = "a-local"
					}
					stalledCall(t, mode, match, op, how == "cancel")
				})
			}
		}
	}
}

func stalledCall(t *testing.T, mode int, match string, op func(context.Context, *syncdb.DB) error, cancel bool) {
	ctx := context.Background()
	backend := newServer(t)
	proxy := newStallProxy(t, backend)
	dir := t.TempDir()
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: backend})
	mustExec(t, b, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, b, "INSERT INTO t VALUES(1, 'b-pushed')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: proxy.URL}
	a, err := syncdb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(2, 'a-pushed')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(3, 'a-local')")
	mustExec(t, b, "INSERT INTO t VALUES(4, 'b-new')") // for a's pull
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}

	ignore := goleak.IgnoreCurrent()
	proxy.set(mode, match)
	callCtx, cancelCall := context.WithCancel(ctx)
	defer cancelCall()
	errc := make(chan error, 1)
	go func() { errc <- op(callCtx, a) }()
	select {
	case <-proxy.stalled:
	case err := <-errc:
		t.Fatalf("the call returned before the server stalled: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the stalling server")
	}
	time.Sleep(20 * time.Millisecond) // the client is waiting for the answer
	want := syncdb.ErrClosed
	start := time.Now()
	if cancel {
		want = context.Canceled
		cancelCall()
	} else {
		closeWithin(t, a, 3*time.Second)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, want) {
			t.Errorf("the stalled call: %v, want %v", err, want)
		}
		t.Logf("the stalled call: %v", err)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("the stalled call returned %v after the %s", took, map[bool]string{true: "cancel", false: "Close"}[cancel])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled call did not return")
	}
	if cancel {
		closeWithin(t, a, 3*time.Second)
	}
	proxy.set(forward, "")
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("github.com/syncdb/syncdb_test.(*stallProxy).ServeHTTP"))
	if _, err := os.Stat(cfg.Path + "-changes"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a pull's download is left behind: %v", err)
	}
	if match != "" {
		// The server committed the stalled batch: a's reopened push must
		// find it there and not send it again.
		if _, err := b.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, b, "SELECT v FROM t WHERE id = 3"); got != "a-local" {
			t.Fatalf("the stalled batch did not reach the server: %q", got)
		}
	}

	a = open(t, cfg)
	if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|b-pushed\n2|a-pushed\n3|a-local" {
		t.Errorf("reopened after the stalled call: %q", got)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatalf("sync after reopening: %v", err)
	}
	all := "1|b-pushed\n2|a-pushed\n3|a-local\n4|b-new"
	if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != all {
		t.Errorf("a after its sync: %q", got)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != all {
		t.Errorf("b after a's sync: %q", got)
	}
	if strings.Contains(t.Name(), "Push") || strings.Contains(t.Name(), "Sync") {
		st, err := a.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.CDCOperations != 0 {
			t.Errorf("after the sync, %d changes wait to be pushed", st.CDCOperations)
		}
	}
}

// Close while a Pull waits in a long poll (the server has nothing new for
// it) returns at once, and the Pull returns ErrClosed.
func TestCloseDuringLongPoll(t *testing.T) {
	ctx := context.Background()
	proxy := newStallProxy(t, newServer(t))
	cfg := syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: proxy.URL, LongPollTimeout: time.Minute}
	a, err := syncdb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	mustExec(t, a, "INSERT INTO t VALUES(1)")
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ignore := goleak.IgnoreCurrent()
	proxy.set(watch, "")
	errc := make(chan error, 1)
	go func() { _, err := a.Pull(ctx); errc <- err }()
	select {
	case <-proxy.stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("the pull sent no request")
	}
	select {
	case err := <-errc:
		t.Fatalf("the pull did not wait in a long poll: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	closeWithin(t, a, 3*time.Second)
	select {
	case err := <-errc:
		if !errors.Is(err, syncdb.ErrClosed) {
			t.Errorf("the long-polling pull: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-polling pull did not return")
	}
	proxy.set(forward, "")
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("github.com/syncdb/syncdb_test.(*stallProxy).ServeHTTP"))
	a = open(t, cfg)
	mustExec(t, a, "INSERT INTO t VALUES(2)")
	if err := a.Sync(ctx); err != nil {
		t.Fatalf("sync after reopening: %v", err)
	}
	if got := rows(t, a, "SELECT id FROM t ORDER BY id"); got != "1\n2" {
		t.Errorf("reopened: %q", got)
	}
}

// decoded is body as the server reads it: a push's batch goes zstd-compressed
// to a server that takes it (netactor), so the proxy matches what it says,
// not its bytes.
func decoded(t *testing.T, h http.Header, body []byte) []byte {
	if h.Get("Content-Encoding") != "zstd" {
		return body
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Error(err)
		return body
	}
	defer dec.Close()
	out, err := dec.DecodeAll(body, nil)
	if err != nil {
		t.Errorf("stall proxy: a zstd request body that does not decode: %v", err)
		return body
	}
	return out
}
