package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/internal/zstdchunks"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

var zstdPagesReq = &syncpb.PullUpdatesReqProtoBody{Encoding: syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD}

// postPull posts req with an Accept-Encoding header; the caller reads and
// closes the response.
func (ts *testServer) postPull(t *testing.T, accept string, req *syncpb.PullUpdatesReqProtoBody) *http.Response {
	t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequest("POST", ts.dbURL("")+"/pull-updates", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/protobuf")
	hr.Header.Set("Accept-Encoding", accept)
	client := ts.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// pullAccepting posts req with an Accept-Encoding header and returns the
// response's Content-Encoding and body as it came.
func (ts *testServer) pullAccepting(t *testing.T, accept string, req *syncpb.PullUpdatesReqProtoBody) (string, []byte) {
	t.Helper()
	resp := ts.postPull(t, accept, req)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pull: %d %s %v", resp.StatusCode, out, err)
	}
	return resp.Header.Get("Content-Encoding"), out
}

// unzstd decodes a zstd response body.
func unzstd(t *testing.T, body []byte) []byte {
	t.Helper()
	r := zstdchunks.NewReader(io.NopCloser(bytes.NewReader(body)))
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// zstdBootstrap is a bootstrap by a client that takes a zstd stream; it
// must get one, of raw pages.
func (ts *testServer) zstdBootstrap(t *testing.T, req *syncpb.PullUpdatesReqProtoBody) ([]byte, *pulled) {
	t.Helper()
	enc, body := ts.pullAccepting(t, "zstd", req)
	if enc != "zstd" {
		t.Fatalf("Content-Encoding %q, want zstd", enc)
	}
	p := decodePull(t, unzstd(t, body))
	if p.hdr.RawEncoding == nil {
		t.Fatalf("a zstd stream must carry raw pages: %v", p.hdr)
	}
	return body, p
}

func samePull(t *testing.T, what string, got, want *pulled) {
	t.Helper()
	if !proto.Equal(got.hdr, want.hdr) {
		t.Fatalf("%s: header %v, want %v", what, got.hdr, want.hdr)
	}
	samePages(t, what, got, want)
	if len(got.order) != len(want.order) {
		t.Fatalf("%s: %d pages, want %d", what, len(got.order), len(want.order))
	}
}

// A bootstrap as a zstd stream carries exactly the raw bootstrap's header
// and pages, whether a page is in the database file, in the WAL over an
// older image, or past the file's end; it is smaller; and only a client
// that lists zstd in Accept-Encoding gets one (Turso's clients send
// "application/protobuf" there).
func TestZstdBootstrapMatchesRaw(t *testing.T) {
	ts := newTestServer(t, Config{SnapshotCacheMinBytes: -1, MaintenanceInterval: -1})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 12000) // several chunks
	if err := ts.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.exec(t, "", "UPDATE t SET v = 'changed ' || v WHERE id <= 500", "DELETE FROM t WHERE id BETWEEN 2000 AND 2500")
	fill(t, ts, "", 12001, 13000)
	raw := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	for _, req := range []*syncpb.PullUpdatesReqProtoBody{{}, zstdPagesReq} {
		body, z := ts.zstdBootstrap(t, req)
		samePull(t, "zstd stream", z, raw)
		if rawSize := len(raw.order) * wire.PageSize; len(body) > rawSize*3/4 {
			t.Fatalf("zstd stream of %d bytes for %d bytes of pages", len(body), rawSize)
		}
	}
	for _, accept := range []string{"application/protobuf", "", "gzip", "zstd;q=0", "gzip, zstd ; q=0.0"} {
		enc, body := ts.pullAccepting(t, accept, &syncpb.PullUpdatesReqProtoBody{})
		if enc != "" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q", accept, enc)
		}
		samePull(t, "Accept-Encoding "+accept, decodePull(t, body), raw)
	}
	if enc, _ := ts.pullAccepting(t, "gzip, deflate, br, zstd", &syncpb.PullUpdatesReqProtoBody{}); enc != "zstd" {
		t.Fatalf("a browser's Accept-Encoding: Content-Encoding %q", enc)
	}
	// Pulls that the history serves are never a zstd stream: zstd pages,
	// as stored, pass through.
	for _, req := range []*syncpb.PullUpdatesReqProtoBody{
		{Encoding: zstdPagesReq.Encoding, ClientRevision: raw.hdr.ServerRevision},
		{Encoding: zstdPagesReq.Encoding, ServerRevision: raw.hdr.ServerRevision},
		{Encoding: zstdPagesReq.Encoding, ServerPagesSelector: selector(t, 0, 1, 2)},
	} {
		if enc, _ := ts.pullAccepting(t, "zstd", req); enc != "" {
			t.Fatalf("%v: Content-Encoding %q", req, enc)
		}
	}
}

