package server

// The bounds of the waits for a reader connection (readerConn), and how
// their failures reach clients: hostile clients hold reader slots and the
// writer for as long as they like, and nobody else may wait for them
// without a bound.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// holdCursorSlots takes every slot cursors may hold, as stalled cursors
// do; the returned func gives them back.
func holdCursorSlots(d *database) func() {
	for range cursorReaders {
		d.cursorSlots <- struct{}{}
	}
	return func() {
		for range cursorReaders {
			<-d.cursorSlots
		}
	}
}

// httpCursor runs a /v3/cursor request with one statement on baton's
// stream; it returns the header's baton and the entries.
func httpCursor(t *testing.T, ts *testServer, baton *string, sql string) (*string, []hrana.CursorEntry) {
	t.Helper()
	body, _ := json.Marshal(hrana.CursorReqBody{Baton: baton, Batch: hrana.Batch{Steps: []hrana.BatchStep{{Stmt: hrana.Stmt{SQL: &sql}}}}})
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
	var entries []hrana.CursorEntry
	for sc.Scan() {
		var e hrana.CursorEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("entry %q: %v", sc.Bytes(), err)
		}
		entries = append(entries, e)
	}
	return head.Baton, entries
}

// cursorRows counts the row entries and fails on an error entry.
func cursorRows(t *testing.T, entries []hrana.CursorEntry) int {
	t.Helper()
	rows := 0
	for _, e := range entries {
		switch e.Type {
		case hrana.EntryRow:
			rows++
		case hrana.EntryError, hrana.EntryStepError:
			t.Fatalf("cursor entry %s: %+v", e.Type, e.Error)
		}
	}
	return rows
}

// An HTTP cursor that finds no reader connection free within
// StreamBusyTimeout gets SQLITE_BUSY as its batch's error, as a busy
// statement does on sqld; its stream (the baton of the cursor's header)
// goes on. It used to end the stream, so that the baton the client had
// just been given was refused.
func TestHTTPCursorBusyKeepsStream(t *testing.T) {
	ts := newTestServer(t, Config{StreamBusyTimeout: 300 * time.Millisecond})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES(1), (2), (3)")
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	give := holdCursorSlots(d)
	baton, entries := httpCursor(t, ts, nil, "SELECT id FROM t")
	if len(entries) != 1 || entries[0].Type != hrana.EntryError || entries[0].Error == nil || entries[0].Error.Code != "SQLITE_BUSY" {
		t.Fatalf("a cursor with every cursor slot held: %+v, want one error entry with SQLITE_BUSY", entries)
	}
	give()
	s := &hstream{t: t, url: ts.url, path: "/v3/pipeline", baton: baton}
	if got := fmtRows(s.do("SELECT count(*) FROM t")[0].Rows); got != "3\n" {
		t.Fatalf("the stream after a busy cursor: %q", got)
	}
	if _, entries = httpCursor(t, ts, s.baton, "SELECT id FROM t"); cursorRows(t, entries) != 3 {
		t.Fatalf("a cursor on the stream once the slots are free: %+v", entries)
	}
}

