package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb/wire/hrana"
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
		if inTx {
			// The interrupt rolled the transaction back: the next
			// request says so (see TestSecurityInterruptedCursorRollsBack).
			if m := exec("SELECT 1"); errCode(m) != "TRANSACTION_TIMEOUT" {
				t.Fatalf("the request after an interrupt in a transaction: %v, want TRANSACTION_TIMEOUT", m)
			}
			// Until the client ends it (see TestSecurityWSAbortedTransaction).
			if m := exec("ROLLBACK"); m["type"] != "response_ok" {
				t.Fatalf("ROLLBACK after an interrupt in a transaction: %v", m)
			}
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
}

// fetchCursor opens a cursor on sel over w's stream 1 and fetches it to
// its end, sleeping pause before each fetch; it returns the rows and fails
// on an error entry.
func fetchCursor(t *testing.T, w *wsClient, id int, sel string, pause time.Duration) int {
	t.Helper()
	if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": id, "batch": map[string]any{"steps": []any{map[string]any{"stmt": stmt(sel)}}}}); m["type"] != "response_ok" {
		t.Fatalf("open_cursor: %v", m)
	}
	rows := 0
	for done := false; !done; {
		time.Sleep(pause)
		m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": id, "max_count": wsCursorCapacity})
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
				t.Fatalf("a cursor fetched with %v between fetches: %v", pause, e)
			}
		}
	}
	w.req(map[string]any{"type": "close_cursor", "cursor_id": id})
	return rows
}

// A WebSocket cursor whose client takes its time to fetch is not
// interrupted by StatementTimeout: only the time its statements run
// counts. The limit is derived from how long the cursor takes here when
// fetched at once (under -race on a busy machine its statements alone
// run for hundreds of milliseconds), and the client sleeps half of it
// before each of its 4 fetches: the waits add up to twice the limit.
func TestSecurityWebSocketCursorSlowFetch(t *testing.T) {
	const n = 3 * wsCursorCapacity
	sel := fmt.Sprintf("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT %d) SELECT x FROM c", n)
	var took time.Duration
	{
		ts := newTestServer(t, Config{}) // StatementTimeout: a minute
		w := helloWS(t, ts)
		w.req(map[string]any{"type": "open_stream", "stream_id": 1})
		for i := range 3 {
			start := time.Now()
			if rows := fetchCursor(t, w, i+1, sel, 0); rows != n {
				t.Fatalf("the cursor gave %d rows, want %d", rows, n)
			}
			took = max(took, time.Since(start))
		}
	}
	limit := max(time.Second, 5*took)
	t.Logf("the cursor fetched at once takes %v: StatementTimeout %v", took, limit)
	ts := newTestServer(t, Config{StatementTimeout: limit})
	w := helloWS(t, ts)
	w.req(map[string]any{"type": "open_stream", "stream_id": 1})
	start := time.Now()
	if rows := fetchCursor(t, w, 1, sel, limit/2); rows != n {
		t.Fatalf("the slowly fetched cursor gave %d rows, want %d", rows, n)
	}
	if el := time.Since(start); el <= limit {
		t.Fatalf("the slow fetches took %v, not more than the limit %v: the test proves nothing", el, limit)
	}
}

