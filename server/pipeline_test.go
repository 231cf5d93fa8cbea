package server

import (
	"database/sql"
	"encoding/json"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

func str(s string) *string { return &s }

func step(sql string, cond *hrana.BatchCond, args ...hrana.Value) hrana.BatchStep {
	return hrana.BatchStep{Condition: cond, Stmt: hrana.Stmt{SQL: &sql, Args: args}}
}

var notAutocommit = &hrana.BatchCond{Type: hrana.CondNot, Cond: &hrana.BatchCond{Type: hrana.CondIsAutocommit}}

func okStep(i uint32) *hrana.BatchCond { return &hrana.BatchCond{Type: hrana.CondOK, Step: i} }

func batch(steps ...hrana.BatchStep) hrana.StreamRequest {
	return hrana.StreamRequest{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: steps}}
}

// Values come back with their exact storage class, whatever the declared
// column type (a TEXT in a DATETIME column stays text).
func TestPipelineValues(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE v(id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, b BLOB, d DATETIME)")
	blob := make([]byte, 300<<10)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	ins := "INSERT INTO v VALUES(?, ?, ?, ?, ?, ?)"
	vals := [][]hrana.Value{
		{{V: int64(1)}, {V: int64(math.MinInt64)}, {V: 0.1}, {V: "héllo 🌍 世界"}, {V: blob}, {V: "2024-01-02 03:04:05"}},
		{{V: int64(2)}, {V: int64(math.MaxInt64)}, {V: -1.5e308}, {V: ""}, {V: []byte{}}, {V: nil}},
		{{V: int64(3)}, {V: nil}, {V: nil}, {V: nil}, {V: nil}, {V: int64(7)}},
	}
	for _, row := range vals {
		ts.pipeline(t, "", "", batch(step(ins, nil, row...)))
	}
	rows := ts.query(t, "", "SELECT * FROM v ORDER BY id")
	if len(rows) != 3 {
		t.Fatalf("rows: %s", fmtRows(rows))
	}
	for i, row := range rows {
		for j, v := range row {
			want := vals[i][j].V
			gotJSON, _ := json.Marshal(v)
			wantJSON, _ := json.Marshal(hrana.Value{V: want})
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("row %d col %d: got %s want %s", i, j, trunc(gotJSON), trunc(wantJSON))
			}
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// Turso's push batch shape, with our stricter guard: a failing step stops
// every later step, the high-water mark included, and nothing commits.
func TestPipelineGuardedBatch(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE u(id INTEGER PRIMARY KEY, y TEXT UNIQUE)", "INSERT INTO u VALUES(1, 'taken')")
	cond := func(prev uint32) *hrana.BatchCond {
		return &hrana.BatchCond{Type: hrana.CondAnd, Conds: []hrana.BatchCond{*notAutocommit, *okStep(prev)}}
	}
	resp := ts.pipeline(t, "", "", batch(
		step("BEGIN IMMEDIATE", nil),
		step("INSERT INTO u VALUES(2, 'fine')", cond(0)),
		step("INSERT INTO u VALUES(3, 'taken')", cond(1)), // UNIQUE violation: the transaction stays open
		step("INSERT INTO u VALUES(4, 'never')", cond(2)),
		step("COMMIT", cond(3)),
	))
	br := resp.Results[0].Response.BatchResult
	if br.StepErrors[2] == nil || !strings.Contains(br.StepErrors[2].Message, "UNIQUE") || br.StepErrors[2].Code != "SQLITE_CONSTRAINT" {
		t.Fatalf("step 2 error: %+v", br.StepErrors[2])
	}
	if br.StepResults[3] != nil || br.StepErrors[3] != nil || br.StepResults[4] != nil {
		t.Fatalf("steps after the failure ran: %+v %+v", br.StepResults, br.StepErrors)
	}
	// The batch held its own COMMIT, which did not run: it was rolled back
	// at once, not kept open on a stream its client never uses again (the
	// next writer would wait StreamTxnTimeout for it).
	start := time.Now()
	ts.exec(t, "", "INSERT INTO u VALUES(5, 'next')", "DELETE FROM u WHERE id = 5")
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("the next write waited %v", el)
	}
	if rows := ts.query(t, "", "SELECT id FROM u ORDER BY id"); fmtRows(rows) != "1\n" {
		t.Fatalf("rows after rolled-back batch: %q", fmtRows(rows))
	}
}

// Conditions: ok, error, not, and, or, is_autocommit.
func TestPipelineConditions(t *testing.T) {
	ts := newTestServer(t, Config{})
	resp := ts.pipeline(t, "", "", batch(
		step("SELECT 1", nil),       // 0 ok
		step("SELECT nope", nil),    // 1 error
		step("SELECT 2", okStep(0)), // 2 runs
		step("SELECT 3", okStep(1)), // 3 skipped
		step("SELECT 4", &hrana.BatchCond{Type: hrana.CondError, Step: 1}),                                                            // 4 runs
		step("SELECT 5", &hrana.BatchCond{Type: hrana.CondOr, Conds: []hrana.BatchCond{*okStep(1), *okStep(3)}}),                      // 5 skipped
		step("SELECT 6", &hrana.BatchCond{Type: hrana.CondAnd, Conds: []hrana.BatchCond{*okStep(0), {Type: hrana.CondIsAutocommit}}}), // 6 runs
		step("SELECT 7", notAutocommit), // 7 skipped
		step("SELECT 8", okStep(9)),     // 8 refers forward: error
	))
	br := resp.Results[0].Response.BatchResult
	ran := ""
	for i := range br.StepResults {
		switch {
		case br.StepResults[i] != nil:
			ran += "r"
		case br.StepErrors[i] != nil:
			ran += "e"
		default:
			ran += "-"
		}
	}
	if ran != "rer-r-r-e" {
		t.Fatalf("step outcomes %q", ran)
	}
}

// A transaction left open at the end of a request is rolled back; execute,
// sequence, store_sql, describe and close work; batons are refused.
func TestPipelineRequests(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	resp := ts.pipeline(t, "", "",
		hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: str("BEGIN")}},
		hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: str("INSERT INTO t VALUES(1, 'open')")}},
	)
	if resp.Results[1].Type != hrana.ResultOK || resp.Results[1].Response.StmtResult.AffectedRowCount != 1 {
		t.Fatalf("insert: %+v", resp.Results[1])
	}
	if rows := ts.query(t, "", "SELECT count(*) FROM t"); mustInt(t, rows[0][0]) != 0 {
		t.Fatal("an open transaction was not rolled back at the end of the request")
	}
	id := int32(7)
	resp = ts.pipeline(t, "", "",
		hrana.StreamRequest{Type: hrana.ReqSequence, SQL: str("INSERT INTO t VALUES(1,'a'); INSERT INTO t VALUES(2,'b');")},
		hrana.StreamRequest{Type: hrana.ReqStoreSQL, SQLID: &id, SQL: str("SELECT v FROM t WHERE id = :id")},
		hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQLID: &id, NamedArgs: []hrana.NamedArg{{Name: ":id", Value: hrana.Value{V: int64(2)}}}}},
		hrana.StreamRequest{Type: hrana.ReqDescribe, SQLID: &id},
		hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: str("SELECT 1; SELECT 2")}},
		hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: str("INSERT INTO t VALUES(3, 'c')")}},
		hrana.StreamRequest{Type: hrana.ReqClose},
		hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: str("SELECT 1")}},
	)
	r := resp.Results
	if r[0].Type != hrana.ResultOK || r[1].Type != hrana.ResultOK {
		t.Fatalf("sequence/store: %+v %+v", r[0], r[1])
	}
	if got := fmtRows(r[2].Response.StmtResult.Rows); got != "b\n" {
		t.Fatalf("stored statement: %q", got)
	}
	if d := r[3].Response.DescribeResult; len(d.Params) != 1 || *d.Params[0].Name != ":id" || !d.IsReadonly || d.Cols[0].Name != "v" {
		t.Fatalf("describe: %+v", d)
	}
	if r[4].Type != hrana.ResultError {
		t.Fatalf("two statements in execute: %+v", r[4])
	}
	if sr := r[5].Response.StmtResult; sr.LastInsertRowid == nil || *sr.LastInsertRowid != 3 {
		t.Fatalf("last_insert_rowid: %+v", sr)
	}
	if r[7].Type != hrana.ResultError || r[7].Error.Code != codeStreamClosed {
		t.Fatalf("after close: %+v", r[7])
	}
	status, body := post(t, ts.url+"/v2/pipeline", "application/json", "", []byte(`{"baton":"abc","requests":[]}`))
	if status != http.StatusBadRequest || !strings.Contains(string(body), "baton") {
		t.Fatalf("baton: %d %s", status, body)
	}
	// The reply to the high-water read of a client that never pushed.
	res := ts.pipeline(t, "", "", batch(step("SELECT pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id = ?", nil, text("x"))))
	if e := res.Results[0].Response.BatchResult.StepErrors[0]; e == nil || !strings.Contains(e.Message, "no such table") {
		t.Fatalf("missing table error: %+v", e)
	}
}

