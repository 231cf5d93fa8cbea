package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/syncdb/syncdb/internal/pgtest"
	"github.com/syncdb/syncdb/server/pgstore"

	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// lbClient talks to the cluster through its load balancer.
func (tc *testCluster) lbClient() *testServer { return &testServer{url: tc.lb.URL} }

// revSeq splits a revision string.
func revSeq(t *testing.T, rev string) (string, int64) {
	t.Helper()
	i := strings.LastIndexByte(rev, '-')
	seq, err := strconv.ParseInt(rev[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("revision %q", rev)
	}
	return rev[:i], seq
}

// sameEverywhere checks that every node serves byte-identical pages for
// every revision from first to the latest.
func (tc *testCluster) sameEverywhere(t *testing.T, db string, first int64) {
	t.Helper()
	latest := tc.nodes[0].pull(t, db, &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	id, last := revSeq(t, latest)
	for seq := first; seq <= last; seq++ {
		rev := fmt.Sprintf("%s-%d", id, seq)
		var want *pulled
		for i, n := range tc.nodes {
			p := n.pull(t, db, &syncpb.PullUpdatesReqProtoBody{ServerRevision: rev})
			if p.hdr.ServerRevision != rev {
				t.Fatalf("node %d served %s for %s", i, p.hdr.ServerRevision, rev)
			}
			if want == nil {
				want = p
				continue
			}
			if p.hdr.DbSize != want.hdr.DbSize || len(p.pages) != len(want.pages) {
				t.Fatalf("revision %s: node %d has %d pages of %d, node 0 %d of %d", rev, i, len(p.pages), p.hdr.DbSize, len(want.pages), want.hdr.DbSize)
			}
			for pg, data := range want.pages {
				if !bytes.Equal(p.pages[pg], data) {
					t.Fatalf("revision %s: page %d differs between node 0 and node %d", rev, pg, i)
				}
			}
		}
	}
}

// Pushes through the load balancer reach every node and are forwarded to
// one writer; every node serves every revision, byte for byte the same;
// a revision from one node is good for an incremental pull on another.
func TestClusterServesAnyRequestOnAnyNode(t *testing.T) {
	tc := newTestCluster(t, 3, nil)
	lb := tc.lbClient()
	lb.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	total := 0
	for i := range 30 {
		v := fmt.Sprintf("%d %s", i, strings.Repeat("x", 200*i))
		total += len(v)
		lb.exec(t, "", fmt.Sprintf("INSERT INTO t(v) VALUES ('%s')", v))
	}
	rows := lb.query(t, "", "SELECT count(*), sum(length(v)) FROM t")
	if got := fmtRows(rows); got != fmt.Sprintf("30|%d\n", total) {
		t.Fatalf("rows: %s", got)
	}
	for i := range tc.nodes {
		if c := tc.lb.Count(i); c == 0 {
			t.Fatalf("the load balancer sent nothing to node %d", i)
		}
	}
	forwarded := 0.0
	for _, n := range tc.nodes {
		forwarded += n.metricValue(t, "syncdb_forwarded_requests_total")
	}
	if forwarded < 10 {
		t.Fatalf("only %v requests forwarded to the writer", forwarded)
	}
	tc.sameEverywhere(t, "", 1)

	// A revision from node 0, an incremental pull on node 1 and 2.
	first := tc.nodes[0].pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	lb.exec(t, "", "UPDATE t SET v = 'changed' WHERE id = 3")
	for i, n := range tc.nodes[1:] {
		p := n.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: first})
		if p.hdr.ServerRevision == first || len(p.pages) == 0 || len(p.pages) > 4 {
			t.Fatalf("node %d: incremental pull from %s gave %s with %d pages", i+1, first, p.hdr.ServerRevision, len(p.pages))
		}
	}
}

