package netactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

const fillSQL = `WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d)
	INSERT INTO t(id, v) SELECT i, printf('row-%%d-%%s', i, hex(randomblob(40))) FROM n`

// A full pull hands every page to OnPage, in order, and an incremental pull
// after a pipeline write hands over exactly the changed pages, which match a
// fresh snapshot.
func TestPullFullAndIncremental(t *testing.T) {
	url, _ := realServer(t, server.Config{})
	pid := spawn(t, Config{URL: url + "/"})

	exec(t, pid, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", fmt.Sprintf(fillSQL, 1, 2000))
	full := mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{})
	hdr := full.headers[0]
	if hdr.DbSize < 20 || uint64(len(full.pages)) != hdr.DbSize || full.info.Pages != len(full.pages) {
		t.Fatalf("db_size %d, %d pages, info %+v", hdr.DbSize, len(full.pages), full.info)
	}
	for i, pg := range full.order {
		if pg != uint32(i+1) {
			t.Fatalf("page %d arrived as number %d", i+1, pg)
		}
	}
	if !bytes.HasPrefix(full.pages[1], []byte("SQLite format 3\x00")) {
		t.Fatalf("page 1 is not a database header: %q", full.pages[1][:16])
	}
	if full.info.Header != hdr || full.info.Bytes < int64(len(full.pages))*4096 {
		t.Fatalf("info %+v", full.info)
	}

	exec(t, pid, "UPDATE t SET v = 'changed' WHERE id = 1000")
	inc := mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: hdr.ServerRevision})
	ihdr := inc.headers[0]
	if ihdr.ServerRevision == hdr.ServerRevision {
		t.Fatalf("revision did not move: %s", ihdr.ServerRevision)
	}
	if len(inc.pages) == 0 || uint64(len(inc.pages)) >= ihdr.DbSize {
		t.Fatalf("incremental pull has %d of %d pages", len(inc.pages), ihdr.DbSize)
	}
	snap := mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{ServerRevision: ihdr.ServerRevision})
	for pg, data := range inc.pages {
		if !bytes.Equal(data, snap.pages[pg]) {
			t.Fatalf("incremental page %d differs from the snapshot", pg)
		}
		if bytes.Equal(data, full.pages[pg]) {
			t.Fatalf("page %d did not change but was sent", pg)
		}
	}
	if !bytes.Contains(bytes.Join(mapValues(inc.pages), nil), []byte("changed")) {
		t.Fatal("the updated row is not in the incremental pages")
	}
}

func mapValues(m map[uint32][]byte) [][]byte {
	var out [][]byte
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// A pipeline batch runs on the server and its results come back decoded.
func TestPipelineBatch(t *testing.T) {
	url, _ := realServer(t, server.Config{})
	pid := spawn(t, Config{URL: url})
	exec(t, pid, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)", "INSERT INTO kv VALUES ('a', 1), ('b', 2)")
	br := exec(t, pid, "SELECT sum(v) FROM kv", "SELECT count(*) FROM kv")
	if len(br.StepResults) != 2 {
		t.Fatalf("step results: %+v", br.StepResults)
	}
	if v := br.StepResults[0].Rows[0][0].V; v != int64(3) {
		t.Fatalf("sum = %#v", v)
	}
	if v := br.StepResults[1].Rows[0][0].V; v != int64(2) {
		t.Fatalf("count = %#v", v)
	}

	// A failing statement is a Hrana error in the result, not a Go error.
	resp, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT * FROM nope")})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.Results[0].Response.BatchResult.StepErrors[0]; e == nil {
		t.Fatalf("no step error: %+v", resp.Results[0])
	}
}

