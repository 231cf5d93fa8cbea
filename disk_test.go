package syncdb_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/server"
)

// serverWith starts a server with cfg (a temporary data directory and a
// silent logger unless given) and returns its URL.
func serverWith(t testing.TB, cfg server.Config) string {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.BeginShutdown(); hs.Close(); srv.Close() })
	return hs.URL
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// Case 11: local writes do not leave the replica at twice their size.
// After push, pull and checkpoint the local file is within 10% of the
// server's database (plus its WAL), no downloaded -changes file stays (the
// last pull's journal does, small), and the change log's space is reused
// by later writes.
func TestDiskSpace(t *testing.T) {
	data := t.TempDir()
	url := serverWith(t, server.Config{DataDir: data})
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	db := open(t, syncdb.Config{Path: path, URL: url})
	mb, unit := 8, 64 // MB written, then rows of 16 KiB per MB
	if raceEnabled {
		mb, unit = 4, 16 // the race detector slows SQLite tenfold: 256 KiB "MB"
	}
	mustExec(t, db, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body BLOB)")
	write := func(n int) {
		for i := 0; i < n; i++ {
			// 1 MB per transaction, as 64 rows of 16 KiB.
			mustExec(t, db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?) INSERT INTO notes(body) SELECT randomblob(16384) FROM n", unit)
		}
	}
	write(mb)
	local := func() int64 { return fileSize(t, path) + fileSize(t, path+"-wal") }
	t.Logf("after %d units (1 MB; 256 KiB under -race) of writes: db %d, wal %d, revert %d", mb, fileSize(t, path), fileSize(t, path+"-wal"), fileSize(t, path+"-revert"))
	if err := db.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	srvDB := filepath.Join(data, "default", "db.sqlite")
	server := fileSize(t, srvDB) + fileSize(t, srvDB+"-wal")
	t.Logf("after push, pull, checkpoint: local db %d, wal %d, revert %d; server db+wal %d", fileSize(t, path), fileSize(t, path+"-wal"), fileSize(t, path+"-revert"), server)
	if l := local(); float64(l) > 1.1*float64(server) {
		t.Errorf("local db+wal %d bytes, more than 110%% of the server's %d", l, server)
	}
	for _, suffix := range []string{"-changes", "-revert.next", "-bootstrap"} {
		if _, err := os.Stat(path + suffix); err == nil {
			t.Errorf("%s left after the commands ended", path+suffix)
		}
	}
	// The last pull's journal stays, to be rewritten in place by the
	// next: it holds the change log as of that pull, empty after a push.
	if n := fileSize(t, path+"-syncdb-replay"); n > 4096 {
		t.Errorf("the journal left by the last pull has %d bytes", n)
	}
	// Pushed changes leave the change log, whose pages later writes reuse:
	// writing and pushing the same amount again grows the file by the new
	// rows only, not rows + log.
	cycle := func() int64 {
		before := fileSize(t, path)
		write(2)
		if err := db.Push(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		return fileSize(t, path) - before
	}
	first, second := cycle(), cycle()
	t.Logf("2 units written and pushed, twice: the file grew by %d, then %d bytes", first, second)
	if second > int64(2*unit)*16384*3/2 { // 2 "MB" of rows, plus half for the B-tree
		t.Errorf("2 units of new rows grew the file by %d bytes: the change log's space is not reused", second)
	}
	for _, suffix := range []string{"-changes", "-revert.next", "-bootstrap"} {
		if _, err := os.Stat(path + suffix); err == nil {
			t.Errorf("%s left after the commands ended", path+suffix)
		}
	}
	// The last pull's journal stays, to be rewritten in place by the
	// next: it holds the change log as of that pull, empty after a push.
	if n := fileSize(t, path+"-syncdb-replay"); n > 4096 {
		t.Errorf("the journal left by the last pull has %d bytes", n)
	}
}

// cutTransport cuts the body of every /pull-updates answer after 64 KiB
// while armed, as a server that dies mid-stream does.
type cutTransport struct{ armed atomic.Bool }

type cutBody struct {
	io.ReadCloser
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= n
	return n, err
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && c.armed.Load() && strings.HasSuffix(r.URL.Path, "/pull-updates") {
		resp.Body = &cutBody{ReadCloser: resp.Body, left: 64 << 10}
	}
	return resp, err
}

// Case 11: a pull that fails mid-download leaves no -changes file (the
// downloaded pages) behind; the next pull starts afresh and works.
func TestFailedPullLeavesNoChangesFile(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	cut := &cutTransport{}
	path := filepath.Join(dir, "p.db")
	p := open(t, syncdb.Config{Path: path, URL: url, HTTPClient: &http.Client{Transport: cut}, MaxRetryTime: time.Second})
	// Written on the server, not pushed: a push of 500 rows would take most
	// of the test's time under -race.
	serverExec(t, url, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500) INSERT INTO t SELECT i, randomblob(2000) FROM n")
	cut.armed.Store(true)
	if _, err := p.Pull(ctx); err == nil {
		t.Fatal("a pull whose download was cut succeeded")
	}
	for _, suffix := range []string{"-changes", "-syncdb-replay", "-revert.next"} {
		if _, err := os.Stat(path + suffix); err == nil {
			t.Errorf("%s left after a failed pull", path+suffix)
		}
	}
	cut.armed.Store(false)
	if _, err := p.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, p, "SELECT count(*) FROM t"); got != "500" {
		t.Fatalf("after the next pull: %q rows", got)
	}
}
