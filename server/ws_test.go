package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/syncdb/syncdb/wire/hranapb"
	"google.golang.org/protobuf/proto"
)

type wsClient struct {
	t  *testing.T
	c  *websocket.Conn
	id int32
}

func dialWS(t *testing.T, url string, protos ...string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1), &websocket.DialOptions{Subprotocols: protos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

func (w *wsClient) write(m any) {
	w.t.Helper()
	b, _ := json.Marshal(m)
	if err := w.c.Write(w.t.Context(), websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsClient) read() map[string]any {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 20*time.Second)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// req sends a request and returns the response message (requests are
// answered in order here: one at a time).
func (w *wsClient) req(r map[string]any) map[string]any {
	w.t.Helper()
	w.id++
	w.write(map[string]any{"type": "request", "request_id": w.id, "request": r})
	m := w.read()
	if m["request_id"] != float64(w.id) {
		w.t.Fatalf("response to %d: %v", w.id, m)
	}
	return m
}

func stmt(sql string) map[string]any { return map[string]any{"sql": sql} }

func TestWebSocket(t *testing.T) {
	ts := newTestServer(t, Config{AuthTokens: []string{"tok"}})
	// A wrong token gets hello_error.
	bad := dialWS(t, ts.url, "hrana2")
	bad.write(map[string]any{"type": "hello", "jwt": "nope"})
	if m := bad.read(); m["type"] != "hello_error" {
		t.Fatalf("bad token: %v", m)
	}

	w := dialWS(t, ts.url+"/db/wsdb", "hrana3", "hrana2")
	if w.c.Subprotocol() != "hrana3" {
		t.Fatalf("subprotocol %q", w.c.Subprotocol())
	}
	w.write(map[string]any{"type": "hello", "jwt": "tok"})
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
	ok(w.req(map[string]any{"type": "open_stream", "stream_id": 1}))
	ok(w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("CREATE TABLE t(id INTEGER PRIMARY KEY)")}))
	ok(w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("BEGIN")}))
	ok(w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("INSERT INTO t VALUES(1)")}))
	if r := ok(w.req(map[string]any{"type": "get_autocommit", "stream_id": 1})); r["is_autocommit"] != false {
		t.Fatalf("get_autocommit in a transaction: %v", r)
	}
	// Nothing is visible over HTTP until COMMIT (a pull-free check: the
	// HTTP read would wait for the writer, so look at the revision).
	d, _ := ts.database(t.Context(), "wsdb", false)
	before := d.hist.Latest().Seq
	ok(w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("COMMIT")}))
	if d.hist.Latest().Seq != before+1 {
		t.Fatalf("the commit made %d revisions", d.hist.Latest().Seq-before)
	}
	// Stored SQL is the connection's; a cursor streams a batch.
	ok(w.req(map[string]any{"type": "store_sql", "sql_id": 5, "sql": "SELECT id FROM t"}))
	ok(w.req(map[string]any{"type": "open_stream", "stream_id": 2}))
	ok(w.req(map[string]any{"type": "open_cursor", "stream_id": 2, "cursor_id": 9, "batch": map[string]any{"steps": []any{
		map[string]any{"stmt": map[string]any{"sql_id": 5}},
		map[string]any{"stmt": stmt("INSERT INTO t VALUES(1)")},
	}}}))
	var types []string
	for done := false; !done; {
		r := ok(w.req(map[string]any{"type": "fetch_cursor", "cursor_id": 9, "max_count": 2}))
		done = r["done"] == true
		for _, e := range r["entries"].([]any) {
			types = append(types, e.(map[string]any)["type"].(string))
		}
	}
	if got := strings.Join(types, ","); got != "step_begin,row,step_end,step_begin,step_error" {
		t.Fatalf("cursor entries: %s", got)
	}
	ok(w.req(map[string]any{"type": "close_cursor", "cursor_id": 9}))
	if m := w.req(map[string]any{"type": "execute", "stream_id": 3, "stmt": stmt("SELECT 1")}); m["type"] != "response_error" {
		t.Fatalf("unknown stream: %v", m)
	}
	// A transaction left open when the connection drops is rolled back.
	ok(w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("BEGIN")}))
	ok(w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("INSERT INTO t VALUES(2)")}))
	w.c.Close(websocket.StatusNormalClosure, "")
	resp := ts.pipeline(t, "wsdb", "tok", execReq("SELECT id FROM t"))
	if got := fmtRows(resp.Results[0].Response.StmtResult.Rows); got != "1\n" {
		t.Fatalf("rows: %q", got)
	}
}

