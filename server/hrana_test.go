package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/hranapb"
	"github.com/syncdb/syncdb/wire/syncpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// hstream is a client-side Hrana-over-HTTP stream for tests.
type hstream struct {
	t     *testing.T
	url   string // the database's base URL
	path  string // /v2/pipeline or /v3/pipeline
	baton *string
}

func (ts *testServer) stream(t *testing.T, db, path string) *hstream {
	return &hstream{t: t, url: ts.dbURL(db), path: path}
}

// send runs one pipeline request and returns its status, results and raw
// body; it follows the baton.
func (s *hstream) send(reqs ...hrana.StreamRequest) (int, []hrana.StreamResult, []byte) {
	s.t.Helper()
	body, _ := json.Marshal(hrana.PipelineReqBody{Baton: s.baton, Requests: reqs})
	status, out := post(s.t, s.url+s.path, "application/json", "", body)
	if status != http.StatusOK {
		return status, nil, out
	}
	resp, err := hrana.DecodePipelineResp(out)
	if err != nil {
		s.t.Fatalf("decode: %v\n%s", err, out)
	}
	s.baton = resp.Baton
	return status, resp.Results, out
}

// do runs statements, each an execute request, and fails on any error.
func (s *hstream) do(sqls ...string) []*hrana.StmtResult {
	s.t.Helper()
	var reqs []hrana.StreamRequest
	for _, q := range sqls {
		reqs = append(reqs, execReq(q))
	}
	status, res, out := s.send(reqs...)
	if status != http.StatusOK {
		s.t.Fatalf("status %d: %s", status, out)
	}
	var rs []*hrana.StmtResult
	for i, r := range res {
		if r.Type != hrana.ResultOK {
			s.t.Fatalf("%s: %v", sqls[i], r.Error)
		}
		rs = append(rs, r.Response.StmtResult)
	}
	return rs
}

func execReq(sql string) hrana.StreamRequest {
	return hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: &sql}}
}

func count(t *testing.T, ts *testServer, db, table string) string {
	t.Helper()
	return fmtRows(ts.query(t, db, "SELECT count(*) FROM "+table))
}

// A transaction spans requests on one stream: reads see its own writes,
// nothing is visible or pulled before COMMIT, a pull is not blocked by it,
// and the commit is exactly one revision. The baton changes every time.
func TestStreamTransactionAcrossRequests(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	d, _ := ts.database(t.Context(), "default", true)
	base := d.hist.Latest().Seq
	rev := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision

	s := ts.stream(t, "", "/v2/pipeline")
	s.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(1, 'a')")
	first := *s.baton
	s.do("INSERT INTO t VALUES(2, 'b')")
	if *s.baton == first {
		t.Fatal("the baton did not change")
	}
	if got := fmtRows(s.do("SELECT count(*) FROM t")[0].Rows); got != "2\n" {
		t.Fatalf("read-your-writes: %q", got)
	}
	start := time.Now()
	if p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev}); p.hdr.ServerRevision != rev {
		t.Fatalf("a pull during the transaction moved to %s", p.hdr.ServerRevision)
	}
	ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}) // a bootstrap
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("pulls took %v during an open transaction", el)
	}
	s.do("COMMIT")
	if got := d.hist.Latest().Seq; got != base+1 {
		t.Fatalf("the transaction made %d revisions", got-base)
	}
	if got := count(t, ts, "", "t"); got != "2\n" {
		t.Fatalf("after commit: %q", got)
	}

	// Rollback across requests: nothing, no revision.
	s.do("BEGIN", "INSERT INTO t VALUES(3, 'c')")
	s.do("INSERT INTO t VALUES(4, 'd')")
	s.do("ROLLBACK")
	if got := count(t, ts, "", "t"); got != "2\n" || d.hist.Latest().Seq != base+1 {
		t.Fatalf("after rollback: %q, %d revisions", got, d.hist.Latest().Seq-base)
	}
	// A failure in the middle leaves the transaction open for the client
	// to roll back; nothing of it commits.
	s.do("BEGIN", "INSERT INTO t VALUES(5, 'e')")
	if _, res, _ := s.send(execReq("INSERT INTO t VALUES(1, 'dup')")); res[0].Type != hrana.ResultError || res[0].Error.Code != "SQLITE_CONSTRAINT" {
		t.Fatalf("duplicate key: %+v", res[0])
	}
	s.do("ROLLBACK")
	if got := count(t, ts, "", "t"); got != "2\n" {
		t.Fatalf("after a failed transaction: %q", got)
	}
	// close ends the stream: no baton, and the old one is refused.
	old := s.baton
	if _, res, _ := s.send(hrana.StreamRequest{Type: hrana.ReqClose}); res[0].Type != hrana.ResultOK || s.baton != nil {
		t.Fatalf("close: %+v baton %v", res, s.baton)
	}
	s.baton = old
	if status, _, out := s.send(execReq("SELECT 1")); status != http.StatusBadRequest || !strings.Contains(string(out), "invalid baton") || !strings.Contains(string(out), "PROTOCOL_ERROR") {
		t.Fatalf("closed stream's baton: %d %s", status, out)
	}
}