// Every committed write is a new revision; reads and failed writes are not.
func TestRevisionPerCommit(t *testing.T) {
	ts := newTestServer(t, Config{})
	d, _ := ts.database(t.Context(), "default", true)
	base := d.hist.Latest().Seq
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES(1)", "INSERT INTO t VALUES(2)")
	if got := d.hist.Latest().Seq; got != base+3 {
		t.Fatalf("three autocommit writes gave %d revisions", got-base)
	}
	ts.query(t, "", "SELECT * FROM t")
	ts.pipeline(t, "", "", batch(step("INSERT INTO t VALUES(1)", nil)))
	ts.pipeline(t, "", "", batch(step("BEGIN", nil), step("INSERT INTO t VALUES(3)", nil), step("INSERT INTO t VALUES(4)", nil), step("COMMIT", nil)))
	if got := d.hist.Latest().Seq; got != base+4 {
		t.Fatalf("after a read, a failed insert and one transaction: %d revisions", got-base)
	}
}

// Bad input gets a 4xx with a message, never a crash.
func TestBadInput(t *testing.T) {
	ts := newTestServer(t, Config{MaxPipelineRequestBytes: 1 << 10})
	cases := []struct {
		method, path, ctype, body string
		status                    int
		msg                       string
	}{
		{"POST", "/pull-updates", "application/protobuf", "\xff\xff\xff", 400, "malformed"},
		{"POST", "/pull-updates", "application/protobuf", "\x2a\x03abc", 400, "selector"},
		{"POST", "/pull-updates", "application/protobuf", "\x40\x01", 400, "page protocol"},
		{"POST", "/pull-updates", "application/protobuf", "\x08\x05", 400, "encoding"},
		{"POST", "/v2/pipeline", "application/json", "{", 400, "malformed"},
		{"POST", "/v2/pipeline", "application/json", `{"requests":[{"type":"bogus"}]}`, 400, "malformed"},
		{"POST", "/v2/pipeline", "application/json", `{"requests":[{"type":"execute","stmt":{"sql":"` + strings.Repeat("x", 2000) + `"}}]}`, 413, "larger"},
		{"POST", "/db/../etc/pull-updates", "application/protobuf", "", 404, ""},
		{"POST", "/db/bad%20name/pull-updates", "application/protobuf", "", 400, "database name"},
		{"POST", "/db/" + strings.Repeat("a", 65) + "/pull-updates", "application/protobuf", "", 400, "database name"},
		{"GET", "/pull-updates", "", "", 405, "POST"},
		{"POST", "/nope", "", "", 404, "not found"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, ts.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 1024)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(b.String(), c.msg) {
			t.Errorf("%s %s %q: %d %q, want %d containing %q", c.method, c.path, trunc([]byte(c.body)), resp.StatusCode, b.String(), c.status, c.msg)
		}
	}
	// The server still works.
	ts.exec(t, "", "CREATE TABLE ok(x)")
}

