package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb/wire/hrana"
)

// slowSQL is a read that counts to n (see calibrate).
func slowSQL(n int) string {
	return fmt.Sprintf("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT %d) SELECT count(*) FROM c", n)
}

// pushBody is a push-shaped batch: BEGIN IMMEDIATE, steps guarded by
// not(is_autocommit) and ok(prev), COMMIT.
func pushBody(sqls ...string) []byte {
	all := append([]string{"BEGIN IMMEDIATE"}, append(sqls, "COMMIT")...)
	var steps []hrana.BatchStep
	no := false
	for i, q := range all {
		q := q
		st := hrana.BatchStep{Stmt: hrana.Stmt{SQL: &q, WantRows: &no}}
		if i > 0 {
			st.Condition = &hrana.BatchCond{Type: hrana.CondAnd, Conds: []hrana.BatchCond{
				{Type: hrana.CondNot, Cond: &hrana.BatchCond{Type: hrana.CondIsAutocommit}},
				{Type: hrana.CondOK, Step: uint32(i - 1)}}}
		}
		steps = append(steps, st)
	}
	body, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: steps}}}})
	return body
}

// postResult is the answer to asyncPost.
type postResult struct {
	status int
	body   string
	took   time.Duration
}

// asyncPost posts body to url and sends the answer on the channel.
func asyncPost(url string, body []byte) chan postResult {
	ch := make(chan postResult, 1)
	start := time.Now()
	go func() {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			ch <- postResult{body: err.Error()}
			return
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- postResult{resp.StatusCode, string(out), time.Since(start)}
	}()
	return ch
}

// calibrate returns an n for which slowSQL(n) runs at least want here.
func calibrate(t *testing.T, ts *testServer, want time.Duration) int {
	n := 5000 // small: under -race on a busy machine 200000 took 25s
	for {
		start := time.Now()
		ts.query(t, "", slowSQL(n))
		el := time.Since(start)
		if el >= want {
			t.Logf("slowSQL(%d) takes %v", n, el)
			return n
		}
		n *= 2
	}
}

// wsPoisoned opens stream 1 on a new WebSocket, runs BEGIN and INSERT 1,
// then sends (pipelined, without waiting) the requests of sqls and
// returns the connection and their responses.
func wsPoisoned(t *testing.T, ts *testServer, before func(), sqls ...string) (*wsClient, []map[string]any) {
	t.Helper()
	w := helloWS(t, ts)
	w.req(map[string]any{"type": "open_stream", "stream_id": 1})
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES(1)"} {
		if m := w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(q)}); m["type"] != "response_ok" {
			t.Fatal(m)
		}
	}
	before()
	first := w.id + 1
	for i, q := range sqls {
		w.write(map[string]any{"type": "request", "request_id": first + int32(i), "request": map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(q)}})
	}
	w.id += int32(len(sqls))
	var out []map[string]any
	for range sqls {
		out = append(out, w.read())
	}
	return w, out
}