// A long poll on one node is woken by a push through another.
func TestClusterLongPollWokenByAnotherNode(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	tc.nodes[0].exec(t, "", "CREATE TABLE t(x)")
	rev := tc.nodes[1].pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	done := make(chan *pulled, 1)
	go func() {
		p, _, _ := tc.nodes[1].tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 20000})
		done <- p
	}()
	testutil.Eventually(t, 10*time.Second, "the long poll to wait", func() bool { return tc.nodes[1].metricValue(t, "syncdb_long_poll_waiters") == 1 })
	start := time.Now()
	tc.nodes[0].exec(t, "", "INSERT INTO t VALUES (1)")
	select {
	case p := <-done:
		if p == nil || p.hdr.ServerRevision == rev {
			t.Fatalf("long poll returned %v", p)
		}
		t.Logf("woken %v after the push was acknowledged", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll on node 1 was not woken by a push on node 0")
	}
}

// PostgreSQL crashes and restarts under load: meanwhile pushes fail clearly
// (503 with Retry-After, no hangs), nothing acknowledged is lost, and the
// nodes resume by themselves.
func TestClusterSurvivesStoreRestart(t *testing.T) {
	pg := pgtest.NewCluster(t)
	tc := newTestCluster(t, 3, func(p *pgstore.Config, _ *Config) { p.URL = pg.URL })
	lb := tc.lbClient()
	lb.exec(t, "", "CREATE TABLE t(g INTEGER, i INTEGER, PRIMARY KEY(g, i))")

	var mu sync.Mutex
	acked := map[[2]int]bool{}
	statuses := map[int]int{}
	var slowest time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"baton":null,"requests":[{"type":"execute","stmt":{"sql":"INSERT INTO t VALUES (%d, %d)"}}]}`, g, i)
				start := time.Now()
				resp, err := http.Post(tc.lb.URL+"/v2/pipeline", "application/json", strings.NewReader(body))
				el := time.Since(start)
				mu.Lock()
				slowest = max(slowest, el)
				if err != nil {
					statuses[-1]++
				} else {
					out, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					statuses[resp.StatusCode]++
					switch {
					case resp.StatusCode == http.StatusOK && strings.Contains(string(out), `"type":"ok"`):
						acked[[2]int{g, i}] = true
					case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
					default:
						t.Errorf("push answered %d (Retry-After %q): %s", resp.StatusCode, resp.Header.Get("Retry-After"), out)
					}
				}
				mu.Unlock()
				if err != nil || resp.StatusCode != http.StatusOK {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.Eventually(t, 30*time.Second, "pushes before the crash", func() bool { return count() >= 20 })
	before := count()
	// /healthz says whether the node reaches the store.
	health := map[int]int{}
	healthDone := make(chan struct{})
	stopHealth := make(chan struct{})
	go func() {
		defer close(healthDone)
		for {
			select {
			case <-stopHealth:
				return
			case <-time.After(50 * time.Millisecond):
			}
			health[healthz(tc.nodes[0].url)]++
		}
	}()
	pg.Crash(t, 2*time.Second)
	close(stopHealth)
	<-healthDone
	restarted := time.Now()
	testutil.Eventually(t, 60*time.Second, "pushes after the restart", func() bool { return count() >= before+20 })
	resumed := time.Since(restarted)
	if health[http.StatusServiceUnavailable] == 0 {
		t.Errorf("/healthz never said the store was unreachable while it was down: %v", health)
	}
	testutil.Eventually(t, 30*time.Second, "/healthz after the restart", func() bool { return healthz(tc.nodes[0].url) == http.StatusOK })
	close(stop)
	wg.Wait()

	rows := lb.query(t, "", "SELECT g, i FROM t")
	have := map[[2]int]bool{}
	for _, r := range rows {
		have[[2]int{int(mustInt(t, r[0])), int(mustInt(t, r[1]))}] = true
	}
	lost := 0
	for k := range acked {
		if !have[k] {
			lost++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("/healthz during the outage %v", health)
	t.Logf("statuses %v; %d acknowledged, %d rows; resumed %v after PostgreSQL was back; slowest request %v", statuses, len(acked), len(have), resumed.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if lost > 0 {
		t.Fatalf("%d acknowledged pushes lost", lost)
	}
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Fatal("no push failed while PostgreSQL was down: the test did not exercise the outage")
	}
	if slowest > 30*time.Second {
		t.Fatalf("a push hung for %v", slowest)
	}
	tc.sameEverywhere(t, "", 1)
}

// A node that serves a database it does not write keeps a warm copy of it,
// so that taking the lease over costs the pages written since the copy's
// revision, not the whole database: the new writer builds nothing in full.
func TestClusterTakeoverFromWarmCopy(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	a, b := tc.nodes[0], tc.nodes[1]
	a.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 400) INSERT INTO t(v) SELECT randomblob(3000) FROM c")
	size := b.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.DbSize // b opens the database and copies it
	testutil.Eventually(t, 60*time.Second, "b's warm copy", func() bool { return b.copyPages(t, "full") >= float64(size) })
	for i := range 20 {
		a.exec(t, "", fmt.Sprintf("UPDATE t SET v = randomblob(3000) WHERE id = %d", 1+i*19))
	}
	latest := a.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	_, seq := revSeq(t, latest)
	testutil.Eventually(t, 60*time.Second, "b's warm copy to catch up", func() bool {
		d := b.dbs["default"]
		d.warm.mu.Lock()
		defer d.warm.mu.Unlock()
		return d.warm.seq == seq
	})
	full, inc := b.copyPages(t, "full"), b.copyPages(t, "incremental")
	a.stop(t) // gives the lease up
	b.exec(t, "", "INSERT INTO t(v) VALUES (x'01')")
	if got := b.copyPages(t, "full"); got != full {
		t.Fatalf("the takeover built the database in full (%v pages, %d in the database)", got-full, size)
	}
	t.Logf("database of %d pages; the warm copy caught up with %v pages while following, the takeover with %v", size, inc, b.copyPages(t, "incremental")-inc)
	if got := fmtRows(b.query(t, "", "SELECT count(*), sum(length(v)) FROM t")); got != fmt.Sprintf("401|%d\n", 400*3000+1) {
		t.Fatalf("rows after the takeover: %s", got)
	}
	tc.nodes = tc.nodes[1:]
	tc.sameEverywhere(t, "", seq)
}

// A node that does not write a database reads its pages from the store in
// batches: a bootstrap, a chunked bootstrap, a lazy segment and an
// incremental pull each cost a few round trips, not one per page.
func TestClusterReadsPagesInBatches(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	a, b := tc.nodes[0], tc.nodes[1]
	a.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000) INSERT INTO t(v) SELECT randomblob(1500) || zeroblob(1500) FROM c")
	old := a.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr
	for i := range 10 {
		a.exec(t, "", fmt.Sprintf("UPDATE t SET v = randomblob(3000) WHERE id = %d", 1+i*97))
	}
	want := a.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	size := want.hdr.DbSize
	b.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: old.ServerRevision, ServerPagesSelector: selector(t, 0)})
	testutil.Eventually(t, 60*time.Second, "b's warm copy", func() bool { return b.copyPages(t, "full") >= float64(size) })
	time.Sleep(2 * followEvery) // let the copy settle: its reads are not the pulls'

	var chunk []uint32
	for pg := range uint32(300) {
		chunk = append(chunk, 400+pg)
	}
	var segment []uint32
	for pg := range uint32(32) {
		segment = append(segment, 800+pg)
	}
	for _, c := range []struct {
		name string
		req  *syncpb.PullUpdatesReqProtoBody
		n    int
	}{
		{"bootstrap", &syncpb.PullUpdatesReqProtoBody{}, int(size)},
		{"zstd bootstrap", &syncpb.PullUpdatesReqProtoBody{Encoding: syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD}, int(size)},
		{"chunk of a bootstrap", &syncpb.PullUpdatesReqProtoBody{ServerRevision: want.hdr.ServerRevision, ServerPagesSelector: selector(t, chunk...)}, len(chunk)},
		{"segment as of an old revision", &syncpb.PullUpdatesReqProtoBody{ServerRevision: old.ServerRevision, ServerPagesSelector: selector(t, segment...)}, len(segment)},
		{"incremental pull", &syncpb.PullUpdatesReqProtoBody{ClientRevision: old.ServerRevision}, -1},
	} {
		before := b.storeReads(t)
		p := b.pull(t, "", c.req)
		reads := b.storeReads(t) - before
		t.Logf("%s: %d pages, %d reads from the store", c.name, len(p.pages), reads)
		if c.n >= 0 && len(p.pages) != c.n || c.n < 0 && (len(p.pages) == 0 || len(p.pages) > 100) {
			t.Fatalf("%s: %d pages", c.name, len(p.pages))
		}
		if reads > 6 {
			t.Fatalf("%s of %d pages took %d round trips to the store", c.name, len(p.pages), reads)
		}
		if c.req.Encoding == 0 && c.req.ServerRevision == "" && c.req.ClientRevision == "" {
			for pg, data := range want.pages {
				if !bytes.Equal(p.pages[pg], data) {
					t.Fatalf("%s: page %d differs from the writer's", c.name, pg)
				}
			}
		}
	}
}

// A store that is slow for one request (here: blocked on a lock of the
// database table) holds up only that request: requests for databases the
// node has open already go on. The server-wide lock is never held across
// a round trip to the store.
func TestClusterSlowStoreStallsOnlyItsRequest(t *testing.T) {
	tc := newTestCluster(t, 1, nil)
	n := tc.nodes[0]
	n.exec(t, "a", "CREATE TABLE t(x)", "INSERT INTO t VALUES (1)")
	rev := n.pull(t, "a", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, tc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// Every look-up of a database waits for this lock now.
	if _, err := tx.Exec(ctx, "LOCK TABLE syncdb_db IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	stalled := make(chan int, 1)
	go func() {
		_, status, _ := n.tryPull(t, "b", &syncpb.PullUpdatesReqProtoBody{})
		stalled <- status
	}()
	testutil.Eventually(t, 30*time.Second, "the look-up of database b to wait for the lock", func() bool {
		var waiting int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting > 0
	})
	done := make(chan *pulled, 1)
	go func() {
		p, _, _ := n.tryPull(t, "a", &syncpb.PullUpdatesReqProtoBody{ServerRevision: rev})
		done <- p
	}()
	select {
	case p := <-done:
		if p == nil || p.hdr.ServerRevision != rev {
			t.Fatalf("the pull of a: %+v", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a pull of open database a waited for the store's answer about database b")
	}
	select {
	case status := <-stalled:
		t.Fatalf("the request for b did not wait for the store (%d)", status)
	default:
	}
	tx.Rollback(ctx)
	if status := <-stalled; status != http.StatusOK {
		t.Fatalf("the request for b, once the store answered: %d", status)
	}
}

// In a cluster MaxDatabases counts the databases in the store, wherever
// they were created.
func TestClusterMaxDatabasesCountsTheStore(t *testing.T) {
	tc := newTestCluster(t, 2, func(_ *pgstore.Config, c *Config) { c.MaxDatabases = 2 })
	tc.nodes[0].exec(t, "x", "CREATE TABLE t(a)")
	tc.nodes[1].exec(t, "y", "CREATE TABLE t(a)")
	for i, n := range tc.nodes {
		if status, out := post(t, n.dbURL("z")+"/pull-updates", "application/protobuf", "", nil); status != http.StatusForbidden {
			t.Fatalf("node %d created a third database: %d %s", i, status, out)
		}
	}
	// Existing databases open on any node.
	tc.nodes[1].exec(t, "x", "INSERT INTO t VALUES (1)")
	tc.nodes[0].exec(t, "y", "INSERT INTO t VALUES (1)")
}

// A writer whose append failed (its store connection broke) and whose
// lease then lapsed holds a commit nobody acknowledged: closing drops it
// with the local copy, it is no error.
func TestClusterCloseDropsWhatTheStoreNeverRecorded(t *testing.T) {
	tc := newTestCluster(t, 1, nil)
	n := tc.nodes[0]
	n.exec(t, "", "CREATE TABLE t(x)")
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, tc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE syncdb_db IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan int, 1)
	go func() {
		status, _ := post(t, n.dbURL("")+"/v2/pipeline", "application/json", "", []byte(`{"baton":null,"requests":[{"type":"execute","stmt":{"sql":"INSERT INTO t VALUES (1)"}}]}`))
		pushed <- status
	}()
	// The append waits for the lock; then every session of the node ends
	// (its lock session too: it loses its leases).
	testutil.Eventually(t, 30*time.Second, "the append to wait", func() bool {
		var waiting int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting > 0
	})
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	if status := <-pushed; status != http.StatusServiceUnavailable {
		t.Fatalf("the push whose append broke: %d", status)
	}
	testutil.Eventually(t, 30*time.Second, "the node to lose its lease", func() bool { return n.metricValue(t, "syncdb_leases_held") == 0 })
	n.stop(t) // fails the test if Close reports an error
	again := tc.startNode(t, 1, nil)
	if got := fmtRows(again.query(t, "", "SELECT count(*) FROM t")); got != "0\n" {
		t.Fatalf("the push answered 503 is in the database: %s", got)
	}
}

// healthz returns the status of a node's /healthz (-1: no answer); a 503
// must say when to retry.
func healthz(base string) int {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		return 0
	}
	return resp.StatusCode
}

// forwardedOK counts a node's requests forwarded to the writer that the
// writer answered (whatever its status).
func (n *testNode) forwardedOK(t *testing.T) float64 {
	t.Helper()
	mfs, err := n.gather.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "syncdb_forwarded_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "ok" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A zstd-compressed pipeline request sent to a node that does not write
// the database is forwarded as it came (body and Content-Encoding) and
// decoded by the writer: the batch commits, its answer comes back with
// the header that lets the client go on compressing. Hostile compressed
// bodies get the writer's 4xx, passed back, and commit nothing.
func TestClusterZstdRequestForwarded(t *testing.T) {
	const limit = 64 << 10 // both nodes: the forwarder's cap and the writer's
	tc := newTestCluster(t, 2, func(_ *pgstore.Config, c *Config) { c.MaxPipelineRequestBytes = limit })
	a, b := tc.nodes[0], tc.nodes[1]
	a.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)") // a creates it: a writes it

	// The high-water read of a push goes plain; its answer, forwarded
	// back, must say that the writer takes compressed requests.
	small, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step("SELECT count(*) FROM t", nil))}})
	if status, body, takes := postCoded(t, b.url+"/v2/pipeline", "", small); status != 200 || takes != "zstd" {
		t.Fatalf("plain request through b: %d %s, %s = %q", status, trunc([]byte(body)), RequestEncodingHeader, takes)
	}

	const rows = 200
	var steps []hrana.BatchStep
	want := 0
	for i := range rows {
		v := fmt.Sprintf("row %d %s", i, strings.Repeat("v", i%50))
		want += len(v)
		steps = append(steps, step("INSERT INTO t(id, v) VALUES (?, ?)", nil, hrana.Value{V: int64(i + 1)}, hrana.Text(v)))
	}
	steps = append(steps, step("SELECT count(*), sum(length(v)) FROM t", nil))
	plain, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(steps...)}})
	// What netactor sends: SpeedFastest, a 1 MiB window, not single segment.
	packed := zstdOf(t, plain, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false))
	if len(plain) < 1<<10 || len(packed)*4 > len(plain) {
		t.Fatalf("the batch is %d bytes plain, %d compressed: not one the client would compress", len(plain), len(packed))
	}
	before := b.forwardedOK(t)
	status, body, takes := postCoded(t, b.url+"/v2/pipeline", "zstd", packed)
	if status != 200 {
		t.Fatalf("compressed batch through b: %d %s", status, trunc([]byte(body)))
	}
	if takes != "zstd" {
		t.Errorf("the forwarded answer's %s = %q, want zstd", RequestEncodingHeader, takes)
	}
	waitFor(t, func() bool { return b.forwardedOK(t)-before >= 1 }, "b forwarded %v requests, want 1 (did b write it itself?)", b.forwardedOK(t)-before)
	if got := b.forwardedOK(t) - before; got != 1 {
		t.Fatalf("b forwarded %v requests, want 1 (did b write it itself?)", got)
	}
	resp, err := hrana.DecodePipelineResp([]byte(body))
	if err != nil {
		t.Fatalf("decode the answer: %v", err)
	}
	res := resp.Results[0]
	if res.Type != hrana.ResultOK {
		t.Fatalf("batch: %v", res.Error)
	}
	br := res.Response.BatchResult
	for i, e := range br.StepErrors {
		if e != nil {
			t.Fatalf("step %d: %v", i, e)
		}
	}
	wantRows := fmt.Sprintf("%d|%d\n", rows, want)
	if got := fmtRows(br.StepResults[rows].Rows); got != wantRows {
		t.Fatalf("the batch's own count: %s, want %s", got, wantRows)
	}
	for name, n := range map[string]*testNode{"a": a, "b": b} {
		if got := fmtRows(n.query(t, "", "SELECT count(*), sum(length(v)) FROM t")); got != wantRows {
			t.Fatalf("rows read on %s: %s, want %s", name, got, wantRows)
		}
	}

	// Hostile bodies, each an insert if it ran: 16 MiB of spaces in a few
	// KiB (decoded past the limit), plain JSON said to be zstd, a cut
	// frame, another coding.
	bomb := zstdStream(t, []byte(`{"requests":[{"type":"execute","stmt":{"sql":"INSERT INTO t(v) VALUES ('`),
		bytes.Repeat([]byte(" "), 1<<20), 16, []byte(`')"}}]}`))
	ins, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step("INSERT INTO t(v) VALUES ('bad')", nil))}})
	cases := []struct {
		name, coding string
		body         []byte
		status       int
		msg          string
	}{
		{"bomb", "zstd", bomb, 413, "once decoded"},
		{"not zstd", "zstd", ins, 400, "malformed zstd"},
		{"truncated", "zstd", packed[:len(packed)/2], 400, "malformed zstd"},
		{"gzip", "gzip", ins, 415, "zstd or none"},
	}
	if len(bomb) > limit {
		t.Fatalf("the bomb is %d bytes compressed, more than the limit", len(bomb))
	}
	for _, c := range cases {
		before := b.forwardedOK(t)
		status, body, _ := postCoded(t, b.url+"/v2/pipeline", c.coding, c.body)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s through b: %d %q, want %d containing %q", c.name, status, trunc([]byte(body)), c.status, c.msg)
		}
		// The forwarder counts a request once its answer has gone out,
		// which can be after the client has read it.
		waitFor(t, func() bool { return b.forwardedOK(t)-before >= 1 }, "%s: b forwarded %v requests, want 1 (the writer's answer)", c.name, b.forwardedOK(t)-before)
		if got := b.forwardedOK(t) - before; got != 1 {
			t.Errorf("%s: b forwarded %v requests, want 1 (the writer's answer)", c.name, got)
		}
	}
	if got := fmtRows(a.query(t, "", "SELECT count(*), sum(length(v)) FROM t")); got != wantRows {
		t.Fatalf("rows after the hostile requests: %s, want %s", got, wantRows)
	}
	for name, n := range map[string]*testNode{"a": a, "b": b} {
		waitFor(t, func() bool { return n.mem.used.Load() == 0 }, "%s: in-flight bytes %d after the requests", name, n.mem.used.Load())
	}
}