// Attack: a client keeps a transaction open and sends a statement every
// StreamTxnTimeout/2, so that its stream is never idle for long enough to
// be expired: every other writer (pushes too) waited StreamBusyTimeout and
// failed with SQLITE_BUSY, for as long as the client went on. Once it has
// kept the writer for 2×StreamTxnTimeout and another stream waits, its
// transaction is rolled back; its next request says so.
func TestSecurityBusyTransactionYields(t *testing.T) {
	const txnTimeout = 300 * time.Millisecond
	for _, transport := range []string{"ws", "http"} {
		t.Run(transport, func(t *testing.T) {
			ts := newTestServer(t, Config{StreamTxnTimeout: txnTimeout, StreamBusyTimeout: 20 * time.Second})
			ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
			// exec runs sql on the holding stream and returns the error
			// code ("" if it succeeded).
			var exec func(sql string) string
			if transport == "ws" {
				w := helloWS(t, ts)
				w.req(map[string]any{"type": "open_stream", "stream_id": 1})
				exec = func(sql string) string {
					m := w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(sql)})
					if m["type"] != "response_ok" && errCode(m) == "" {
						t.Fatalf("%s: %v", sql, m)
					}
					return errCode(m)
				}
			} else {
				s := ts.stream(t, "", "/v3/pipeline")
				exec = func(sql string) string {
					status, res, out := s.send(execReq(sql))
					if status != http.StatusOK {
						var e hrana.Error
						json.Unmarshal(out, &e)
						if e.Code == "" {
							t.Fatalf("%s: %d %s", sql, status, out)
						}
						s.baton = nil // the stream is gone
						return e.Code
					}
					if res[0].Type != hrana.ResultOK {
						return res[0].Error.Code
					}
					return ""
				}
			}
			if c := exec("BEGIN IMMEDIATE"); c != "" {
				t.Fatalf("BEGIN: %s", c)
			}
			// Another writer, as a push would be.
			type outcome struct {
				status int
				body   string
				took   time.Duration
			}
			pushed := make(chan outcome, 1)
			start := time.Now()
			go func() {
				body, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{execReq("INSERT INTO t VALUES(1000)")}})
				resp, err := http.Post(ts.url+"/v3/pipeline", "application/json", bytes.NewReader(body))
				if err != nil {
					pushed <- outcome{body: err.Error()}
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				pushed <- outcome{resp.StatusCode, string(out), time.Since(start)}
			}()
			var code string
			var push *outcome
			for i := 1; code == "" && time.Since(start) < 15*time.Second; i++ {
				time.Sleep(txnTimeout / 2)
				code = exec(fmt.Sprintf("INSERT INTO t VALUES(%d)", i))
				select {
				case o := <-pushed:
					push = &o
				default:
				}
			}
			if push == nil {
				o := <-pushed
				push = &o
			}
			if push.status != http.StatusOK || strings.Contains(push.body, `"type":"error"`) {
				t.Fatalf("the other writer: %d %s", push.status, push.body)
			}
			if push.took > 2*txnTimeout+3*time.Second {
				t.Fatalf("the other writer waited %v for a busy transaction (2×StreamTxnTimeout = %v)", push.took, 2*txnTimeout)
			}
			want := map[string]string{"ws": "TRANSACTION_TIMEOUT", "http": "STREAM_EXPIRED"}[transport]
			if code != want {
				t.Fatalf("the busy transaction's later statement: %q, want %s", code, want)
			}
			if got := fmtRows(ts.query(t, "", "SELECT count(*) FROM t WHERE id < 1000")); got != "0\n" {
				t.Fatalf("%s rows of the rolled-back transaction are there", got)
			}
			if got := count(t, ts, "", "t"); got != "1\n" {
				t.Fatalf("rows: %s, want the other writer's alone", got)
			}
		})
	}
}