// zstd pages are decompressed: the caller sees the same bytes as a raw pull
// of the same revision.
func TestPullZstd(t *testing.T) {
	url, _ := realServer(t, server.Config{})
	raw := spawn(t, Config{URL: url})
	z2 := spawn(t, Config{URL: url, ZstdPages: true})

	exec(t, raw, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", fmt.Sprintf(fillSQL, 1, 1000))
	r := mustPull(t, raw, &syncpb.PullUpdatesReqProtoBody{})
	req := &syncpb.PullUpdatesReqProtoBody{ServerRevision: r.headers[0].ServerRevision}
	zr := mustPull(t, z2, req)
	if req.Encoding != syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_RAW {
		t.Fatal("the caller's request was modified")
	}
	if zr.headers[0].ZstdEncoding == nil || zr.headers[0].RawEncoding != nil {
		t.Fatalf("header is not zstd: %v", zr.headers[0])
	}
	if len(zr.pages) != len(r.pages) {
		t.Fatalf("%d zstd pages, %d raw", len(zr.pages), len(r.pages))
	}
	for pg, data := range r.pages {
		if !bytes.Equal(data, zr.pages[pg]) {
			t.Fatalf("page %d differs", pg)
		}
	}
	if zr.info.Bytes >= r.info.Bytes {
		t.Fatalf("zstd stream (%d bytes) is not smaller than raw (%d)", zr.info.Bytes, r.info.Bytes)
	}
}

// With ZstdPages a bootstrap comes as a zstd stream of raw pages
// (Content-Encoding: zstd), decoded in parallel: the same header and pages
// as a raw bootstrap, in fewer bytes.
func TestBootstrapZstdStream(t *testing.T) {
	url, _ := realServer(t, server.Config{SnapshotCacheMinBytes: -1})
	raw := spawn(t, Config{URL: url})
	z := spawn(t, Config{URL: url, ZstdPages: true})
	exec(t, raw, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", fmt.Sprintf(fillSQL, 1, 20000)) // several chunks
	r := mustPull(t, raw, &syncpb.PullUpdatesReqProtoBody{})
	zr := mustPull(t, z, &syncpb.PullUpdatesReqProtoBody{})
	if !proto.Equal(zr.headers[0], r.headers[0]) {
		t.Fatalf("header %v, raw %v", zr.headers[0], r.headers[0])
	}
	if len(zr.pages) != len(r.pages) || zr.info.Pages != r.info.Pages {
		t.Fatalf("%d pages, raw %d", len(zr.pages), len(r.pages))
	}
	for pg, data := range r.pages {
		if !bytes.Equal(data, zr.pages[pg]) {
			t.Fatalf("page %d differs", pg)
		}
	}
	if zr.info.Bytes*2 > r.info.Bytes {
		t.Fatalf("zstd stream of %d bytes, raw %d", zr.info.Bytes, r.info.Bytes)
	}
}

// The counters grow by exactly the body bytes the server read and wrote.
func TestCounters(t *testing.T) {
	url, counts := realServer(t, server.Config{})
	pid := spawn(t, Config{URL: url})
	netStats := func() messages.NetCounters {
		t.Helper()
		c, err := pid.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := netStats(); c != (messages.NetCounters{}) {
		t.Fatalf("fresh counters: %+v", c)
	}

	body := batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", fmt.Sprintf(fillSQL, 1, 500))
	reqJSON, _ := json.Marshal(body)
	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: body}); err != nil {
		t.Fatal(err)
	}
	c := netStats()
	if c.SentBytes != int64(len(reqJSON)) || c.SentBytes != counts.in.Load() || c.ReceivedBytes != counts.out.Load() || c.ReceivedBytes == 0 {
		t.Fatalf("after pipeline: counters %+v, request %d bytes, server read %d wrote %d", c, len(reqJSON), counts.in.Load(), counts.out.Load())
	}

	req := &syncpb.PullUpdatesReqProtoBody{} // an empty body: 0 bytes sent
	r := mustPull(t, pid, req)
	reqBytes, _ := proto.Marshal(req)
	c2 := netStats()
	if c2.SentBytes-c.SentBytes != int64(len(reqBytes)) || c2.ReceivedBytes-c.ReceivedBytes != r.info.Bytes {
		t.Fatalf("after pull: %+v -> %+v, pull info %+v", c, c2, r.info)
	}
	if c2.SentBytes != counts.in.Load() || c2.ReceivedBytes != counts.out.Load() {
		t.Fatalf("counters %+v, server read %d wrote %d", c2, counts.in.Load(), counts.out.Load())
	}
	if r.info.Bytes < int64(r.headers[0].DbSize)*4096 {
		t.Fatalf("pull of %d pages counted %d bytes", r.headers[0].DbSize, r.info.Bytes)
	}

	// Incremental pull with a non-empty request body.
	exec(t, pid, "INSERT INTO t VALUES (9999, 'x')")
	c3 := netStats()
	inc := &syncpb.PullUpdatesReqProtoBody{ClientRevision: r.headers[0].ServerRevision}
	incBytes, _ := proto.Marshal(inc)
	ir := mustPull(t, pid, inc)
	c4 := netStats()
	if c4.SentBytes-c3.SentBytes != int64(len(incBytes)) || c4.ReceivedBytes-c3.ReceivedBytes != ir.info.Bytes {
		t.Fatalf("incremental: %+v -> %+v, request %d bytes, info %+v", c3, c4, len(incBytes), ir.info)
	}
}

// A revision the server does not know is 410: ErrRevisionGone.
func TestRevisionGoneRealServer(t *testing.T) {
	url, _ := realServer(t, server.Config{})
	pid := spawn(t, Config{URL: url, Clock: newFakeClock()})
	_, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: "nope-42"})
	var herr *HTTPError
	if !errors.Is(err, ErrRevisionGone) || !errors.As(err, &herr) || herr.Status != http.StatusGone || herr.Endpoint != EndpointPull {
		t.Fatalf("err = %v", err)
	}
}

// Tokens: a missing token is a clear 401 with the server's text; the token
// callback is called per request; a read-only token pushing is a 403.
func TestAuthRealServer(t *testing.T) {
	// Only a read-write token may create a database: this one exists.
	url, _ := realServer(t, server.Config{AuthTokens: []string{"rw"}, ReadTokens: []string{"ro"}, Databases: []string{"default"}})
	anon := spawn(t, Config{URL: url, Clock: newFakeClock()})
	_, err := pull(context.Background(), anon, &syncpb.PullUpdatesReqProtoBody{})
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous pull: %v", err)
	}
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte("authorization required")) || !bytes.Contains([]byte(msg), []byte("auth token")) {
		t.Fatalf("401 message: %s", msg)
	}

	token := "ro"
	calls := 0
	pid := spawn(t, Config{URL: url, AuthToken: func() (string, error) { calls++; return token, nil }})
	mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{})
	_, err = pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1")})
	if !errors.As(err, &herr) || herr.Status != http.StatusForbidden || !bytes.Contains([]byte(err.Error()), []byte("may pull but not push")) {
		t.Fatalf("read-only push: %v", err)
	}
	token = "rw"
	resp, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1")})
	if err != nil || resp.Results[0].Type != hrana.ResultOK {
		t.Fatalf("read-write push: %v %+v", err, resp)
	}
	if calls != 3 {
		t.Fatalf("token callback called %d times, want 3", calls)
	}
}
