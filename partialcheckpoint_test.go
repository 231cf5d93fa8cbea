package syncdb_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/testhooks"
	"github.com/syncdb/syncdb/server"
)

// partialPair serves a table t of 3000 rows of about 600 bytes (some 450
// pages) and opens w, a full replica, and p, a partial one holding only a
// 4-page prefix, one page per fetch, with a 200 ms writer busy timeout (a
// checkpoint a test's reader holds back on purpose gives up soon) and fs
// for its own files.
func partialPair(t *testing.T, fs fsx.FS) (w *syncdb.DB, popen func() *syncdb.DB, url string) {
	t.Helper()
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.BeginShutdown(); hs.Close(); srv.Close() })
	serverExec(t, hs.URL, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	serverExec(t, hs.URL, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO t SELECT i, printf('%d-%s', i, hex(randomblob(300))) FROM n`)
	dir := t.TempDir()
	w = open(t, syncdb.Config{Path: filepath.Join(dir, "w.db"), URL: hs.URL})
	cfg := syncdb.Config{Path: filepath.Join(dir, "p.db"), URL: hs.URL, Partial: &syncdb.PartialSync{PrefixBytes: 4 * 4096, SegmentSize: 4096}}
	popen = func() *syncdb.DB {
		t.Helper()
		ctx := testhooks.With(context.Background(), testhooks.Hooks{FS: fs, WriterBusyTimeout: 200 * time.Millisecond,
			OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
		db, err := syncdb.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	return w, popen, hs.URL
}

// A partial replica's checkpoint held back by a read-pool reader whose
// snapshot predates a pull copies none of the pull's frames, but its
// MarkPresent recorded their pages, which the replica had never fetched
// (a pull writes them into the WAL, not the file). The reader, going on,
// reads those pages from the file, as of its snapshot: they must still be
// missing, so that it fetches them (the bootstrap's images), not read
// their holes as data. MarkPresent records them without making them
// present; SQLite's copy does that (WillWrite).
func TestPartialCheckpointHeldBackByReader(t *testing.T) {
	ctx := context.Background()
	w, popen, _ := partialPair(t, fsx.OS)
	p := popen()
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	rs, err := p.Query(ctx, "SELECT id, v FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if !rs.Next() {
		t.Fatalf("the reader has no row: %v", rs.Err())
	}
	mustExec(t, w, `UPDATE t SET v = 'changed ' || v WHERE id % 50 = 0`)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if changed, err := p.Pull(ctx); err != nil || !changed {
		t.Fatalf("pull: %v %v", changed, err)
	}
	if err := p.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	n := 1
	for rs.Next() {
		var id int
		var v string
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		n++
		if id != n || strings.HasPrefix(v, "changed") {
			t.Fatalf("the reader's row %d is %d %.20q: want %d, as before the pull", n, id, v, n)
		}
	}
	if err := rs.Err(); err != nil || n != 3000 {
		t.Fatalf("the reader, whose snapshot predates the pull, read %d rows: %v; want 3000", n, err)
	}
	rs.Close()
	if got := rows(t, p, "SELECT count(*) FROM t WHERE v LIKE 'changed %'"); got != "60" {
		t.Fatalf("after the reader, %s rows changed, want 60", got)
	}
	integrity(t, p)
}

// A checkpoint whose MarkPresent cannot record the pages (the presence
// log's write fails) fails, and the next one must record them: it copies
// them into the file, and a page the log lacks is missing after a reopen,
// where a read fetches the server's image over the local one. Here the
// failing checkpoint is the one after a pull (a partial replica's, which
// only logs its failure), the pages are those the pull brought into the
// WAL, never fetched, and a local update on top, not pushed, is what the
// next checkpoint copies.
func TestPartialCheckpointMarkPresentFails(t *testing.T) {
	ctx := context.Background()
	fs := fsx.NewCrashFS()
	w, popen, _ := partialPair(t, fs)
	p := popen()
	mustExec(t, w, `UPDATE t SET v = 'remote' WHERE id % 50 = 0`)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	errEIO := errors.New("injected EIO")
	var failed atomic.Int32
	fs.SetFault(func(op, path string) error {
		if op == "write" && strings.HasSuffix(path, "-present") {
			failed.Add(1)
			return errEIO
		}
		return nil
	})
	changed, err := p.Pull(ctx)
	fs.SetFault(nil)
	if err != nil || !changed || failed.Load() == 0 {
		t.Fatalf("pull with the presence log failing: %v %v, %d failed appends; want the pull applied, its checkpoint failed", changed, err, failed.Load())
	}
	if got := rows(t, p, "SELECT count(*), min(v), max(v) FROM t WHERE id % 50 = 0"); got != "60|remote|remote" {
		t.Fatalf("after the pull: %s, want 60|remote|remote", got)
	}
	mustExec(t, p, `UPDATE t SET v = 'local' WHERE id % 50 = 0`)
	if err := p.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = popen()
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	if got := rows(t, p, "SELECT count(*), min(v), max(v) FROM t WHERE id % 50 = 0"); got != "60|local|local" {
		t.Fatalf("after the reopen the locally updated rows read %s, want 60|local|local", got)
	}
	integrity(t, p)
}