// cursorBatch runs a /v3/cursor request with a batch of unconditional
// steps on baton's stream; it returns the header's baton and the entries.
func cursorBatch(t *testing.T, ts *testServer, baton *string, sqls ...string) (*string, []hrana.CursorEntry) {
	t.Helper()
	var steps []hrana.BatchStep
	for _, q := range sqls {
		steps = append(steps, hrana.BatchStep{Stmt: hrana.Stmt{SQL: &q}})
	}
	body, _ := json.Marshal(hrana.CursorReqBody{Baton: baton, Batch: hrana.Batch{Steps: steps}})
	status, out := post(t, ts.url+"/v3/cursor", "application/json", "", body)
	if status != http.StatusOK {
		t.Fatalf("cursor: %d %s", status, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var head hrana.CursorRespBody
	if err := json.Unmarshal([]byte(lines[0]), &head); err != nil || head.Baton == nil {
		t.Fatalf("cursor header %q: %v", lines[0], err)
	}
	var entries []hrana.CursorEntry
	for _, l := range lines[1:] {
		var e hrana.CursorEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("entry %q: %v", l, err)
		}
		entries = append(entries, e)
	}
	return head.Baton, entries
}

// Attack (atomicity): a cursor interrupted by StatementTimeout inside an
// explicit transaction left the transaction open with the steps before
// the interrupted one in it, and the stream went on: the client's later
// COMMIT on the same stream committed half of its batch. The interrupted
// step's error now says that the transaction was rolled back, and the
// stream's next request fails rather than run in autocommit.
func TestSecurityInterruptedCursorRollsBack(t *testing.T) {
	ts := newTestServer(t, Config{StatementTimeout: 300 * time.Millisecond})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	s := ts.stream(t, "", "/v3/pipeline")
	s.do("BEGIN")
	baton, entries := cursorBatch(t, ts, s.baton, "INSERT INTO t VALUES(1)", runaway, "INSERT INTO t VALUES(2)")
	s.baton = baton
	var interrupted *hrana.Error
	for _, e := range entries {
		if e.Type == hrana.EntryStepError && e.Step == 1 {
			interrupted = e.Error
		}
	}
	if interrupted == nil || interrupted.Code != "SQLITE_INTERRUPT" || !strings.Contains(interrupted.Message, "rolled back") {
		t.Fatalf("the interrupted step's error: %+v, want SQLITE_INTERRUPT saying the transaction was rolled back (entries %+v)", interrupted, entries)
	}
	// The client goes on as if its transaction were open.
	status, res, out := s.send(execReq("INSERT INTO t VALUES(3)"), execReq("COMMIT"))
	if status == http.StatusOK && res[0].Type == hrana.ResultOK {
		t.Errorf("the stream's next request ran after its transaction was interrupted: %s", out)
	}
	if got := count(t, ts, "", "t"); got != "0\n" {
		t.Fatalf("%s rows committed of an interrupted transaction", got)
	}
}

// A write with RETURNING that is interrupted after its write (its cursor
// closed while it waits for fetches, its client gone) changes nothing, in
// autocommit mode and inside a transaction (which is then rolled back as
// a whole): the client was told it failed.
func TestSecurityInterruptedReturningWritesNothing(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	w := helloWS(t, ts)
	exec := func(sql string) map[string]any {
		return w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(sql)})
	}
	w.req(map[string]any{"type": "open_stream", "stream_id": 1})
	const n = 4 * wsCursorCapacity
	insert := fmt.Sprintf("INSERT INTO t SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 10 UNION ALL SELECT x+1 FROM c LIMIT %d) SELECT x FROM c) RETURNING id", n)
	for i, inTx := range []bool{false, true} {
		if inTx {
			for _, q := range []string{"BEGIN", "INSERT INTO t VALUES(1)"} {
				if m := exec(q); m["type"] != "response_ok" {
					t.Fatalf("%s: %v", q, m)
				}
			}
		}
		id := i + 1
		if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": id, "batch": map[string]any{"steps": []any{map[string]any{"stmt": stmt(insert)}}}}); m["type"] != "response_ok" {
			t.Fatalf("open_cursor: %v", m)
		}
		// The write is done once a row comes; the batch then waits for
		// fetches (it returns more rows than the cursor buffers).
		if m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": id, "max_count": 2}); m["type"] != "response_ok" {
			t.Fatalf("fetch_cursor: %v", m)
		}
		w.req(map[string]any{"type": "close_cursor", "cursor_id": id})
		if inTx {
			// The stream's next request learns that its transaction is gone.
			if m := exec("COMMIT"); m["type"] == "response_ok" {
				t.Fatalf("COMMIT after an interrupted write in the transaction succeeded")
			}
		}
		// Another writer waits until the stream let the writer go.
		ts.exec(t, "", fmt.Sprintf("INSERT INTO t VALUES(%d)", 100000+i))
		if got := fmtRows(ts.query(t, "", "SELECT count(*) FROM t WHERE id < 100000")); got != "0\n" {
			t.Fatalf("in a transaction %v: %s rows of an interrupted write (or of its transaction) stand", inTx, got)
		}
	}
}