// A cursor's wait for a reader connection has its own bound
// (StreamBusyTimeout): its statements get the whole StatementTimeout from
// when they have the connection. Here the cursor waits longer than
// StatementTimeout for a slot, within StreamBusyTimeout, and then runs.
// With one budget for both, the wait used the statement's time up.
func TestCursorWaitOutsideStatementTimeout(t *testing.T) {
	const stmtTimeout = 500 * time.Millisecond
	ts := newTestServer(t, Config{StatementTimeout: stmtTimeout, StreamBusyTimeout: 20 * time.Second})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES(1), (2)")
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	give := holdCursorSlots(d)
	time.AfterFunc(3*stmtTimeout, give)
	start := time.Now()
	_, entries := httpCursor(t, ts, nil, "SELECT id FROM t")
	if waited := time.Since(start); waited < 3*stmtTimeout {
		t.Fatalf("the cursor ended after %v, before a slot came free: %+v", waited, entries)
	}
	if n := cursorRows(t, entries); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// Only a wait that ran out is "busy": a client that goes away while its
// cursor waits, or a database that closes meanwhile, is its own error
// (they all read as errCursorReader, SQLITE_BUSY, before).
func TestReaderWaitErrors(t *testing.T) {
	d := &database{stopped: make(chan struct{}), readSlots: make(chan struct{}, readerConns), bootSlots: make(chan struct{}, bootstrapReaders),
		cursorSlots: make(chan struct{}, cursorReaders), heldSlots: make(chan struct{}, heldReaders)}
	holdCursorSlots(d)
	for range bootstrapReaders {
		d.bootSlots <- struct{}{}
	}
	for _, use := range []readerUse{useCursor, useBootstrap} {
		if _, _, err := d.readerConn(t.Context(), nil, use, 50*time.Millisecond); !errors.Is(err, errReadersBusy) {
			t.Fatalf("%v: a wait that ran out: %v, want errReadersBusy", use, err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, _, err := d.readerConn(ctx, nil, use, time.Minute); !errors.Is(err, context.Canceled) || errors.Is(err, errReadersBusy) {
			t.Fatalf("%v: a wait whose client went away: %v, want context.Canceled only", use, err)
		}
	}
	time.AfterFunc(50*time.Millisecond, func() { close(d.stopped) })
	if _, _, err := d.readerConn(t.Context(), nil, useCursor, time.Minute); !errors.Is(err, errClosed) || errors.Is(err, errReadersBusy) {
		t.Fatalf("a wait on a database that closes: %v, want errClosed only", err)
	}

	// Through the cursor's path: a cancel is not SQLITE_BUSY.
	ts := newTestServer(t, Config{StreamBusyTimeout: time.Minute})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	rd, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	defer holdCursorSlots(rd)()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	var reserved int64
	_, err = ts.onReader(ctx, &hranaStream{d: rd, sqls: newSQLTexts()}, []string{"SELECT id FROM t"}, runOpts{cursor: true}, func(*executor) {}, &reserved)
	if !errors.Is(err, context.Canceled) || errors.Is(err, errCursorReader) || asHrana(err).Code == "SQLITE_BUSY" {
		t.Fatalf("a cursor whose client went away while it waited: %v (%+v), want context.Canceled, not busy", err, asHrana(err))
	}
}

// Attack: a WebSocket cursor that does not qualify for a reader (its
// stream has foreign_keys on) runs on the writer; its client never
// fetches, and the cursor held the writer for as long as the connection
// lasted: every write of the database failed with SQLITE_BUSY. Once it has
// waited for its client for StreamTxnTimeout while a write waits, it ends
// with an error and lets the writer go, however often its client fetches
// a few entries.
func TestSecurityStalledWriterCursorEnds(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: 300 * time.Millisecond, StreamBusyTimeout: 10 * time.Second})
	bigDatabase(t, ts, 4) // about 1000 rows: more than a cursor buffers
	ts.exec(t, "", "CREATE TABLE hw(client TEXT PRIMARY KEY, n INTEGER)")
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	for _, r := range []map[string]any{
		{"type": "open_stream", "stream_id": 1},
		{"type": "execute", "stream_id": 1, "stmt": stmt("PRAGMA foreign_keys = ON")},
		{"type": "open_cursor", "stream_id": 1, "cursor_id": 1, "batch": map[string]any{"steps": []any{map[string]any{"stmt": stmt("SELECT id, v FROM t")}}}},
	} {
		if m := w.req(r); m["type"] != "response_ok" {
			t.Fatalf("%v: %v", r, m)
		}
	}
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the cursor holds the writer", func() bool { return len(d.writer) == 1 })
	// The client fetches a few entries now and then, more often than
	// StreamTxnTimeout: that must not keep the writer either.
	w.c.SetReadLimit(64 << 20)
	var last map[string]any
	done := false
	fetch := func(n int) {
		m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": 1, "max_count": n})
		resp, _ := m["response"].(map[string]any)
		if m["type"] != "response_ok" || resp == nil {
			t.Errorf("fetch_cursor: %v", m)
			done = true
			return
		}
		done, _ = resp["done"].(bool)
		if es, _ := resp["entries"].([]any); len(es) > 0 {
			last, _ = es[len(es)-1].(map[string]any)
		}
	}
	stop, trickled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(trickled)
		for !done {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				fetch(2)
			}
		}
	}()
	time.Sleep(time.Second) // the cursor fills its buffer and waits for its client, again and again
	for i := range 3 {
		start := time.Now()
		ts.exec(t, "", "BEGIN IMMEDIATE", "INSERT INTO t(v) VALUES('pushed beside a stalled cursor')",
			fmt.Sprintf("INSERT INTO hw VALUES('c', %d) ON CONFLICT(client) DO UPDATE SET n = excluded.n", i), "COMMIT")
		if waited := time.Since(start); waited > 5*time.Second {
			t.Fatalf("push %d waited %v for a stalled cursor", i, waited)
		}
	}
	close(stop)
	<-trickled
	// The client finds what was buffered, then the cursor's error.
	for !done {
		fetch(1000)
	}
	if e, _ := last["error"].(map[string]any); last["type"] != "error" || e["code"] != "SQLITE_INTERRUPT" {
		t.Fatalf("the stalled cursor's last entry: %v, want an error with SQLITE_INTERRUPT", last)
	}
	// The stream goes on, with its foreign_keys.
	if m := w.req(map[string]any{"type": "execute", "stream_id": 1, "stmt": stmt("PRAGMA foreign_keys")}); m["type"] != "response_ok" {
		t.Fatalf("the stream after its cursor ended: %v", m)
	}
}