// hrana3-protobuf: the same requests in binary frames.
func TestWebSocketProtobuf(t *testing.T) {
	ts := newTestServer(t, Config{})
	w := dialWS(t, ts.url, "hrana3-protobuf")
	if w.c.Subprotocol() != "hrana3-protobuf" {
		t.Fatalf("subprotocol %q", w.c.Subprotocol())
	}
	send := func(m *hranapb.ClientMsg) *hranapb.ServerMsg {
		t.Helper()
		b, _ := proto.Marshal(m)
		if err := w.c.Write(t.Context(), websocket.MessageBinary, b); err != nil {
			t.Fatal(err)
		}
		typ, data, err := w.c.Read(t.Context())
		var out hranapb.ServerMsg
		if err != nil || typ != websocket.MessageBinary || proto.Unmarshal(data, &out) != nil {
			t.Fatalf("read: %v %v", typ, err)
		}
		return &out
	}
	req := func(id int32, set func(*hranapb.RequestMsg)) *hranapb.ResponseOkMsg {
		t.Helper()
		m := &hranapb.RequestMsg{RequestId: id}
		set(m)
		out := send(&hranapb.ClientMsg{Msg: &hranapb.ClientMsg_Request{Request: m}})
		ok := out.GetResponseOk()
		if ok == nil || ok.GetRequestId() != id {
			t.Fatalf("request %d: %v", id, out)
		}
		return ok
	}
	if send(&hranapb.ClientMsg{Msg: &hranapb.ClientMsg_Hello{Hello: &hranapb.HelloMsg{}}}).GetHelloOk() == nil {
		t.Fatal("no hello_ok")
	}
	sql := func(s string) *hranapb.Stmt { return &hranapb.Stmt{Sql: &s} }
	req(1, func(m *hranapb.RequestMsg) {
		m.Request = &hranapb.RequestMsg_OpenStream{OpenStream: &hranapb.WsOpenStreamReq{StreamId: 1}}
	})
	req(2, func(m *hranapb.RequestMsg) {
		m.Request = &hranapb.RequestMsg_Execute{Execute: &hranapb.WsExecuteReq{StreamId: 1, Stmt: sql("BEGIN")}}
	})
	if req(3, func(m *hranapb.RequestMsg) {
		m.Request = &hranapb.RequestMsg_GetAutocommit{GetAutocommit: &hranapb.WsGetAutocommitReq{StreamId: 1}}
	}).GetGetAutocommit().GetIsAutocommit() {
		t.Fatal("autocommit inside BEGIN")
	}
	res := req(4, func(m *hranapb.RequestMsg) {
		m.Request = &hranapb.RequestMsg_Execute{Execute: &hranapb.WsExecuteReq{StreamId: 1, Stmt: sql("SELECT 7, -3")}}
	}).GetExecute().GetResult()
	if v := res.GetRows()[0].GetValues(); v[0].GetInteger() != 7 || v[1].GetInteger() != -3 {
		t.Fatalf("row: %v", res)
	}
	req(5, func(m *hranapb.RequestMsg) {
		m.Request = &hranapb.RequestMsg_OpenCursor{OpenCursor: &hranapb.WsOpenCursorReq{StreamId: 1, CursorId: 1, Batch: &hranapb.Batch{Steps: []*hranapb.BatchStep{{Stmt: sql("SELECT 1 UNION ALL SELECT 2")}}}}}
	})
	f := req(6, func(m *hranapb.RequestMsg) {
		m.Request = &hranapb.RequestMsg_FetchCursor{FetchCursor: &hranapb.WsFetchCursorReq{CursorId: 1, MaxCount: 100}}
	}).GetFetchCursor()
	for !f.GetDone() {
		more := req(7, func(m *hranapb.RequestMsg) {
			m.Request = &hranapb.RequestMsg_FetchCursor{FetchCursor: &hranapb.WsFetchCursorReq{CursorId: 1, MaxCount: 100}}
		}).GetFetchCursor()
		f.Entries, f.Done = append(f.Entries, more.Entries...), more.Done
	}
	if len(f.Entries) != 4 || f.Entries[1].GetRow() == nil || f.Entries[3].GetStepEnd() == nil {
		t.Fatalf("cursor entries: %v", f.Entries)
	}
}

// A WebSocket stream's transaction that stays idle for StreamTxnTimeout is
// rolled back when another stream needs the writer, as an HTTP stream's
// is; its next request fails with TRANSACTION_TIMEOUT and the ones after
// run in autocommit.
func TestWebSocketIdleTransactionYields(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: 200 * time.Millisecond, StreamBusyTimeout: 20 * time.Second})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	exec := func(sql string) map[string]any {
		return w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt(sql)})
	}
	w.req(map[string]any{"type": "open_stream", "stream_id": 1})
	for _, q := range []string{"BEGIN", "INSERT INTO t VALUES(1)"} {
		if m := exec(q); m["type"] != "response_ok" {
			t.Fatalf("%s: %v", q, m)
		}
	}
	// The transaction is abandoned; another writer gets the writer once
	// it has been idle for StreamTxnTimeout (not after StreamBusyTimeout,
	// with SQLITE_BUSY).
	ts.exec(t, "", "INSERT INTO t VALUES(2)")
	m := exec("INSERT INTO t VALUES(3)")
	if e, _ := m["error"].(map[string]any); m["type"] != "response_error" || e["code"] != "TRANSACTION_TIMEOUT" {
		t.Fatalf("the next request of the rolled-back stream: %v, want TRANSACTION_TIMEOUT", m)
	}
	// Its requests fail until the client ends the transaction (see
	// TestSecurityWSAbortedTransaction).
	if m := exec("ROLLBACK"); m["type"] != "response_ok" {
		t.Fatalf("ROLLBACK after the timeout: %v", m)
	}
	if m := exec("INSERT INTO t VALUES(4)"); m["type"] != "response_ok" {
		t.Fatalf("after the timeout: %v", m)
	}
	if got := fmtRows(ts.query(t, "", "SELECT id FROM t ORDER BY id")); got != "2\n4\n" {
		t.Fatalf("rows %q, want 2 and 4 (1 rolled back, 3 refused)", got)
	}
}
