package server

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire/syncpb"
)

// snapshotFiles lists the snapshot cache files of database name.
func snapshotFiles(t *testing.T, ts *testServer, name string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(ts.dir, name, snapshotPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// rawPull posts req and returns the response body as it came.
func (ts *testServer) rawPull(t *testing.T, req *syncpb.PullUpdatesReqProtoBody) []byte {
	t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	status, out := post(t, ts.dbURL("")+"/pull-updates", "application/protobuf", "", body)
	if status != http.StatusOK {
		t.Fatalf("pull: %d %s", status, out)
	}
	return out
}

// A repeated bootstrap of one revision is served from the snapshot cache
// (the second one writes it): the same bytes as the first, whose pages are
// the history's pages of that revision; a newer revision replaces it,
// maintenance deletes a stale one, and none survives the database closing
// or opening.
func TestSnapshotCache(t *testing.T) {
	dir := t.TempDir()
	// A leftover from an earlier process: deleted when the database opens.
	os.MkdirAll(filepath.Join(dir, "default"), 0o755)
	os.WriteFile(filepath.Join(dir, "default", snapshotPrefix+"1"), []byte("stale"), 0o644)
	ts := newTestServer(t, Config{DataDir: dir, SnapshotCacheMinBytes: 1, MaintenanceInterval: -1})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 2000)
	if f := snapshotFiles(t, ts, "default"); len(f) != 0 {
		t.Fatalf("snapshot files before any bootstrap: %v", f)
	}
	hits := func() float64 { return ts.metricValue(t, "syncdb_snapshot_cache_hits_total") }

	first := ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
	if f := snapshotFiles(t, ts, "default"); len(f) != 0 || hits() != 0 {
		t.Fatalf("after the first bootstrap: files %v, hits %v", f, hits())
	}
	if !bytes.Equal(first, ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})) {
		t.Fatal("the second bootstrap (written to the cache) differs from the first")
	}
	if f := snapshotFiles(t, ts, "default"); len(f) != 1 || hits() != 0 {
		t.Fatalf("after the second bootstrap: files %v, hits %v", f, hits())
	}
	second := ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
	if hits() != 1 || !bytes.Equal(first, second) {
		t.Fatalf("second bootstrap: hits %v, identical %v (%d and %d bytes)", hits(), bytes.Equal(first, second), len(first), len(second))
	}
	// The cached response is the revision's snapshot as the history has it
	// (a zstd pull reads the history, page by page).
	cached := decodePull(t, second)
	hist := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{Encoding: syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD})
	if cached.hdr.ServerRevision != hist.hdr.ServerRevision || cached.hdr.DbSize != hist.hdr.DbSize || len(cached.pages) != len(hist.pages) {
		t.Fatalf("cached %s/%d pages %d, history %s/%d pages %d", cached.hdr.ServerRevision, cached.hdr.DbSize, len(cached.pages),
			hist.hdr.ServerRevision, hist.hdr.DbSize, len(hist.pages))
	}
	for pg, data := range hist.pages {
		if !bytes.Equal(cached.pages[pg], data) {
			t.Fatalf("page %d differs between the cached snapshot and the history", pg)
		}
	}

	// A new revision: the next bootstraps stream it and replace the file.
	fill(t, ts, "", 2001, 2500)
	ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
	third := decodePull(t, ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{}))
	if hits() != 1 || third.hdr.ServerRevision == cached.hdr.ServerRevision {
		t.Fatalf("bootstrap after a write: hits %v, revision %s (cached %s)", hits(), third.hdr.ServerRevision, cached.hdr.ServerRevision)
	}
	im := image{}
	im.apply(third)
	if n, sum := countRows(t, openImage(t, im.write(t, third.hdr.DbSize))); n != 2500 || sum != 2500*2501/2 {
		t.Fatalf("bootstrap after a write: rows %d sum %d", n, sum)
	}
	if f := snapshotFiles(t, ts, "default"); len(f) != 1 {
		t.Fatalf("files after a newer bootstrap: %v", f)
	}
	ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
	if hits() != 2 {
		t.Fatalf("hits %v after a repeated bootstrap of the new revision", hits())
	}

	// Stale after another write: maintenance deletes it.
	fill(t, ts, "", 2501, 2510)
	if err := ts.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := snapshotFiles(t, ts, "default"); len(f) != 0 {
		t.Fatalf("stale snapshot kept by maintenance: %v", f)
	}
	ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
	ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
	if hits() != 2 || len(snapshotFiles(t, ts, "default")) != 1 {
		t.Fatalf("hits %v after a bootstrap of a new revision", hits())
	}
	ts.BeginShutdown()
	ts.http.Close()
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if f := snapshotFiles(t, ts, "default"); len(f) != 0 {
		t.Fatalf("snapshot files after close: %v", f)
	}
}

// Small databases are not cached by default, and a negative minimum turns
// the cache off.
func TestSnapshotCacheThreshold(t *testing.T) {
	for _, min := range []int64{0, -1} {
		ts := newTestServer(t, Config{SnapshotCacheMinBytes: min, MaintenanceInterval: -1})
		ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
		fill(t, ts, "", 1, 100)
		for range 3 {
			ts.rawPull(t, &syncpb.PullUpdatesReqProtoBody{})
		}
		if f := snapshotFiles(t, ts, "default"); len(f) != 0 || ts.metricValue(t, "syncdb_snapshot_cache_hits_total") != 0 {
			t.Fatalf("min %d: files %v", min, f)
		}
	}
}
