package server

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/internal/zstdchunks"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// historySnapshot pulls every page of revision rev from the history (a
// pinned, zstd pull never reads the database itself).
func historySnapshot(t *testing.T, ts *testServer, rev string, size uint64) *pulled {
	t.Helper()
	ids := make([]uint32, size)
	for i := range ids {
		ids[i] = uint32(i)
	}
	return ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{
		ServerRevision: rev, ServerPagesSelector: selector(t, ids...),
		Encoding: syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD,
	})
}

func samePages(t *testing.T, what string, got, want *pulled) {
	t.Helper()
	if got.hdr.ServerRevision != want.hdr.ServerRevision || got.hdr.DbSize != want.hdr.DbSize || len(got.pages) != len(want.pages) {
		t.Fatalf("%s: revision %s, %d pages of %d; history: %s, %d pages of %d", what,
			got.hdr.ServerRevision, len(got.pages), got.hdr.DbSize, want.hdr.ServerRevision, len(want.pages), want.hdr.DbSize)
	}
	for pg, data := range want.pages {
		if !bytes.Equal(got.pages[pg], data) {
			t.Fatalf("%s: page %d differs from the history's", what, pg)
		}
	}
}

// A bootstrap reads the database file and the WAL directly: its pages are
// the revision's, whether they are in the database file, in the WAL over an
// older image in the file, or past the file's end.
func TestBootstrapReadsFileAndWAL(t *testing.T) {
	ts := newTestServer(t, Config{SnapshotCacheMinBytes: -1, MaintenanceInterval: -1})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 3000)
	if err := ts.Maintain(context.Background()); err != nil { // into the database file
		t.Fatal(err)
	}
	ts.exec(t, "", "UPDATE t SET v = 'changed ' || v WHERE id <= 500", "DELETE FROM t WHERE id BETWEEN 2000 AND 2500")
	fill(t, ts, "", 3001, 4000) // the database grows past the file's end
	ts.exec(t, "", "UPDATE t SET v = 'again' WHERE id % 7 = 0")
	live := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	samePages(t, "bootstrap", live, historySnapshot(t, ts, live.hdr.ServerRevision, live.hdr.DbSize))
}

