package server

import (
	"fmt"
	"testing"
	"time"
)

// runaway is a read that never ends on its own.
const runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"

// helloWS dials the test server's WebSocket and says hello.
func helloWS(t *testing.T, ts *testServer) *wsClient {
	t.Helper()
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	return w
}

// errCode is the code of a response_error message ("" if it is none).
func errCode(m map[string]any) string {
	if m["type"] != "response_error" {
		return ""
	}
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// Attack: a statement sent over a WebSocket stream ran with no bound (an
// HTTP request's are bounded by StatementTimeout), so a runaway query kept
// a connection (a reader, or the writer inside a transaction) for ever.
// It must end with a statement error, on a reader and on the writer, in a
// cursor too, and the stream must go on.
func TestSecurityWebSocketStatementTimeout(t *testing.T) {
	const limit = 300 * time.Millisecond
	ts := newTestServer(t, Config{StatementTimeout: limit})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	w := helloWS(t, ts)
	exec := func(sql string) map[string]any {
		return w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(sql)})
	}
	w.req(map[string]any{"type": "open_stream", "stream_id": 1})
	for _, inTx := range []bool{false, true} {
		if inTx {
			// On the writer, which the transaction keeps.
			if m := exec("BEGIN"); m["type"] != "response_ok" {
				t.Fatalf("BEGIN: %v", m)
			}
		}
		start := time.Now()
		m := exec(runaway)
		if el := time.Since(start); el > 10*limit {
			t.Fatalf("in a transaction %v: the runaway statement ran %v (StatementTimeout %v)", inTx, el, limit)
		}
		if errCode(m) != "SQLITE_INTERRUPT" {
			t.Fatalf("in a transaction %v: the runaway statement: %v, want SQLITE_INTERRUPT", inTx, m)
		}
		if m := exec("SELECT 1"); m["type"] != "response_ok" {
			t.Fatalf("in a transaction %v: the stream after the timeout: %v", inTx, m)
		}
	}
	// A cursor: its batch is bounded too, and the stream goes on.
	start := time.Now()
	if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": 1, "batch": map[string]any{"steps": []any{map[string]any{"stmt": stmt(runaway)}}}}); m["type"] != "response_ok" {
		t.Fatalf("open_cursor: %v", m)
	}
	var last map[string]any
	for done := false; !done; {
		m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": 1, "max_count": 100})
		resp, _ := m["response"].(map[string]any)
		if m["type"] != "response_ok" || resp == nil {
			t.Fatalf("fetch_cursor: %v", m)
		}
		done, _ = resp["done"].(bool)
		if es, _ := resp["entries"].([]any); len(es) > 0 {
			last, _ = es[len(es)-1].(map[string]any)
		}
	}
	if el := time.Since(start); el > 10*limit {
		t.Fatalf("the runaway cursor ran %v (StatementTimeout %v)", el, limit)
	}
	if e, _ := last["error"].(map[string]any); e["code"] != "SQLITE_INTERRUPT" {
		t.Fatalf("the runaway cursor's last entry: %v, want an error with SQLITE_INTERRUPT", last)
	}
	w.req(map[string]any{"type": "close_cursor", "cursor_id": 1})
	if m := exec("SELECT 1"); m["type"] != "response_ok" {
		t.Fatalf("the stream after the cursor's timeout: %v", m)
	}
	// A cursor whose client takes its time to fetch is not interrupted:
	// only the time its statements run counts.
	const n = 3 * wsCursorCapacity
	if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": 2, "batch": map[string]any{"steps": []any{map[string]any{"stmt": stmt(fmt.Sprintf("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT %d) SELECT x FROM c", n))}}}}); m["type"] != "response_ok" {
		t.Fatalf("open_cursor: %v", m)
	}
	rows := 0
	for done := false; !done; {
		time.Sleep(limit)
		m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": 2, "max_count": wsCursorCapacity})
		resp, _ := m["response"].(map[string]any)
		if m["type"] != "response_ok" || resp == nil {
			t.Fatalf("fetch_cursor: %v", m)
		}
		done, _ = resp["done"].(bool)
		es, _ := resp["entries"].([]any)
		for _, e := range es {
			switch e.(map[string]any)["type"] {
			case "row":
				rows++
			case "error", "step_error":
				t.Fatalf("a cursor fetched slowly: %v", e)
			}
		}
	}
	if rows != n {
		t.Fatalf("the slowly fetched cursor gave %d rows, want %d", rows, n)
	}
}