// Reader connections that cannot be set up: a read-only request falls
// back to the writer (it would run there anyway with every reader busy)
// and the failure is logged, a cursor fails with it (logged too); a
// read-only token can write through neither path, nor over a WebSocket.
func TestSecurityReaderFailure(t *testing.T) {
	var log lockedBuffer
	ts := newTestServer(t, Config{AuthTokens: []string{"w"}, ReadTokens: []string{"r"}, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ts.token = "w"
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	d.readers.Close() // every reader connection's setup fails from now on
	if got := count(t, ts, "", "t"); got != "0\n" {
		t.Fatalf("count: %q", got)
	}
	if !strings.Contains(log.String(), "reader connection") {
		t.Errorf("a read fell back to the writer without a word in the log:\n%s", log.String())
	}
	sql := "SELECT count(*) FROM t"
	body, _ := json.Marshal(hrana.CursorReqBody{Batch: hrana.Batch{Steps: []hrana.BatchStep{{Stmt: hrana.Stmt{SQL: &sql}}}}})
	before := strings.Count(log.String(), "\n")
	if status, out := post(t, ts.url+"/v3/cursor", "application/json", "w", body); status != http.StatusOK || !strings.Contains(string(out), `"type":"error"`) {
		t.Fatalf("a cursor without reader connections: %d %s", status, out)
	}
	if strings.Count(log.String(), "\n") == before {
		t.Errorf("a cursor failed for want of a reader connection without a word in the log:\n%s", log.String())
	}

	// The read-only token.
	insert := "INSERT INTO t VALUES(1)"
	for _, path := range []string{"/v2/pipeline", "/v3/pipeline"} {
		body, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{execReq(insert), execReq(sql)}})
		if status, out := post(t, ts.url+path, "application/json", "r", body); status != http.StatusForbidden {
			t.Errorf("%s with a read-only token: %d %s", path, status, out)
		}
	}
	body, _ = json.Marshal(hrana.CursorReqBody{Batch: hrana.Batch{Steps: []hrana.BatchStep{{Stmt: hrana.Stmt{SQL: &insert}}, {Stmt: hrana.Stmt{SQL: &sql}}}}})
	if status, out := post(t, ts.url+"/v3/cursor", "application/json", "r", body); status != http.StatusForbidden {
		t.Errorf("/v3/cursor with a read-only token: %d %s", status, out)
	}
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello", "jwt": "r"})
	if m := w.read(); m["type"] != "hello_error" {
		t.Errorf("WebSocket hello with a read-only token: %v", m)
	}
	if got := count(t, ts, "", "t"); got != "0\n" {
		t.Fatalf("the read-only token wrote: count %q", got)
	}
}

// A runClock paused after it had run its whole limit, but before its timer
// fired (Stop returned true, nothing left), must still end the context once
// resumed: it stayed unbounded (the timer was not reset for left ≤ 0).
func TestRunClockResumeAtLimit(t *testing.T) {
	c := &runClock{}
	ctx, cancel := c.start(context.Background(), time.Hour)
	defer cancel()
	c.resumed = time.Now().Add(-2 * time.Hour) // it has run for longer than its limit
	c.pause()
	c.resume()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a clock resumed with nothing left did not end its context")
	}
	if context.Cause(ctx) != context.DeadlineExceeded {
		t.Fatalf("cause %v, want DeadlineExceeded", context.Cause(ctx))
	}
}

// A client that closes a read cursor early inside its transaction (it had
// the rows it wanted) keeps its transaction, as with sqld: the cancel is
// the client's, and the read wrote nothing. It was rolled back as an
// interrupt.
func TestSecurityEarlyCursorCloseKeepsTx(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	w := helloWS(t, ts)
	exec := func(sql string) map[string]any {
		return w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(sql)})
	}
	w.req(map[string]any{"type": "open_stream", "stream_id": 1})
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES(1)"} {
		if m := exec(q); m["type"] != "response_ok" {
			t.Fatalf("%s: %v", q, m)
		}
	}
	sel := fmt.Sprintf("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT %d) SELECT x FROM c", 4*wsCursorCapacity)
	if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": 1, "batch": map[string]any{"steps": []any{map[string]any{"stmt": stmt(sel)}}}}); m["type"] != "response_ok" {
		t.Fatal(m)
	}
	if m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": 1, "max_count": 2}); m["type"] != "response_ok" {
		t.Fatal(m)
	}
	if m := w.req(map[string]any{"type": "close_cursor", "cursor_id": 1}); m["type"] != "response_ok" {
		t.Fatal(m)
	}
	if m := exec("INSERT INTO t VALUES(2)"); m["type"] != "response_ok" {
		t.Fatalf("INSERT after closing a read cursor early: %v", m)
	}
	if m := exec("COMMIT"); m["type"] != "response_ok" {
		t.Fatalf("COMMIT after closing a read cursor early: %v", m)
	}
	if got := count(t, ts, "", "t"); got != "2\n" {
		t.Fatalf("rows %q, want 2: the transaction was lost", got)
	}
}