// fillPages inserts rows from id from to id to of about a page each, of
// random (incompressible) bytes.
func fillPages(t *testing.T, ts *testServer, from, to int) {
	t.Helper()
	ts.exec(t, "", fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d)
		INSERT INTO t(id, v) SELECT i, fast_randomblob(3500) FROM n`, from, to))
}

// Commits made while a bootstrap streams do not reach it, nor does a
// checkpoint that runs meanwhile: it sends its revision's pages, raw or as
// a zstd stream.
func TestBootstrapIsASnapshot(t *testing.T) {
	// The server reads pages ahead of a stalled socket (small here: see
	// newStallingTestServer): 256 pages at a time, into a 256 KiB buffer,
	// or for zstd a 1 MiB chunk being filled, inflight() more and one being
	// written. The database is a few MiB more, so that the stall comes
	// well before the table's last pages, which the test then changes.
	for _, tc := range []struct {
		accept string
		mb     int
	}{{"application/protobuf", 4}, {"zstd", zstdchunks.ChunkSize>>20*(runtime.GOMAXPROCS(0)+1) + 6}} {
		t.Run(tc.accept, func(t *testing.T) {
			ts := newStallingTestServer(t, Config{SnapshotCacheMinBytes: -1, MaintenanceInterval: -1, StatementTimeout: time.Hour})
			ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
			n := tc.mb << 20 / history.PageSize // rows of a page each
			fillPages(t, ts, 1, n)
			resp := ts.postPull(t, tc.accept, &syncpb.PullUpdatesReqProtoBody{})
			defer resp.Body.Close()
			// Nothing is read before the writes: a zstd reader would read
			// chunks ahead. Once the header is out, the revision is taken.
			testutil.Eventually(t, time.Minute, "the bootstrap streams", func() bool { return ts.metricValue(t, "syncdb_pull_streams") == 1 })
			// The stream is stalled on the socket: now change the pages it
			// has yet to send (the table's last rows) and some it has sent.
			ts.exec(t, "", fmt.Sprintf("UPDATE t SET v = 'late' WHERE id > %d OR id < 100", n-n/10))
			fillPages(t, ts, n+1, n+250)
			// A checkpoint now cannot restart the WAL under the bootstrap:
			// it is left due, and the bootstrap reads the rest of its
			// revision from the history.
			if err := ts.Maintain(context.Background()); err != nil {
				t.Fatal(err)
			}
			d, err := ts.database(context.Background(), "default", false)
			if err != nil {
				t.Fatal(err)
			}
			if !d.ckptDue.Load() {
				t.Fatal("the bootstrap had read its pages before the writes: the test shows nothing")
			}
			var stream io.Reader = resp.Body
			if tc.accept == "zstd" {
				if enc := resp.Header.Get("Content-Encoding"); enc != "zstd" {
					t.Fatalf("Content-Encoding %q", enc)
				}
				zr := zstdchunks.NewReader(resp.Body)
				defer zr.Close()
				stream = zr
			}
			fr := wire.NewFrameReader(stream, 0)
			live := &pulled{hdr: &syncpb.PullUpdatesRespProtoBody{}, pages: map[uint32][]byte{}}
			if err := fr.Next(live.hdr); err != nil {
				t.Fatal(err)
			}
			readPages(t, fr, live)
			samePages(t, "bootstrap during writes", live, historySnapshot(t, ts, live.hdr.ServerRevision, live.hdr.DbSize))
			// The current revision; one page of it is enough (a whole
			// bootstrap through the small buffers took seconds).
			now := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerPagesSelector: selector(t, 0)})
			if now.hdr.ServerRevision == live.hdr.ServerRevision {
				t.Fatal("the writes made no new revision")
			}
		})
	}
}

// A checkpoint that copied the whole WAL into the database file but could
// not restart the WAL (a reader held on for longer than the busy timeout)
// leaves it for the next write to restart, which overwrites its frames
// from the first. A bootstrap of that revision, streaming while that
// write happens, must not read them: it reads the database file, which
// has every page.
func TestBootstrapAfterABusyCheckpoint(t *testing.T) {
	ts := newStallingTestServer(t, Config{SnapshotCacheMinBytes: -1, MaintenanceInterval: -1, IOTimeout: 5 * time.Minute})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	fillPages(t, ts, 1, 1024) // 4 MiB: the stall (see TestBootstrapIsASnapshot) comes in the first MiB or so
	rd, err := sql.Open("sqlite", "file:"+filepath.Join(ts.dir, "default", mainFile)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	tx, err := rd.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Copies every frame, then waits busy_timeout for the reader (10 s;
	// 0.5 s here, the test's time otherwise) and leaves the WAL as it is.
	d, err := ts.database(context.Background(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.admin.ExecContext(context.Background(), "PRAGMA busy_timeout = 500"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()

	resp := ts.postPull(t, "application/protobuf", &syncpb.PullUpdatesReqProtoBody{})
	defer resp.Body.Close()
	fr := wire.NewFrameReader(resp.Body, 0)
	live := &pulled{hdr: &syncpb.PullUpdatesRespProtoBody{}, pages: map[uint32][]byte{}}
	if err := fr.Next(live.hdr); err != nil {
		t.Fatal(err)
	}
	// The bootstrap is stalled on the socket; this write restarts the WAL
	// and rewrites every page, in frames from the first on.
	ts.exec(t, "", "UPDATE t SET v = v || v")
	readPages(t, fr, live)
	samePages(t, "bootstrap across a WAL restart", live, historySnapshot(t, ts, live.hdr.ServerRevision, live.hdr.DbSize))
}