// Stored SQL lives as long as its stream; close_sql forgets it.
func TestStreamStoredSQL(t *testing.T) {
	ts := newTestServer(t, Config{})
	s := ts.stream(t, "", "/v2/pipeline")
	id, q := int32(7), "SELECT 40 + 2"
	s.send(hrana.StreamRequest{Type: hrana.ReqStoreSQL, SQLID: &id, SQL: &q})
	_, res, _ := s.send(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQLID: &id}})
	if res[0].Type != hrana.ResultOK || fmtRows(res[0].Response.StmtResult.Rows) != "42\n" {
		t.Fatalf("stored sql in a later request: %+v", res[0])
	}
	s.send(hrana.StreamRequest{Type: hrana.ReqCloseSQL, SQLID: &id})
	_, res, _ = s.send(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQLID: &id}})
	if res[0].Type != hrana.ResultError {
		t.Fatalf("closed sql: %+v", res[0])
	}
	// Another stream does not see this one's texts.
	other := ts.stream(t, "", "/v2/pipeline")
	other.send(hrana.StreamRequest{Type: hrana.ReqStoreSQL, SQLID: &id, SQL: &q})
	_, res, _ = ts.stream(t, "", "/v2/pipeline").send(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQLID: &id}})
	if res[0].Type != hrana.ResultError {
		t.Fatalf("another stream's sql: %+v", res[0])
	}
}

// An idle stream expires: its transaction is rolled back and recorded
// nowhere, and its baton gets sqld's STREAM_EXPIRED error, never a fresh
// stream.
func TestStreamExpires(t *testing.T) {
	ts := newTestServer(t, Config{StreamIdleTimeout: 100 * time.Millisecond})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	d, _ := ts.database(t.Context(), "default", true)
	base := d.hist.Latest().Seq
	s := ts.stream(t, "", "/v3/pipeline")
	s.do("BEGIN", "INSERT INTO t VALUES(1)")
	time.Sleep(400 * time.Millisecond)
	status, _, out := s.send(execReq("COMMIT"))
	var e hrana.Error
	if status != http.StatusInternalServerError || json.Unmarshal(out, &e) != nil || e.Code != "STREAM_EXPIRED" {
		t.Fatalf("expired stream: %d %s", status, out)
	}
	if got := count(t, ts, "", "t"); got != "0\n" || d.hist.Latest().Seq != base {
		t.Fatalf("expired transaction: %q rows, %d revisions", got, d.hist.Latest().Seq-base)
	}
	for _, bad := range []string{"garbage", strings.Repeat("A", 43)} {
		s.baton = &bad
		if status, _, out := s.send(execReq("SELECT 1")); status != http.StatusBadRequest {
			t.Fatalf("baton %q: %d %s", bad, status, out)
		}
	}
}