// The snapshot cache keeps a zstd stream beside the raw response: written
// by the second zstd bootstrap of a revision, sent as it is to later ones
// (and only to clients that take zstd), replaced by a newer revision's,
// deleted by maintenance once stale and when the database closes.
func TestZstdSnapshotCache(t *testing.T) {
	ts := newTestServer(t, Config{SnapshotCacheMinBytes: 1, MaintenanceInterval: -1})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 8000)
	hits := func() float64 { return ts.metricValue(t, "syncdb_snapshot_cache_hits_total") }
	files := func() []string {
		var names []string
		for _, f := range snapshotFiles(t, ts, "default") {
			names = append(names, filepath.Base(f))
		}
		return names
	}
	raw := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	rev := raw.hdr.ServerRevision
	seq := rev[strings.LastIndex(rev, "-")+1:]

	_, first := ts.zstdBootstrap(t, zstdPagesReq)
	if f := files(); len(f) != 0 {
		t.Fatalf("after the first zstd bootstrap: %v", f)
	}
	written, second := ts.zstdBootstrap(t, zstdPagesReq)
	if f := files(); len(f) != 1 || f[0] != snapshotPrefix+seq+".zst" || hits() != 0 {
		t.Fatalf("after the second zstd bootstrap: files %v, hits %v", f, hits())
	}
	cached, third := ts.zstdBootstrap(t, &syncpb.PullUpdatesReqProtoBody{})
	if hits() != 1 || !bytes.Equal(cached, written) {
		t.Fatalf("third zstd bootstrap: hits %v, same bytes as the one cached: %v", hits(), bytes.Equal(cached, written))
	}
	for _, p := range []*pulled{first, second, third} {
		samePull(t, "zstd bootstrap", p, raw)
	}
	// The raw cache is apart: raw clients never get the zstd file.
	ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	if f := files(); len(f) != 2 || hits() != 1 {
		t.Fatalf("after the second raw bootstrap: files %v, hits %v", f, hits())
	}
	enc, body := ts.pullAccepting(t, "application/protobuf", &syncpb.PullUpdatesReqProtoBody{})
	if enc != "" || hits() != 2 {
		t.Fatalf("raw bootstrap from the cache: Content-Encoding %q, hits %v", enc, hits())
	}
	samePull(t, "cached raw bootstrap", decodePull(t, body), raw)
	// A client that asked for zstd pages but takes no zstd stream gets zstd
	// pages, not the cached stream.
	if enc, body := ts.pullAccepting(t, "application/protobuf", zstdPagesReq); enc != "" || decodePull(t, body).hdr.ZstdEncoding == nil {
		t.Fatalf("zstd pages: Content-Encoding %q", enc)
	}

	// A newer revision: its second zstd bootstrap replaces the file.
	fill(t, ts, "", 8001, 8500)
	newRaw := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	ts.zstdBootstrap(t, zstdPagesReq)
	_, p := ts.zstdBootstrap(t, zstdPagesReq)
	samePull(t, "zstd bootstrap of the new revision", p, newRaw)
	newSeq := newRaw.hdr.ServerRevision[strings.LastIndex(newRaw.hdr.ServerRevision, "-")+1:]
	zst := 0
	for _, f := range files() {
		if strings.HasSuffix(f, ".zst") {
			zst++
			if f != snapshotPrefix+newSeq+".zst" {
				t.Fatalf("zstd file %s, want revision %s", f, newSeq)
			}
		}
	}
	if zst != 1 {
		t.Fatalf("files %v", files())
	}
	if _, p = ts.zstdBootstrap(t, zstdPagesReq); hits() != 3 {
		t.Fatalf("hits %v", hits())
	}
	samePull(t, "cached zstd bootstrap of the new revision", p, newRaw)

	// Stale after a write: maintenance deletes both files.
	fill(t, ts, "", 8501, 8510)
	if err := ts.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := files(); len(f) != 0 {
		t.Fatalf("stale snapshots kept by maintenance: %v", f)
	}
	ts.zstdBootstrap(t, zstdPagesReq)
	ts.zstdBootstrap(t, zstdPagesReq)
	if len(files()) != 1 {
		t.Fatalf("files %v", files())
	}
	ts.BeginShutdown()
	ts.http.Close()
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if f := files(); len(f) != 0 {
		t.Fatalf("snapshot files after close: %v", f)
	}
}

// A zstd-pages bootstrap that the history serves (a client that takes no
// zstd stream) is cached as it is: the history's frames, passed through.
func TestZstdPagesSnapshotCache(t *testing.T) {
	ts := newTestServer(t, Config{SnapshotCacheMinBytes: 1, MaintenanceInterval: -1})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 2000)
	raw := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	var bodies [][]byte
	for range 3 {
		enc, body := ts.pullAccepting(t, "application/protobuf", zstdPagesReq)
		if enc != "" {
			t.Fatalf("Content-Encoding %q", enc)
		}
		p := decodePull(t, body)
		if p.hdr.ZstdEncoding == nil {
			t.Fatalf("header %v", p.hdr)
		}
		samePages(t, "zstd pages", p, raw)
		bodies = append(bodies, body)
	}
	if hits := ts.metricValue(t, "syncdb_snapshot_cache_hits_total"); hits != 1 || !bytes.Equal(bodies[2], bodies[1]) {
		t.Fatalf("hits %v, cached bytes equal %v", hits, bytes.Equal(bodies[2], bodies[1]))
	}
	if f := snapshotFiles(t, ts, "default"); len(f) != 1 || !strings.HasSuffix(f[0], ".zpages") {
		t.Fatalf("files %v", f)
	}
}

// In a cluster, the writer's node serves a zstd stream from its own
// database, as a single server does; a node that does not write the
// database serves a client that takes zstd from the store (zstd pages as
// stored, raw pages plain). Either way the client gets the writer's pages.
func TestClusterZstdBootstrap(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	a, b := tc.nodes[0], tc.nodes[1]
	a.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, a.testServer, "", 1, 3000)
	raw := a.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	for _, req := range []*syncpb.PullUpdatesReqProtoBody{{}, zstdPagesReq} {
		_, z := a.zstdBootstrap(t, req)
		samePull(t, "the writer's zstd stream", z, raw)
		for range 2 { // the second from b's snapshot cache, if it kept one
			enc, body := b.pullAccepting(t, "application/protobuf, zstd", req)
			if enc == "zstd" {
				body = unzstd(t, body)
			} else if enc != "" {
				t.Fatalf("Content-Encoding %q", enc)
			}
			samePages(t, "another node's bootstrap", decodePull(t, body), raw)
		}
	}
}