// Attack: bootstraps that never read their response hold every reader
// slot bootstraps may have, and the next bootstrap waited for one for as
// long as they stalled. It waits bootstrapReaderWait, then the history
// serves it.
func TestSecurityStalledBootstrapsLeaveBootstraps(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 10 * time.Minute, CheckpointFrames: 1 << 30, SnapshotCacheMinBytes: -1})
	bigDatabase(t, ts, 12)
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	for range bootstrapReaders {
		stalledPost(t, ts.url, "/pull-updates", nil)
	}
	testutil.Eventually(t, 60*time.Second, "stalled bootstraps hold every bootstrap slot", func() bool { return len(d.bootSlots) == bootstrapReaders })
	start := time.Now()
	type answer struct {
		p      *pulled
		status int
		msg    string
	}
	got := make(chan answer, 1)
	go func() {
		p, status, msg := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{})
		got <- answer{p, status, msg}
	}()
	var a answer
	select {
	case a = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("a bootstrap waited %v behind %d stalled ones", time.Since(start), bootstrapReaders)
	}
	if a.status != http.StatusOK {
		t.Fatalf("bootstrap beside stalled ones: %d %s", a.status, a.msg)
	}
	im := image{}
	im.apply(a.p)
	db := openImage(t, im.write(t, a.p.hdr.DbSize))
	integrityOK(t, db)
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || fmt.Sprint(n)+"\n" != count(t, ts, "", "t") {
		t.Fatalf("bootstrapped rows: %d %v, server has %s", n, err, count(t, ts, "", "t"))
	}
}

// Attack: bootstraps that never read their response, more than the
// readers' bootstrap slots, went on to the page history and held every
// one of its read connections; every incremental pull (and the revision
// check of every pull) then waited for one until IOTimeout. Bootstraps
// from the history have slots of their own (historyBootstraps); beyond
// them a bootstrap is told 503 with Retry-After, and incremental pulls
// find a history connection.
func TestSecurityStalledBootstrapsLeaveIncrementalPulls(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 10 * time.Minute, CheckpointFrames: 1 << 30, SnapshotCacheMinBytes: -1})
	bigDatabase(t, ts, 12)
	base := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: ts.revision(t, 1)}).hdr.ServerRevision
	ts.exec(t, "", "INSERT INTO t(v) VALUES('after base')")
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	const stalled = bootstrapReaders + 16 // 16: the SQLite history's read connections
	for range stalled {
		stalledPost(t, ts.url, "/pull-updates", nil)
	}
	testutil.Eventually(t, 60*time.Second, "stalled bootstraps stream from the readers and the history", func() bool {
		return ts.metricValue(t, "syncdb_pull_streams") >= bootstrapReaders+historyBootstraps
	})
	time.Sleep(3 * historyBootstrapWait) // the others wait for a slot, then for a history connection
	start := time.Now()
	got := make(chan int, 1)
	go func() {
		_, status, _ := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: base})
		got <- status
	}()
	select {
	case status := <-got:
		if status != http.StatusOK {
			t.Fatalf("incremental pull beside stalled bootstraps: %d", status)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("an incremental pull waited %v behind %d stalled bootstraps (%v streaming)", time.Since(start), stalled, ts.metricValue(t, "syncdb_pull_streams"))
	}
	if n := len(d.histBootSlots); n != historyBootstraps {
		t.Fatalf("%d bootstraps hold history slots, want %d", n, historyBootstraps)
	}
	// One more bootstrap is told to come back.
	resp, err := http.Post(ts.dbURL("")+"/pull-updates", "application/protobuf", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("bootstrap beyond the slots: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