// One writer: a second stream's write waits for the first's transaction,
// then runs; if the wait is too long it gets SQLITE_BUSY, and the stream
// stays usable.
func TestStreamConcurrentTransactions(t *testing.T) {
	ts := newTestServer(t, Config{StreamBusyTimeout: 300 * time.Millisecond, StreamTxnTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
	a, b := ts.stream(t, "", "/v2/pipeline"), ts.stream(t, "", "/v2/pipeline")
	a.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(1, 'a')")
	_, res, _ := b.send(execReq("INSERT INTO t VALUES(2, 'b')"))
	if res[0].Type != hrana.ResultError || res[0].Error.Code != "SQLITE_BUSY" {
		t.Fatalf("write while another stream holds a transaction: %+v", res[0])
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(100 * time.Millisecond)
		a.do("INSERT INTO t VALUES(3, 'a')", "COMMIT")
	})
	b.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(2, 'b')", "COMMIT") // waits for a's commit
	wg.Wait()
	if got := fmtRows(ts.query(t, "", "SELECT id, who FROM t ORDER BY id")); got != "1|a\n2|b\n3|a\n" {
		t.Fatalf("rows: %q", got)
	}
}

// Reads do not wait for another stream's transaction: they run on a
// reader connection and see the last commit. A request that writes or
// begins a transaction waits.
func TestStreamReadsDuringTransaction(t *testing.T) {
	ts := newTestServer(t, Config{StreamBusyTimeout: 300 * time.Millisecond, StreamTxnTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES(1)")
	a, b := ts.stream(t, "", "/v3/pipeline"), ts.stream(t, "", "/v3/pipeline")
	a.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(2)")
	start := time.Now()
	if got := fmtRows(b.do("SELECT count(*) FROM t")[0].Rows); got != "1\n" {
		t.Fatalf("a read during another stream's transaction: %q", got)
	}
	_, res, _ := b.send(hrana.StreamRequest{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: []hrana.BatchStep{step("SELECT id FROM t", nil), step("SELECT 2", nil)}}})
	if res[0].Type != hrana.ResultOK || res[0].Response.BatchResult.StepErrors[0] != nil {
		t.Fatalf("read batch: %+v", res[0])
	}
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Fatalf("reads waited %v", el)
	}
	for _, q := range []string{"BEGIN", "DELETE FROM t", "SELECT * FROM t; DELETE FROM t"} {
		if _, res, _ := b.send(execReq(q)); res[0].Type != hrana.ResultError || res[0].Error.Code != "SQLITE_BUSY" {
			t.Fatalf("%s during another stream's transaction: %+v", q, res[0])
		}
	}
	a.do("COMMIT")
	if got := fmtRows(b.do("SELECT count(*) FROM t")[0].Rows); got != "2\n" {
		t.Fatalf("after the commit: %q", got)
	}
}

// An abandoned transaction (a client that never sends its baton again)
// blocks other writers for StreamTxnTimeout at most: then it is rolled
// back.
func TestStreamAbandonedTransactionYields(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: 200 * time.Millisecond})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	a := ts.stream(t, "", "/v2/pipeline")
	a.do("BEGIN", "INSERT INTO t VALUES(1)")
	start := time.Now()
	ts.exec(t, "", "INSERT INTO t VALUES(2)")
	if el := time.Since(start); el < 150*time.Millisecond || el > 5*time.Second {
		t.Fatalf("the waiting write took %v", el)
	}
	if got := fmtRows(ts.query(t, "", "SELECT id FROM t")); got != "2\n" {
		t.Fatalf("rows: %q", got)
	}
	if status, _, out := a.send(execReq("COMMIT")); status != http.StatusInternalServerError || !strings.Contains(string(out), "STREAM_EXPIRED") {
		t.Fatalf("the rolled-back stream: %d %s", status, out)
	}
}

// Counts are per statement: a CREATE TABLE after an INSERT reports 0 rows
// and no rowid, not the INSERT's.
func TestStatementCounts(t *testing.T) {
	ts := newTestServer(t, Config{})
	s := ts.stream(t, "", "/v2/pipeline")
	r := s.do("CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t(v) VALUES(1), (2)", "CREATE TABLE u(x)",
		"UPDATE t SET v = 3", "DELETE FROM t WHERE id = 99", "SELECT * FROM t", "INSERT OR IGNORE INTO t VALUES(1, 9)")
	type c struct {
		n     uint64
		rowid string
	}
	want := []c{{0, "nil"}, {2, "2"}, {0, "nil"}, {2, "nil"}, {0, "nil"}, {0, "nil"}, {0, "nil"}}
	for i, res := range r {
		rowid := "nil"
		if res.LastInsertRowid != nil {
			rowid = fmt.Sprint(*res.LastInsertRowid)
		}
		if (c{res.AffectedRowCount, rowid}) != want[i] {
			t.Errorf("statement %d: affected %d rowid %s, want %v", i, res.AffectedRowCount, rowid, want[i])
		}
	}
}

