package server

import (
	"testing"

	"github.com/syncdb/syncdb/wire/hrana"
)

// deferredFKSchema has a deferred foreign key: a violation is found only at
// commit, which for a RETURNING write in autocommit mode is the RELEASE of
// the server's savepoint around it.
var deferredFKSchema = []string{
	"CREATE TABLE p(id INTEGER PRIMARY KEY)",
	"CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)",
}

// An autocommit RETURNING write that breaks a deferred foreign key fails
// and leaves the stream in autocommit mode, as the same write without
// RETURNING does: the client's next autocommit writes are committed, not
// kept in a transaction the client does not know of and rolled back when
// the stream ends. Over HTTP, one stream across requests (baton).
func TestReturningDeferredFKHTTP(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", deferredFKSchema...)
	s := ts.stream(t, "", "/v3/pipeline")
	s.do("PRAGMA foreign_keys = ON")
	autocommit := func(when string) {
		t.Helper()
		_, res, out := s.send(hrana.StreamRequest{Type: hrana.ReqGetAutocommit})
		if len(res) != 1 || res[0].Type != hrana.ResultOK {
			t.Fatalf("get_autocommit %s: %s", when, out)
		}
		if !res[0].Response.IsAutocommit {
			t.Errorf("get_autocommit %s: false, want true (a transaction was left open under the client)", when)
		}
	}
	for _, q := range []string{
		"INSERT INTO c VALUES(1, 99)", // the control: no savepoint
		"INSERT INTO c VALUES(1, 99) RETURNING id",
		"INSERT INTO c VALUES(1, 99) RETURNING id, pid",
	} {
		_, res, out := s.send(execReq(q))
		if len(res) != 1 || res[0].Type != hrana.ResultError || res[0].Error.Code != "SQLITE_CONSTRAINT" {
			t.Fatalf("%s: %s, want SQLITE_CONSTRAINT", q, out)
		}
		autocommit("after " + q)
	}
	// The same in a batch step, then a step after it.
	_, res, out := s.send(batch(step("INSERT INTO c VALUES(2, 98) RETURNING id", nil), step("INSERT INTO p VALUES(4)", nil)))
	if len(res) != 1 || res[0].Type != hrana.ResultOK {
		t.Fatalf("batch: %s", out)
	}
	br := res[0].Response.BatchResult
	if e := br.StepErrors[0]; e == nil || e.Code != "SQLITE_CONSTRAINT" {
		t.Errorf("batch step 0: %s, want SQLITE_CONSTRAINT", out)
	}
	if br.StepErrors[1] != nil {
		t.Fatalf("batch step 1: %s", out)
	}
	autocommit("after the batch")
	s.do("INSERT INTO p VALUES(5)")
	// A RETURNING write that keeps the key is committed and answered.
	if got := fmtRows(s.do("INSERT INTO c VALUES(3, 5) RETURNING id")[0].Rows); got != "3\n" {
		t.Fatalf("RETURNING rows: %q, want 3", got)
	}
	autocommit("after a RETURNING write that kept the key")
	if _, res, out := s.send(hrana.StreamRequest{Type: hrana.ReqClose}); len(res) != 1 || res[0].Type != hrana.ResultOK {
		t.Fatalf("close: %s", out)
	}
	// Read from another stream, after this one ended.
	if got := fmtRows(ts.query(t, "", "SELECT id FROM p ORDER BY id")); got != "4\n5\n" {
		t.Fatalf("p after the stream closed: %q, want 4 and 5 (acknowledged autocommit inserts were lost)", got)
	}
	if got := fmtRows(ts.query(t, "", "SELECT id, pid FROM c")); got != "3|5\n" {
		t.Fatalf("c after the stream closed: %q, want only (3, 5)", got)
	}
}

// The same over WebSocket: execute and batch requests on one stream.
func TestReturningDeferredFKWebSocket(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", deferredFKSchema...)
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	ok := func(m map[string]any) map[string]any {
		t.Helper()
		if m["type"] != "response_ok" {
			t.Fatalf("not ok: %v", m)
		}
		resp, _ := m["response"].(map[string]any)
		return resp
	}
	exec := func(sql string) map[string]any {
		return w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(sql)})
	}
	autocommit := func(when string) {
		t.Helper()
		if r := ok(w.req(map[string]any{"type": "get_autocommit", "stream_id": 1})); r["is_autocommit"] != true {
			t.Errorf("get_autocommit %s: %v, want true (a transaction was left open under the client)", when, r)
		}
	}
	ok(w.req(map[string]any{"type": "open_stream", "stream_id": 1}))
	ok(exec("PRAGMA foreign_keys = ON"))
	for _, q := range []string{
		"INSERT INTO c VALUES(1, 99)",
		"INSERT INTO c VALUES(1, 99) RETURNING id",
	} {
		m := exec(q)
		e, _ := m["error"].(map[string]any)
		if m["type"] != "response_error" || e["code"] != "SQLITE_CONSTRAINT" {
			t.Fatalf("%s: %v, want SQLITE_CONSTRAINT", q, m)
		}
		autocommit("after " + q)
	}
	r := ok(w.req(map[string]any{"type": "batch", "stream_id": 1, "batch": map[string]any{"steps": []any{
		map[string]any{"stmt": stmt("INSERT INTO c VALUES(2, 98) RETURNING id")},
		map[string]any{"stmt": stmt("INSERT INTO p VALUES(4)")},
	}}}))
	br, _ := r["result"].(map[string]any)
	errs, _ := br["step_errors"].([]any)
	if len(errs) != 2 || errs[1] != nil {
		t.Fatalf("batch: %v", r)
	}
	if e, _ := errs[0].(map[string]any); e["code"] != "SQLITE_CONSTRAINT" {
		t.Errorf("batch step 0: %v, want SQLITE_CONSTRAINT", r)
	}
	autocommit("after the batch")
	ok(exec("INSERT INTO p VALUES(5)"))
	ok(exec("INSERT INTO c VALUES(3, 5) RETURNING id"))
	autocommit("after a RETURNING write that kept the key")
	ok(w.req(map[string]any{"type": "close_stream", "stream_id": 1}))
	if got := fmtRows(ts.query(t, "", "SELECT id FROM p ORDER BY id")); got != "4\n5\n" {
		t.Fatalf("p after the stream closed: %q, want 4 and 5 (acknowledged autocommit inserts were lost)", got)
	}
	if got := fmtRows(ts.query(t, "", "SELECT id, pid FROM c")); got != "3|5\n" {
		t.Fatalf("c after the stream closed: %q, want only (3, 5)", got)
	}
}
