package syncdb_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// cutOnePull cuts the body of the nth /pull-updates answer halfway, once,
// after running between (a server commit): the connection lost mid-chunk,
// with the database changed before the retry asks again.
type cutOnePull struct {
	nth     int32
	between func()
	pulls   atomic.Int32
	cut     atomic.Bool
}

func (c *cutOnePull) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/pull-updates") || c.pulls.Add(1) != c.nth {
		return resp, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	c.between()
	c.cut.Store(true)
	// Half the body: the header and some pages arrive, so the network
	// actor hands the cut to the bootstrap's own retry (it retries a pull
	// itself only before the header).
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data[:len(data)/2]), errReader{io.ErrUnexpectedEOF}))
	resp.ContentLength = -1
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// A chunked bootstrap whose third chunk is cut, the server's database
// changed meanwhile, starts over (syncactor's d.restart, the file created
// anew): the next attempt's first header pins the new revision. Continuing
// the old attempt instead (the file truncated, chunks 1-2 gone, the old
// revision and size) would make a replica of zero-filled pages stamped as
// complete. The replica holds the server's latest rows, passes
// integrity_check and opens again.
func TestChunkedBootstrapRetriedAfterCut(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	// Written on the server: about 50 pages, 13 chunks of 4 pages.
	serverExec(t, url, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) INSERT INTO t SELECT i, printf('%d:', i) || hex(zeroblob(1000)) FROM n")
	cut := &cutOnePull{nth: 3, between: func() {
		// Every row changed, the database grown: a stale revision or size
		// shows in the rows.
		serverExec(t, url, "UPDATE t SET v = 'new' || v")
		serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 101 UNION ALL SELECT i+1 FROM n WHERE i < 150) INSERT INTO t SELECT i, 'new' || printf('%d:', i) || hex(zeroblob(1000)) FROM n")
	}}
	path := filepath.Join(dir, "a.db")
	cfg := syncdb.Config{Path: path, URL: url, BootstrapChunkBytes: 16 << 10,
		HTTPClient: &http.Client{Transport: cut}, MaxRetryTime: 10 * time.Second}
	hctx := testhooks.With(ctx, testhooks.Hooks{OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
	a, err := syncdb.Open(hctx, cfg)
	if err != nil {
		t.Fatalf("open (bootstrap): %v", err)
	}
	closed := false // a is closed by hand, to be opened again
	t.Cleanup(func() {
		if !closed {
			a.Close()
		}
	})
	if !cut.cut.Load() {
		t.Fatalf("the bootstrap made %d pull-updates requests; the third was to be cut", cut.pulls.Load())
	}
	const q = "SELECT count(*), sum(v LIKE 'new%'), sum(length(v)), max(id) FROM t"
	// The server's latest, through a bootstrap of its own (no chunks, no
	// cut).
	want := rows(t, open(t, syncdb.Config{Path: filepath.Join(dir, "ref.db"), URL: url}), q)
	if !strings.HasPrefix(want, "150|150|") {
		t.Fatalf("the server's rows: %q, want 150 rows, all updated", want)
	}
	if got := rows(t, a, q); got != want {
		t.Fatalf("bootstrapped replica: %q, the server: %q", got, want)
	}
	integrity(t, a)
	closed = true
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.HTTPClient = nil
	b := open(t, cfg)
	integrity(t, b)
	if got := rows(t, b, q); got != want {
		t.Fatalf("reopened: %q, want %q", got, want)
	}
}