// BEGIN TRANSACTION READONLY (libSQL's) refuses writes until it ends.
func TestReadonlyTransaction(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	s := ts.stream(t, "", "/v2/pipeline")
	s.do("BEGIN TRANSACTION READONLY", "SELECT * FROM t")
	_, res, _ := s.send(execReq("INSERT INTO t VALUES(1)"))
	if res[0].Type != hrana.ResultError || res[0].Error.Code != "SQLITE_READONLY" {
		t.Fatalf("write in a READONLY transaction: %+v", res[0])
	}
	s.do("COMMIT")
	s.do("INSERT INTO t VALUES(2)")
	if got := count(t, ts, "", "t"); got != "1\n" {
		t.Fatalf("rows: %q", got)
	}
}

// Hrana 3: get_autocommit (not on v2), and the same pipeline in protobuf.
func TestV3PipelineJSONAndProtobuf(t *testing.T) {
	ts := newTestServer(t, Config{})
	s := ts.stream(t, "", "/v3/pipeline")
	auto := hrana.StreamRequest{Type: hrana.ReqGetAutocommit}
	_, res, _ := s.send(auto, execReq("BEGIN"), auto, execReq("ROLLBACK"), auto)
	if !res[0].Response.IsAutocommit || res[2].Response.IsAutocommit || !res[4].Response.IsAutocommit {
		t.Fatalf("get_autocommit: %+v", res)
	}
	if status, _, _ := ts.stream(t, "", "/v2/pipeline").send(auto); status != http.StatusBadRequest {
		t.Fatalf("get_autocommit on v2: %d", status)
	}

	sql := "SELECT 1, 'x', X'00ff', NULL, 2.5"
	body, _ := proto.Marshal(&hranapb.PipelineReqBody{Requests: []*hranapb.StreamRequest{
		{Request: &hranapb.StreamRequest_Execute{Execute: &hranapb.ExecuteStreamReq{Stmt: &hranapb.Stmt{Sql: &sql}}}},
		{Request: &hranapb.StreamRequest_GetAutocommit{GetAutocommit: &hranapb.GetAutocommitStreamReq{}}},
	}})
	status, out := post(t, ts.url+"/v3-protobuf/pipeline", "application/x-protobuf", "", body)
	var m hranapb.PipelineRespBody
	if status != http.StatusOK || proto.Unmarshal(out, &m) != nil {
		t.Fatalf("protobuf pipeline: %d %q", status, out)
	}
	row := m.Results[0].GetOk().GetExecute().GetResult().GetRows()[0].GetValues()
	if row[0].GetInteger() != 1 || row[1].GetText() != "x" || !bytes.Equal(row[2].GetBlob(), []byte{0, 0xff}) || row[3].GetNull() == nil || row[4].GetFloat() != 2.5 {
		t.Fatalf("row: %v", row)
	}
	if !m.Results[1].GetOk().GetGetAutocommit().GetIsAutocommit() || m.GetBaton() == "" {
		t.Fatalf("results: %v", &m)
	}
	for _, p := range []string{"/v2", "/v3", "/v3-protobuf"} {
		resp, err := http.Get(ts.url + p)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
}

// A cursor streams its entries (JSON lines, or length-delimited protobuf)
// and its stream lives on.
func TestCursor(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO t SELECT i, i * 2 FROM n")
	q1, q2, q3 := "SELECT id, v FROM t ORDER BY id", "INSERT INTO t VALUES(1, 0)", "SELECT 7"
	body, _ := json.Marshal(hrana.CursorReqBody{Batch: hrana.Batch{Steps: []hrana.BatchStep{
		{Stmt: hrana.Stmt{SQL: &q1}}, {Stmt: hrana.Stmt{SQL: &q2}}, {Condition: okStep(1), Stmt: hrana.Stmt{SQL: &q3}},
	}}})
	status, out := post(t, ts.url+"/v3/cursor", "application/json", "", body)
	if status != http.StatusOK {
		t.Fatalf("cursor: %d %s", status, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	sc.Scan()
	var head hrana.CursorRespBody
	if err := json.Unmarshal(sc.Bytes(), &head); err != nil || head.Baton == nil {
		t.Fatalf("cursor header %q: %v", sc.Bytes(), err)
	}
	var kinds []string
	rows := 0
	for sc.Scan() {
		var e hrana.CursorEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("entry %q: %v", sc.Bytes(), err)
		}
		if e.Type == hrana.EntryRow {
			rows++
			continue
		}
		kinds = append(kinds, e.Type)
		if e.Type == hrana.EntryStepError && e.Error.Code != "SQLITE_CONSTRAINT" {
			t.Fatalf("step error: %+v", e.Error)
		}
	}
	if rows != 1000 || strings.Join(kinds, ",") != "step_begin,step_end,step_begin,step_error" {
		t.Fatalf("%d rows, entries %v", rows, kinds)
	}
	// The baton of the header continues the stream.
	s := &hstream{t: t, url: ts.url, path: "/v3/pipeline", baton: head.Baton}
	s.do("SELECT 1")

	// Protobuf.
	pb, _ := proto.Marshal(&hranapb.CursorReqBody{Batch: &hranapb.Batch{Steps: []*hranapb.BatchStep{{Stmt: &hranapb.Stmt{Sql: &q1}}}}})
	status, out = post(t, ts.url+"/v3-protobuf/cursor", "application/x-protobuf", "", pb)
	if status != http.StatusOK {
		t.Fatalf("protobuf cursor: %d", status)
	}
	n := 0
	for len(out) > 0 {
		size, k := protowire.ConsumeVarint(out)
		if k < 0 || int(size) > len(out)-k {
			t.Fatal("bad length prefix")
		}
		msg := out[k : k+int(size)]
		out = out[k+int(size):]
		if n > 0 {
			var e hranapb.CursorEntry
			if err := proto.Unmarshal(msg, &e); err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	if n != 1+1+1000+1 {
		t.Fatalf("%d protobuf messages", n)
	}
}

// Database names the way sqld takes them: x-namespace, or NAME.localhost.
func TestNamespaceFromHeaderAndHost(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "other", "CREATE TABLE t(x)", "INSERT INTO t VALUES(1)")
	sql := "SELECT count(*) FROM t"
	body, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{execReq(sql)}})
	for _, set := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("x-namespace", "other") },
		func(r *http.Request) { r.Host = "other.localhost:1234" },
	} {
		req, _ := http.NewRequest("POST", ts.url+"/v2/pipeline", bytes.NewReader(body))
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(out), `"value":"1"`) {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
	}
}