func TestAuth(t *testing.T) {
	ts := newTestServer(t, Config{AuthTokens: []string{"rw1", "rw2"}, ReadTokens: []string{"ro"}})
	pullBody := []byte{}
	push, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step("CREATE TABLE IF NOT EXISTS t(x)", nil))}})
	for _, c := range []struct {
		token      string
		pull, push int
	}{
		{"", 401, 401}, {"wrong", 401, 401}, {"rw1", 200, 200}, {"rw2", 200, 200}, {"ro", 200, 403},
	} {
		if s, b := post(t, ts.url+"/pull-updates", "application/protobuf", c.token, pullBody); s != c.pull {
			t.Errorf("token %q pull: %d %s", c.token, s, b)
		}
		if s, b := post(t, ts.url+"/v2/pipeline", "application/json", c.token, push); s != c.push {
			t.Errorf("token %q push: %d %s", c.token, s, b)
		}
	}
	resp, err := http.Get(ts.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// Commits that reached the WAL but not the history (a crash between the
// two) are recovered from the WAL when the database opens again.
func TestHistoryRecoveredFromWAL(t *testing.T) {
	dir := t.TempDir()
	ts := newTestServer(t, Config{DataDir: dir})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(1, 'recorded')")
	before := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	ts.BeginShutdown()
	if err := ts.Server.Close(); err != nil {
		t.Fatal(err)
	}

	// Commit behind the server's back, as if it had crashed right after
	// this commit reached the WAL.
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "default", mainFile)+"?_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := raw.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sqlitex.Raw(t.Context(), conn, func(c *sqlitex.Conn) error { return c.SetNoCheckpointOnClose(true) })
	if _, err := conn.ExecContext(t.Context(), "INSERT INTO t VALUES(2, 'unrecorded')"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	raw.Close()

	ts2 := newTestServer(t, Config{DataDir: dir})
	p := ts2.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: before})
	if p.hdr.ServerRevision == before || len(p.pages) == 0 {
		t.Fatalf("recovered commit not served: %v", p.hdr)
	}
	full := ts2.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	im := image{}
	im.apply(full)
	db := openImage(t, im.write(t, full.hdr.DbSize))
	integrityOK(t, db)
	if n, _ := countRows(t, db); n != 2 {
		t.Fatalf("rows: %d", n)
	}
}

// Text that is not SQL is SQL_PARSE_ERROR, as sqld reports it (clients
// match on the code); SQL that parses but does not compile is not.
func TestParseErrorCode(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(x)")
	for _, c := range []struct{ sql, code string }{
		{"SELEC 1", "SQL_PARSE_ERROR"},
		{"SELECT 'unterminated", "SQL_PARSE_ERROR"},
		{"SELECT (1", "SQL_PARSE_ERROR"},
		{"INSERT INTO t VALUES(1) garbage", "SQL_PARSE_ERROR"},
		{"SELECT * FROM nowhere", "SQLITE_UNKNOWN"},
		{"SELECT nope FROM t", "SQL_INPUT_ERROR"},
	} {
		r := ts.pipeline(t, "", "", execReq(c.sql)).Results[0]
		if r.Type != hrana.ResultError || r.Error.Code != c.code {
			t.Errorf("%s: %+v, want an error with code %s", c.sql, r.Error, c.code)
		}
	}
}
