package server

// Resource exhaustion (issue 9): slow and stalled clients, huge selectors,
// huge values, unbounded databases. Bounds are generous: the tests must
// hold on a loaded 2-core machine, and they wait on conditions.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// bigDatabase fills t with about mb MiB of incompressible rows.
func bigDatabase(t *testing.T, ts *testServer, mb int) {
	t.Helper()
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
		INSERT INTO t(id, v) SELECT i, fast_randomblob(3500) FROM n`, mb*1024*1024/4000))
}

// stalledPost sends a request over a connection with a tiny receive buffer
// and never reads the answer.
func stalledPost(t *testing.T, base, path string, body []byte) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/protobuf\r\nContent-Length: %d\r\n\r\n", path, u.Host, len(body))
	conn.Write(body)
	return conn
}

func pullBody(t *testing.T, req *syncpb.PullUpdatesReqProtoBody) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Attack: pulls that never read their response block every write of the
// database (they held every history connection, which writes shared).
func TestSecurityStalledPullsDoNotBlockWrites(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 10 * time.Minute})
	bigDatabase(t, ts, 12)
	base := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: ts.revision(t, 1)}).hdr.ServerRevision
	const stalled = 24 // more than the history's read connections
	for range stalled {
		stalledPost(t, ts.url, "/pull-updates", pullBody(t, &syncpb.PullUpdatesReqProtoBody{ClientRevision: base}))
	}
	// 16 stream (the history's read connections), the others wait for one.
	testutil.Eventually(t, 60*time.Second, "stalled pulls streaming", func() bool { return ts.metricValue(t, "syncdb_pull_streams") >= 16 })
	time.Sleep(500 * time.Millisecond) // their socket buffers fill
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.exec(t, "", "INSERT INTO t(v) VALUES('written while pulls stall')")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("a one-row write waited %v for stalled pulls", time.Since(start))
	}
}

// Attack: stalled bootstraps held every reader connection, and a read-only
// request waited for one in the pool behind them: a push's high-water read
// (the protocol-level push: a read, then a write transaction) waited out
// its StatementTimeout (bench §7, with 100 stalled pulls). Stalled pulls of
// both kinds, more bootstraps than there are reader connections, held open
// while pushes run: each push finishes within a bound.
func TestSecurityStalledPullsDoNotBlockPushes(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 10 * time.Minute, StatementTimeout: 15 * time.Second, CheckpointFrames: 1 << 30, SnapshotCacheMinBytes: -1})
	bigDatabase(t, ts, 12)
	ts.exec(t, "", "CREATE TABLE hw(client TEXT PRIMARY KEY, n INTEGER)")
	base := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	// Incremental pulls of a few MiB, which stall too.
	ts.exec(t, "", "UPDATE t SET v = fast_randomblob(3500) WHERE id % 7 = 0")
	const stalled = 2 * readerConns // of each kind
	for range stalled {
		stalledPost(t, ts.url, "/pull-updates", nil)
		stalledPost(t, ts.url, "/pull-updates", pullBody(t, &syncpb.PullUpdatesReqProtoBody{ClientRevision: base}))
	}
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	// (syncdb_pull_streams counts the incremental pulls too.)
	for deadline := time.Now().Add(60 * time.Second); len(d.bootSlots) != bootstrapReaders || len(d.readSlots) != bootstrapReaders; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stalled bootstraps hold %d reader connections (%d held in all, %v pulls streaming), want %d",
				len(d.bootSlots), len(d.readSlots), ts.metricValue(t, "syncdb_pull_streams"), bootstrapReaders)
		}
	}
	time.Sleep(500 * time.Millisecond) // their socket buffers fill
	for i := range 20 {
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			ts.query(t, "", "SELECT n FROM hw WHERE client = 'c'")
			ts.exec(t, "", "BEGIN IMMEDIATE", "INSERT INTO t(v) VALUES('pushed while pulls stall')",
				fmt.Sprintf("INSERT INTO hw VALUES('c', %d) ON CONFLICT(client) DO UPDATE SET n = excluded.n", i), "COMMIT")
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("push %d waited %v for stalled pulls (%v streaming)", i, time.Since(start), ts.metricValue(t, "syncdb_pull_streams"))
		}
	}
	// The bootstraps leave read-only requests reader connections: one
	// reads while a transaction keeps the writer.
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	readsBesideTxn(t, ts, w, 1)
	if len(d.bootSlots) != bootstrapReaders {
		t.Fatalf("%d bootstraps hold reader connections, want %d", len(d.bootSlots), bootstrapReaders)
	}
}

// Attack: read-only cursors whose clients never fetch hold their reader
// connections (a WebSocket cursor waits for fetch_cursor, with no
// timeout). Once they held every reader connection for read-only
// requests, the next read-only cursor ran on the writer and held it for as
// long as its client stalled: every write failed with SQLITE_BUSY after
// StreamBusyTimeout. A cursor waits for a reader connection instead, and
// pushes (a read-only request, then a write transaction) still commit.
func TestSecurityStalledCursorsDoNotBlockPushes(t *testing.T) {
	ts := newTestServer(t, Config{StatementTimeout: 15 * time.Second})
	bigDatabase(t, ts, 4) // about 1000 rows: more than a cursor buffers
	ts.exec(t, "", "CREATE TABLE hw(client TEXT PRIMARY KEY, n INTEGER)")
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	// More cursors than there are reader connections, none fetched.
	const cursors = readerConns + 1
	for i := 1; i <= cursors; i++ {
		if m := w.req(map[string]any{"type": "open_stream", "stream_id": i}); m["type"] != "response_ok" {
			t.Fatalf("open_stream %d: %v", i, m)
		}
		if m := w.req(map[string]any{"type": "open_cursor", "stream_id": i, "cursor_id": i, "batch": map[string]any{"steps": []any{
			map[string]any{"stmt": stmt("SELECT id, v FROM t")},
		}}}); m["type"] != "response_ok" {
			t.Fatalf("open_cursor %d: %v", i, m)
		}
	}
	testutil.Eventually(t, 30*time.Second, "the cursors hold every reader connection they may have", func() bool {
		return len(d.cursorSlots) == cursorReaders && len(d.readSlots) == cursorReaders
	})
	time.Sleep(300 * time.Millisecond) // the others wait for one (or, before the fix, for the writer)
	for i := range 5 {
		// A checkpoint before each push (the WAL has frames since the
		// cursors' snapshot): it must not wait for the cursors' read
		// transactions while it holds the writer.
		start := time.Now()
		if err := d.checkpoint(t.Context()); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("checkpoint %d held the writer %v waiting for stalled cursors", i, took)
		}
		start = time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			ts.query(t, "", "SELECT n FROM hw WHERE client = 'c'")
			ts.exec(t, "", "BEGIN IMMEDIATE", "INSERT INTO t(v) VALUES('pushed while cursors stall')",
				fmt.Sprintf("INSERT INTO hw VALUES('c', %d) ON CONFLICT(client) DO UPDATE SET n = excluded.n", i), "COMMIT")
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("push %d waited %v for stalled cursors", i, time.Since(start))
		}
	}
	// With no bootstraps, read-only requests have the connections the
	// cursors leave: one reads while a transaction keeps the writer.
	readsBesideTxn(t, ts, w, 100)
	// The cursors end with their connection: every slot comes back.
	w.c.CloseNow()
	testutil.Eventually(t, 30*time.Second, "the cursors' reader connections given back", func() bool {
		return len(d.readSlots) == 0 && len(d.cursorSlots) == 0 && len(d.bootSlots) == 0
	})
	ts.query(t, "", "SELECT n FROM hw WHERE client = 'c'")
}

// readsBesideTxn opens a transaction on WebSocket stream id of w (which
// keeps the writer), then a read-only request over HTTP must be answered
// within 5 s from a reader connection (on the writer it would wait for the
// transaction), without the transaction's row; the transaction is rolled
// back.
func readsBesideTxn(t *testing.T, ts *testServer, w *wsClient, id int) {
	t.Helper()
	for _, r := range []map[string]any{
		{"type": "open_stream", "stream_id": id},
		{"type": "execute", "stream_id": id, "stmt": stmt("BEGIN IMMEDIATE")},
		{"type": "execute", "stream_id": id, "stmt": stmt("INSERT INTO hw VALUES('txn', 1)")},
	} {
		if m := w.req(r); m["type"] != "response_ok" {
			t.Fatalf("%v: %v", r, m)
		}
	}
	start := time.Now()
	done := make(chan int, 1)
	go func() { done <- len(ts.query(t, "", "SELECT n FROM hw WHERE client = 'txn'")) }()
	select {
	case n := <-done:
		if n != 0 {
			t.Fatalf("a read saw the open transaction's row")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("a read-only request waited %v for an open transaction: it found no reader connection", time.Since(start))
	}
	if m := w.req(map[string]any{"type": "execute", "stream_id": id, "stmt": stmt("ROLLBACK")}); m["type"] != "response_ok" {
		t.Fatalf("ROLLBACK: %v", m)
	}
}

// revision returns the revision string of seq on the default database.
func (ts *testServer) revision(t *testing.T, seq int64) string {
	t.Helper()
	d, err := ts.database(context.Background(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	return d.revision(seq)
}

// Attack: a client that stops reading holds what its pull holds forever
// (no write deadline), and a stalled bootstrap stops checkpoints, so the
// WAL grows without bound.
func TestSecurityStalledBootstrapIsDropped(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: time.Second, CheckpointFrames: 20, MaintenanceInterval: 50 * time.Millisecond, SnapshotCacheMinBytes: -1})
	bigDatabase(t, ts, 12)
	testutil.Eventually(t, 60*time.Second, "first checkpoint", func() bool { return ts.metricValue(t, "syncdb_checkpoints_total") >= 1 })
	stalledPost(t, ts.url, "/pull-updates", nil)
	testutil.Eventually(t, 60*time.Second, "the bootstrap streams", func() bool { return ts.metricValue(t, "syncdb_pull_streams") == 1 })
	before := ts.metricValue(t, "syncdb_checkpoints_total")
	for i := range 30 {
		ts.exec(t, "", fmt.Sprintf("INSERT INTO t(v) VALUES(randomblob(8000 + %d))", i))
	}
	testutil.Eventually(t, 60*time.Second, "a checkpoint with a stalled bootstrap", func() bool {
		return ts.metricValue(t, "syncdb_checkpoints_total") > before
	})
	testutil.Eventually(t, 60*time.Second, "the stalled bootstrap dropped", func() bool { return ts.metricValue(t, "syncdb_pull_streams") == 0 })
}

// A slow but steady reader is served, and does not postpone checkpoints:
// its bootstrap hands over to the history and stays one revision.
func TestSecuritySlowBootstrapDoesNotPostponeCheckpoints(t *testing.T) {
	ts := newTestServer(t, Config{CheckpointFrames: 20, MaintenanceInterval: 50 * time.Millisecond, SnapshotCacheMinBytes: -1})
	bigDatabase(t, ts, 8)
	testutil.Eventually(t, 60*time.Second, "first checkpoint", func() bool { return ts.metricValue(t, "syncdb_checkpoints_total") >= 1 })
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192) })
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	resp, err := client.Post(ts.url+"/pull-updates", "application/protobuf", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	slow := make([]byte, 16<<10)
	readSome := func() error {
		time.Sleep(10 * time.Millisecond)
		n, err := resp.Body.Read(slow)
		got.Write(slow[:n])
		return err
	}
	readSome()
	before := ts.metricValue(t, "syncdb_checkpoints_total")
	for i := range 30 {
		ts.exec(t, "", fmt.Sprintf("INSERT INTO t(v) VALUES(randomblob(8000 + %d))", i))
	}
	checkpointed := false
	for {
		// The checkpoints first: one seen before a look that finds the
		// response still streaming happened while it streamed.
		if !checkpointed && ts.metricValue(t, "syncdb_checkpoints_total") > before && ts.metricValue(t, "syncdb_pull_streams") == 1 {
			checkpointed = true
		}
		if err := readSome(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !checkpointed {
		t.Fatalf("no checkpoint while a slow bootstrap streamed (%d bytes)", got.Len())
	}
	p := decodePull(t, got.Bytes())
	im := image{}
	im.apply(p)
	db := openImage(t, im.write(t, p.hdr.DbSize))
	integrityOK(t, db)
	again := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: p.hdr.ServerRevision})
	for pg, data := range again.pages {
		if !bytes.Equal(data, p.pages[pg]) {
			t.Fatalf("page %d of the slow bootstrap differs from its revision", pg)
		}
	}
}

// Attack: a ~900 KB selector naming all 2^32 pages burned a core for
// minutes, after the client left too.
func TestSecurityBigSelector(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(1, 'x')")
	bm := roaring.New()
	bm.AddRange(0, 1<<32)
	bm.RunOptimize()
	sel, err := bm.ToBytes()
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) > 1<<20 {
		t.Fatalf("selector of %d bytes", len(sel))
	}
	start := time.Now()
	p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerPagesSelector: sel})
	if uint64(len(p.pages)) != p.hdr.DbSize {
		t.Fatalf("%d pages of %d", len(p.pages), p.hdr.DbSize)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("a selector of every page took %v", el)
	}
}

// Attack: SELECT zeroblob(1e9) took the server to 7 GB.
func TestSecurityHugeValues(t *testing.T) {
	ts := newTestServer(t, Config{MaxResponseBytes: 8 << 20})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, q := range []string{
		"SELECT zeroblob(1e9)", "SELECT randomblob(1e9)", "SELECT zeroblob(5e6), zeroblob(5e6)",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) SELECT zeroblob(1e6) FROM n",
		"INSERT INTO t(v) VALUES(zeroblob(1e8))",
	} {
		if msg := ts.stepErrors(t, "", "", q)[0]; msg == "" {
			t.Errorf("%s succeeded", q)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 256<<20 {
		t.Errorf("huge values allocated %d MiB", grew>>20)
	}
	// Values within the limit still work.
	if msg := ts.stepErrors(t, "", "", "INSERT INTO t(v) VALUES(zeroblob(1e6))", "SELECT v FROM t")[1]; msg != "" {
		t.Errorf("a 1 MB value: %s", msg)
	}
}

// Attack: a read token auto-created databases without limit, until the
// server ran out of file descriptors.
func TestSecurityDatabaseCreation(t *testing.T) {
	ts := newTestServer(t, Config{AuthTokens: []string{"rw"}, ReadTokens: []string{"ro"}, MaxDatabases: 3, IdleTimeout: 100 * time.Millisecond})
	for i := range 5 {
		if status, body := ts.pullAs(t, fmt.Sprintf("r%d", i), "ro", &syncpb.PullUpdatesReqProtoBody{}); status != http.StatusNotFound {
			t.Fatalf("a read token's pull of a new database: %d %s", status, body)
		}
	}
	if n := countDatabases(ts.dir); n != 0 {
		t.Fatalf("%d databases created by read tokens", n)
	}
	for i := range 3 {
		if status, body := ts.pullAs(t, fmt.Sprintf("w%d", i), "rw", &syncpb.PullUpdatesReqProtoBody{}); status != http.StatusOK {
			t.Fatalf("a full token's bootstrap of a new database: %d %s", status, body)
		}
	}
	if status, body := ts.pullAs(t, "w3", "rw", &syncpb.PullUpdatesReqProtoBody{}); status != http.StatusForbidden || !strings.Contains(string(body), "MaxDatabases") {
		t.Fatalf("a fourth database: %d %s", status, body)
	}
	// Idle databases are closed, and open again when used.
	testutil.Eventually(t, 30*time.Second, "idle databases closed", func() bool { return ts.metricValue(t, "syncdb_open_databases") == 0 })
	if status, _ := ts.pullAs(t, "w1", "ro", &syncpb.PullUpdatesReqProtoBody{}); status != http.StatusOK {
		t.Fatalf("a closed database reopens: %d", status)
	}
}

// Attack: request bodies had no read deadline: a client that sends half a
// body holds its request forever.
func TestSecurityStalledRequestBody(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 500 * time.Millisecond})
	for _, path := range []string{"/v2/pipeline", "/pull-updates"} {
		u, _ := url.Parse(ts.url)
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"req", path)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%s: no answer to a stalled body: %v", path, err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
}

// A database serves at most MaxRequestsPerDatabase requests at once.
func TestSecurityRequestsPerDatabase(t *testing.T) {
	ts := newTestServer(t, Config{MaxRequestsPerDatabase: 2, IOTimeout: 10 * time.Minute, SnapshotCacheMinBytes: -1})
	bigDatabase(t, ts, 8)
	for range 2 {
		stalledPost(t, ts.url, "/pull-updates", nil)
	}
	testutil.Eventually(t, 60*time.Second, "two stalled bootstraps", func() bool { return ts.metricValue(t, "syncdb_pull_streams") == 2 })
	status, body := ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{})
	if status != http.StatusServiceUnavailable {
		t.Fatalf("a third request: %d %s", status, body)
	}
	// Other databases are not affected.
	if status, _ := ts.pullAs(t, "other", "", &syncpb.PullUpdatesReqProtoBody{}); status != http.StatusOK {
		t.Fatalf("another database: %d", status)
	}
}

// Bootstraps and cursors stalled together hold at most heldReaders reader
// connections: read-only requests always find one of the others, and
// cursors leave bootstraps some. Taken through readerConn itself, as the
// stalled streams take them.
func TestReaderSlotsHeldTogether(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	var dones []func()
	defer func() {
		for _, done := range dones {
			done()
		}
	}()
	hold := func(use readerUse, n int) {
		for i := range n {
			conn, done, err := d.readerConn(t.Context(), d.readers, use, time.Minute)
			if err != nil {
				t.Fatalf("reader %d of %d for %v: %v", i+1, n, use, err)
			}
			conn.Close()
			dones = append(dones, done)
		}
	}
	hold(useBootstrap, readerConns-heldReaders)
	hold(useCursor, cursorReaders)
	// Every slot both kinds may hold is held: one more of either waits.
	for _, use := range []readerUse{useCursor, useBootstrap} {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		_, _, err := d.readerConn(ctx, d.readers, use, time.Minute)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a reader for %v beyond the cap of both: %v, want it to wait", use, err)
		}
	}
	if len(d.bootSlots) != readerConns-heldReaders || len(d.cursorSlots) != cursorReaders || len(d.heldSlots) != heldReaders {
		t.Fatalf("a wait that timed out kept a slot: boot %d cursor %d held %d", len(d.bootSlots), len(d.cursorSlots), len(d.heldSlots))
	}
	for i := range readerConns - heldReaders {
		conn, done, err := d.readerConn(t.Context(), d.readers, useRequest, 0)
		if err != nil {
			t.Fatalf("read-only request %d beside stalled bootstraps and cursors: %v", i+1, err)
		}
		conn.Close()
		dones = append(dones, done)
	}
	for _, done := range dones {
		done()
	}
	dones = nil
	if len(d.readSlots)+len(d.bootSlots)+len(d.cursorSlots)+len(d.heldSlots) != 0 {
		t.Fatalf("slots not given back: read %d boot %d cursor %d held %d", len(d.readSlots), len(d.bootSlots), len(d.cursorSlots), len(d.heldSlots))
	}
}

// Attack: a WebSocket cursor on a reader whose client never fetches keeps
// its read transaction, and with it the WAL, for ever: every checkpoint
// comes back busy and the WAL grows with every write. Once checkpoints
// have been held back for IOTimeout, the waiting cursor is ended and the
// next checkpoint empties the WAL.
func TestSecurityStalledCursorDoesNotHoldWAL(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 2 * time.Second, CheckpointFrames: 10, MaintenanceInterval: 100 * time.Millisecond})
	bigDatabase(t, ts, 4) // more rows than a cursor buffers
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	w := dialWS(t, ts.url, "hrana3")
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	if m := w.req(map[string]any{"type": "open_stream", "stream_id": 1}); m["type"] != "response_ok" {
		t.Fatalf("open_stream: %v", m)
	}
	if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": 1, "batch": map[string]any{"steps": []any{
		map[string]any{"stmt": stmt("SELECT id, v FROM t")},
	}}}); m["type"] != "response_ok" {
		t.Fatalf("open_cursor: %v", m)
	}
	testutil.Eventually(t, 30*time.Second, "the cursor holds a reader", func() bool { return len(d.cursorSlots) == 1 })
	before := ts.metricValue(t, "syncdb_checkpoints_total")
	ts.exec(t, "", "UPDATE t SET v = fast_randomblob(3500) WHERE id % 50 = 0") // frames after the cursor's snapshot
	testutil.Eventually(t, 30*time.Second, "a checkpoint empties the WAL despite the stalled cursor", func() bool {
		return ts.metricValue(t, "syncdb_checkpoints_total") > before
	})
	testutil.Eventually(t, 30*time.Second, "the ended cursor gives its reader back", func() bool { return len(d.cursorSlots) == 0 })
}