// Attack (half a transaction committed): after the server rolled a
// WebSocket stream's transaction back (an interrupted statement, a yield
// to a waiting writer, an idle expiry), only its next request failed, and
// the ones the client had already sent behind it ran in autocommit:
// BEGIN, INSERT 1, then pipelined [slow, INSERT 2, INSERT 3, COMMIT]
// committed row 3 alone. Every request now fails until the client ends
// the transaction; ROLLBACK is answered OK and the stream goes on.
func TestSecurityWSAbortedTransaction(t *testing.T) {
	for _, cause := range []string{"interrupt", "yield", "idle"} {
		t.Run(cause, func(t *testing.T) {
			cfg := Config{StatementTimeout: 300 * time.Millisecond}
			if cause != "interrupt" {
				cfg = Config{StreamTxnTimeout: 100 * time.Millisecond, StreamBusyTimeout: 20 * time.Second}
			}
			ts := newTestServer(t, cfg)
			ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
			sqls := []string{"INSERT INTO t VALUES(2)", "INSERT INTO t VALUES(3)", "COMMIT"}
			var other chan postResult
			before := func() {}
			switch cause {
			case "interrupt":
				sqls = append([]string{runaway}, sqls...)
			case "yield":
				sqls = append([]string{slowSQL(calibrate(t, ts, 700*time.Millisecond))}, sqls...)
				before = func() {
					other = asyncPost(ts.url+"/v2/pipeline", pushBody("INSERT INTO t VALUES(1000)"))
					time.Sleep(20 * time.Millisecond)
				}
			case "idle":
				before = func() {
					// It expires the idle stream's transaction.
					if o := <-asyncPost(ts.url+"/v2/pipeline", pushBody("INSERT INTO t VALUES(1000)")); o.status != 200 {
						t.Fatalf("the other writer: %d %s", o.status, o.body)
					}
				}
			}
			w, res := wsPoisoned(t, ts, before, sqls...)
			for i, m := range res {
				t.Logf("%.30s -> %v %v", sqls[i], m["type"], m["error"])
				// A yield rolls the transaction back once the slow
				// request has ended: that one has its answer.
				if m["type"] != "response_error" && (cause != "yield" || i > 0) {
					t.Errorf("%.30s after the transaction was rolled back: %v", sqls[i], m)
				}
			}
			if other != nil {
				if o := <-other; o.status != 200 {
					t.Fatalf("the other writer: %d %s", o.status, o.body)
				}
			}
			if rows := fmtRows(ts.query(t, "", "SELECT id FROM t WHERE id < 1000 ORDER BY id")); rows != "" {
				t.Fatalf("half of the client's transaction committed: %q (its COMMIT failed)", rows)
			}
			// COMMIT cleared the state: the stream runs in autocommit.
			if m := w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("INSERT INTO t VALUES(4)")}); m["type"] != "response_ok" {
				t.Fatalf("the stream after COMMIT: %v", m)
			}
			// Again, ended by ROLLBACK: answered OK, and the stream goes on.
			_, res = wsPoisoned(t, ts, func() {
				if cause == "idle" {
					<-asyncPost(ts.url+"/v2/pipeline", pushBody("INSERT INTO t VALUES(1001)"))
				}
				if cause == "yield" {
					other = asyncPost(ts.url+"/v2/pipeline", pushBody("INSERT INTO t VALUES(1001)"))
					time.Sleep(20 * time.Millisecond)
				}
			}, append(sqls[:len(sqls)-1:len(sqls)-1], "ROLLBACK")...)
			if other != nil {
				<-other
			}
			for i, m := range res[:len(res)-1] {
				if m["type"] != "response_error" && (cause != "yield" || i > 0) {
					t.Errorf("%.30s after the transaction was rolled back: %v", sqls[i], m)
				}
			}
			if m := res[len(res)-1]; m["type"] != "response_ok" {
				t.Fatalf("ROLLBACK after the server rolled the transaction back: %v", m)
			}
			if got := fmtRows(ts.query(t, "", "SELECT id FROM t WHERE id < 1000 ORDER BY id")); got != "4\n" {
				t.Fatalf("rows %q, want only 4", got)
			}
		})
	}
}

// A busy transaction told to yield to a waiting writer is left alone once
// that waiter gave up (SQLITE_BUSY at StreamBusyTimeout): the yield flag
// stayed set, and the holder was rolled back when its request ended, for
// nobody.
func TestSecurityYieldAfterWaiterLeft(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: 100 * time.Millisecond, StreamBusyTimeout: 300 * time.Millisecond})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	n := calibrate(t, ts, time.Second)
	s := ts.stream(t, "", "/v3/pipeline")
	s.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(1)")
	time.Sleep(250 * time.Millisecond) // it has had the writer for more than 2×StreamTxnTimeout
	other := asyncPost(ts.url+"/v2/pipeline", pushBody("INSERT INTO t VALUES(1000)"))
	s.do(slowSQL(n)) // busy while the other waits and gives up
	o := <-other
	if !strings.Contains(o.body, "SQLITE_BUSY") {
		t.Fatalf("the other writer: %d %s, want SQLITE_BUSY (the test proves nothing)", o.status, o.body)
	}
	st, res, out := s.send(execReq("COMMIT"))
	if st != 200 || len(res) != 1 || res[0].Type != hrana.ResultOK {
		t.Fatalf("the holder's COMMIT after the waiter left: %d %s", st, out)
	}
	if got := count(t, ts, "", "t"); got != "1\n" {
		t.Fatalf("rows %q, want 1", got)
	}
}