// PRAGMA foreign_keys lasts as long as the stream that set it, as on sqld
// (a stream is a connection there), although the writer connection is
// reset for every other holder in between; other streams keep theirs.
func TestStreamForeignKeysLast(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE p(id INTEGER PRIMARY KEY)", "CREATE TABLE c(p REFERENCES p(id))", "INSERT INTO p VALUES(1)")
	s := ts.stream(t, "", "/v3/pipeline")
	s.do("PRAGMA foreign_keys = ON")
	ts.exec(t, "", "INSERT INTO c VALUES(7)") // another stream: off, as every stream starts
	if got := fmtRows(s.do("PRAGMA foreign_keys")[0].Rows); got != "1\n" {
		t.Fatalf("PRAGMA foreign_keys on the stream that set it: %q, want 1", got)
	}
	s.do("INSERT INTO c VALUES(1)")
	if _, res, _ := s.send(execReq("INSERT INTO c VALUES(8)")); res[0].Type != hrana.ResultError || res[0].Error.Code != "SQLITE_CONSTRAINT" {
		t.Fatalf("a dangling reference on the stream with foreign_keys on: %+v, want SQLITE_CONSTRAINT", res[0])
	}
	s.do("PRAGMA foreign_keys = OFF")
	s.do("INSERT INTO c VALUES(9)")
	if got := count(t, ts, "", "c"); got != "3\n" {
		t.Fatalf("rows of c: %s, want 3 (7, 1, 9)", got)
	}
}
