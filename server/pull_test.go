package server

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire/syncpb"
)

func fill(t *testing.T, ts *testServer, db string, from, to int) {
	t.Helper()
	ts.exec(t, db, fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d)
		INSERT INTO t(id, v) SELECT i, printf('row-%%d-%%s', i, hex(randomblob(40))) FROM n`, from, to))
}

func countRows(t *testing.T, db *sql.DB) (n, sum int64) {
	t.Helper()
	if err := db.QueryRow("SELECT count(*), coalesce(sum(id), 0) FROM t").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	return n, sum
}

// A snapshot is a complete, valid database equal to the server's.
func TestPullSnapshot(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 3000)
	p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	if uint64(len(p.pages)) != p.hdr.DbSize || p.hdr.DbSize < 50 {
		t.Fatalf("snapshot has %d pages, db_size %d", len(p.pages), p.hdr.DbSize)
	}
	for i, pg := range p.order {
		if pg != uint32(i+1) {
			t.Fatalf("pages out of order: %v", p.order[:i+1])
		}
	}
	im := image{}
	im.apply(p)
	db := openImage(t, im.write(t, p.hdr.DbSize))
	integrityOK(t, db)
	if n, sum := countRows(t, db); n != 3000 || sum != 3000*3001/2 {
		t.Fatalf("rows %d sum %d", n, sum)
	}
}

// Incremental pulls applied in sequence always give the server's database,
// byte for byte, at every revision — across checkpoints of the server's WAL.
func TestIncrementalPullsMatchSnapshots(t *testing.T) {
	ts := newTestServer(t, Config{CheckpointFrames: 20})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	im := image{}
	im.apply(p)
	rev := p.hdr.ServerRevision
	d, _ := ts.database(t.Context(), "default", false)
	for round := 0; round < 8; round++ {
		fill(t, ts, "", round*500+1, round*500+500)
		ts.exec(t, "", fmt.Sprintf("DELETE FROM t WHERE id BETWEEN %d AND %d", round*300, round*300+40),
			fmt.Sprintf("UPDATE t SET v = v || 'x' WHERE id BETWEEN %d AND %d", round*200+100, round*200+130))
		if round%3 == 2 {
			if err := d.checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		inc := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev})
		if inc.hdr.ServerRevision == rev {
			t.Fatal("revision did not move")
		}
		if round > 0 && uint64(len(inc.pages)) >= inc.hdr.DbSize {
			t.Fatalf("round %d: incremental pull sent %d pages of %d", round, len(inc.pages), inc.hdr.DbSize)
		}
		im.apply(inc)
		rev = inc.hdr.ServerRevision
		full := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
		if full.hdr.ServerRevision != rev {
			t.Fatalf("snapshot at %s, incremental at %s", full.hdr.ServerRevision, rev)
		}
		if len(full.pages) != len(im) {
			t.Fatalf("round %d: image has %d pages, snapshot %d", round, len(im), len(full.pages))
		}
		for pg, data := range full.pages {
			if !bytes.Equal(im[pg], data) {
				t.Fatalf("round %d: page %d differs from the snapshot", round, pg)
			}
		}
	}
	db := openImage(t, im.write(t, uint64(len(im))))
	integrityOK(t, db)
	// An empty pull: header only, same revision.
	empty := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev})
	if len(empty.pages) != 0 || empty.hdr.ServerRevision != rev {
		t.Fatalf("empty pull: %d pages, revision %s (want %s)", len(empty.pages), empty.hdr.ServerRevision, rev)
	}
}

// A pinned request returns pages and db_size as of the pinned revision,
// even after the database moved on and was checkpointed.
func TestPinnedRevision(t *testing.T) {
	ts := newTestServer(t, Config{CheckpointFrames: 10})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 1000)
	old := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	fill(t, ts, "", 1001, 5000)
	ts.exec(t, "", "UPDATE t SET v = 'changed'")
	d, _ := ts.database(t.Context(), "default", false)
	if err := d.checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for pg := range old.pages {
		ids = append(ids, pg-1)
	}
	pinned := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: old.hdr.ServerRevision, ServerPagesSelector: selector(t, ids...)})
	if pinned.hdr.DbSize != old.hdr.DbSize || pinned.hdr.ServerRevision != old.hdr.ServerRevision {
		t.Fatalf("pinned header %v, want db_size %d", pinned.hdr, old.hdr.DbSize)
	}
	for pg, data := range old.pages {
		if !bytes.Equal(pinned.pages[pg], data) {
			t.Fatalf("pinned page %d differs", pg)
		}
	}
	// Pages beyond the pinned size are not sent.
	beyond := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: old.hdr.ServerRevision, ServerPagesSelector: selector(t, uint32(old.hdr.DbSize), uint32(old.hdr.DbSize)+5)})
	if len(beyond.pages) != 0 {
		t.Fatalf("pages beyond db_size sent: %v", beyond.order)
	}
	// A selector at the latest revision picks exactly those pages.
	latest := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerPagesSelector: selector(t, 0, 2, 4)})
	if fmt.Sprint(latest.order) != "[1 3 5]" {
		t.Fatalf("selector pages %v", latest.order)
	}
}

// Revisions the server cannot serve get 410 with a message.
func TestBadRevisions(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	first := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	for i := 0; i < 5; i++ {
		fill(t, ts, "", i*10+1, i*10+10)
	}
	d, _ := ts.database(t.Context(), "default", false)
	id := d.hist.ID()
	for _, rev := range []string{"garbage", "other-1", id + "-x", id + "-999999"} {
		_, status, msg := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev})
		if status != http.StatusGone || !strings.Contains(msg, "revision") {
			t.Errorf("client_revision %q: %d %s", rev, status, msg)
		}
		_, status, _ = ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: rev})
		if status != http.StatusGone {
			t.Errorf("server_revision %q: %d", rev, status)
		}
	}
	// Move the horizon past the first revision: it becomes too old.
	latest := d.hist.Latest().Seq
	if _, err := d.hist.Compact(t.Context(), latest-1); err != nil {
		t.Fatal(err)
	}
	// A snapshot of it cannot be served any more (pulls from it and page
	// fetches can: TestCompactedRevisions).
	_, status, msg := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: first})
	if status != http.StatusGone || !strings.Contains(msg, "older") {
		t.Fatalf("too old: %d %s", status, msg)
	}
	// The horizon revision and later ones are complete after compaction.
	full := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: d.revision(latest - 1)})
	im := image{}
	im.apply(full)
	db := openImage(t, im.write(t, full.hdr.DbSize))
	integrityOK(t, db)
	if n, _ := countRows(t, db); n != 40 {
		t.Fatalf("rows at horizon: %d", n)
	}
	inc := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: d.revision(latest - 1)})
	if inc.hdr.ServerRevision != d.revision(latest) {
		t.Fatalf("incremental from horizon: %v", inc.hdr)
	}
}

// A long poll returns as soon as another request commits, and after its
// timeout when nothing happens.
func TestLongPoll(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	rev := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision

	start := time.Now()
	p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 300})
	if el := time.Since(start); el < 280*time.Millisecond || len(p.pages) != 0 || p.hdr.ServerRevision != rev {
		t.Fatalf("idle long poll: %v, %d pages, %s", el, len(p.pages), p.hdr.ServerRevision)
	}

	done := make(chan *pulled)
	go func() {
		done <- ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 20000})
	}()
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	ts.exec(t, "", "INSERT INTO t VALUES(1, 'wake')")
	select {
	case p := <-done:
		if p.hdr.ServerRevision == rev || len(p.pages) == 0 {
			t.Fatalf("woken long poll brought nothing: %v", p.hdr)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("long poll woke after %v", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not woken by a commit")
	}
}

// zstd pages decode to the raw ones.
func TestZstdEncoding(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 500)
	raw := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	z := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{Encoding: syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD})
	if z.hdr.ZstdEncoding == nil || len(z.pages) != len(raw.pages) {
		t.Fatalf("zstd header %v, %d pages", z.hdr, len(z.pages))
	}
	for pg, data := range raw.pages {
		if !bytes.Equal(z.pages[pg], data) {
			t.Fatalf("page %d differs", pg)
		}
	}
}

// A database file that existed before the server is served completely,
// including the pages that were only ever in the database file.
func TestPreexistingDatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	pre, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "old", mainFile)+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pre.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO t SELECT i, 'pre' FROM n;`); err != nil {
		t.Fatal(err)
	}
	pre.Close() // checkpoints into the database file
	ts := newTestServer(t, Config{DataDir: dir, NoAutoCreate: true})
	p := ts.pull(t, "old", &syncpb.PullUpdatesReqProtoBody{})
	im := image{}
	im.apply(p)
	db := openImage(t, im.write(t, p.hdr.DbSize))
	integrityOK(t, db)
	if n, _ := countRows(t, db); n != 2000 {
		t.Fatalf("rows: %d", n)
	}
	// With --no-auto-create, unknown databases are 404.
	_, status, _ := ts.tryPull(t, "nope", &syncpb.PullUpdatesReqProtoBody{})
	if status != http.StatusNotFound {
		t.Fatalf("unknown database: %d", status)
	}
}

// The query selector returns the pages that answer the query: an image
// holding only those pages (the rest zeros) answers it identically.
func TestQuerySelector(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE INDEX t_v ON t(v)")
	fill(t, ts, "", 1, 20000)
	full := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	for _, q := range []string{
		"SELECT * FROM t WHERE id = 12345",
		"SELECT id FROM t WHERE v >= 'row-19990' ORDER BY v LIMIT 5",
		"SELECT * FROM t WHERE id BETWEEN 100 AND 140",
	} {
		p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: q})
		if _, ok := p.pages[1]; !ok {
			t.Fatalf("%s: page 1 missing", q)
		}
		if len(p.pages) > 20 || p.hdr.DbSize != full.hdr.DbSize {
			t.Fatalf("%s: %d pages of %d", q, len(p.pages), p.hdr.DbSize)
		}
		im := image{}
		im.apply(p)
		part := openImage(t, im.write(t, p.hdr.DbSize))
		fullIm := image{}
		fullIm.apply(full)
		whole := openImage(t, fullIm.write(t, full.hdr.DbSize))
		if a, b := rowsOf(t, part, q), rowsOf(t, whole, q); a != b || a == "" {
			t.Fatalf("%s: partial image answers %q, full %q", q, a, b)
		}
	}
	_, status, msg := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: "DELETE FROM t"})
	if status != http.StatusBadRequest {
		t.Fatalf("writing query selector: %d %s", status, msg)
	}
	var n int64
	ts.query(t, "", "SELECT count(*) FROM t")
	if rows := ts.query(t, "", "SELECT count(*) FROM t"); mustInt(t, rows[0][0]) != 20000 {
		t.Fatalf("query selector changed data: %d", n)
	}
}

func rowsOf(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&b, vals...)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return b.String()
}

// Many waiting long polls are cheap: each is one parked goroutine, and one
// commit wakes them all.
func TestManyLongPolls(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	rev := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	const n = 1000
	tr := &http.Transport{MaxConnsPerHost: n + 10, MaxIdleConnsPerHost: n + 10}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 60000})
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := client.Post(ts.url+"/pull-updates", "application/protobuf", bytes.NewReader(body))
			if err == nil {
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if p := decodePull(t, out); p.hdr.ServerRevision == rev {
					err = fmt.Errorf("woken without a new revision")
				}
			}
			done <- err
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for ts.metricValue(t, "syncdb_long_poll_waiters") < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if w := ts.metricValue(t, "syncdb_long_poll_waiters"); w != n {
		t.Fatalf("%v waiters, want %d", w, n)
	}
	start := time.Now()
	ts.exec(t, "", "INSERT INTO t VALUES(1)")
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d long polls woken by one commit in %v", n, time.Since(start))
}

// Many pulls at once that each need the history for more than their pages
// (the changed set, a query selector) must not wait on each other for
// history connections: this deadlocked when each took a second read view.
func TestConcurrentPullsShareOneHistoryView(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 2000)
	base := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	fill(t, ts, "", 2001, 2100)

	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 64 {
		wg.Go(func() {
			req := &syncpb.PullUpdatesReqProtoBody{ClientRevision: base}
			if i%2 == 0 {
				req = &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: "SELECT * FROM t WHERE id = 2050"}
			}
			if _, status, msg := ts.tryPull(t, "", req); status != http.StatusOK {
				errs <- fmt.Sprintf("pull %d: %d %s", i, status, msg)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("64 concurrent pulls did not finish in 60 s: they are waiting on each other")
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// Every answer for a database names its identity, 410s included; another
// database has another.
func TestDatabaseIdentityHeader(t *testing.T) {
	url := newTestServer(t, Config{}).url
	post := func(path string) (int, string) {
		resp, err := http.Post(url+path, "application/protobuf", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(DatabaseHeader)
	}
	code, a := post("/pull-updates")
	if code != 200 || a == "" {
		t.Fatalf("pull: %d, identity %q", code, a)
	}
	if _, again := post("/pull-updates"); again != a {
		t.Errorf("identity changed: %q then %q", a, again)
	}
	if _, b := post("/db/other/pull-updates"); b == "" || b == a {
		t.Errorf("another database's identity: %q (default's %q)", b, a)
	}
}

// TestPullStatus: each kind of pull error has its HTTP answer, and the
// kind does not change the message the client reads.
func TestPullStatus(t *testing.T) {
	cause := errors.New("cause")
	for _, c := range []struct {
		err  error
		want int
	}{
		{badPull(cause), http.StatusBadRequest},
		{unavailable(cause), http.StatusServiceUnavailable},
		{revisionError(cause), http.StatusServiceUnavailable},
		{revisionError(fmt.Errorf("%w: r9", ErrBadRevision)), http.StatusGone},
		{fmt.Errorf("read: %w", ErrBadRevision), http.StatusGone},
		{cause, http.StatusInternalServerError},
	} {
		if got := pullStatus(c.err); got != c.want {
			t.Errorf("pullStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if got := badPull(cause).Error(); got != "cause" {
		t.Errorf("badPull(cause).Error() = %q, want the cause's message", got)
	}
}

// A revision that compaction dropped still answers what the history knows
// exactly: a pull from it (the pages written since), and a fetch as of it
// of a page no later revision wrote (its image then is its image now); a
// fetch of a page written since is 410. Every answer is compared with the
// one the same request got before the compaction. On a single node's
// file history and on the shared PostgreSQL one.
func TestCompactedRevisions(t *testing.T) {
	t.Run("file", func(t *testing.T) { testCompactedRevisions(t, newTestServer(t, Config{})) })
	t.Run("pgstore", func(t *testing.T) { testCompactedRevisions(t, newTestCluster(t, 1, nil).nodes[0].testServer) })
}

func testCompactedRevisions(t *testing.T, ts *testServer) {
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 400)
	old := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	first, size := old.hdr.ServerRevision, uint32(old.hdr.DbSize)
	d, _ := ts.database(t.Context(), "default", false)
	seq := func(rev string) int64 {
		n, err := strconv.ParseInt(rev[strings.LastIndexByte(rev, '-')+1:], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Writes before the horizon-to-be, then after it.
	ts.exec(t, "", "UPDATE t SET v = upper(v) WHERE id BETWEEN 100 AND 120")
	ts.exec(t, "", "UPDATE t SET v = lower(v) WHERE id BETWEEN 110 AND 130")
	fill(t, ts, "", 401, 420)
	horizon := d.hist.Latest().Seq
	ts.exec(t, "", "UPDATE t SET v = upper(v) WHERE id BETWEEN 300 AND 310")
	latest := d.revision(d.hist.Latest().Seq)

	fromOld := &syncpb.PullUpdatesReqProtoBody{ClientRevision: first, ServerRevision: latest}
	before := ts.pull(t, "", fromOld)
	changed := map[uint32]bool{}
	for _, pg := range before.order {
		changed[pg] = true
	}
	if len(changed) == 0 || len(changed) >= int(size) {
		t.Fatalf("%d of %d pages changed: the test proves nothing", len(changed), size)
	}
	if _, err := d.hist.Compact(t.Context(), horizon); err != nil {
		t.Fatal(err)
	}
	if h := d.hist.Horizon(); h <= seq(first) {
		t.Fatalf("horizon %d, revision %s", h, first)
	}

	after := ts.pull(t, "", fromOld)
	if fmt.Sprint(after.order) != fmt.Sprint(before.order) || after.hdr.ServerRevision != latest {
		t.Fatalf("pull from a compacted revision: pages %v, before compaction %v", after.order, before.order)
	}
	for pg, data := range before.pages {
		if !bytes.Equal(after.pages[pg], data) {
			t.Fatalf("pull from a compacted revision: page %d differs", pg)
		}
	}
	// Without a target: the same pages, of the latest revision.
	if p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: first}); fmt.Sprint(p.order) != fmt.Sprint(before.order) {
		t.Fatalf("pull from a compacted revision to the latest: %v", p.order)
	}

	var unchanged []uint32
	for pg := uint32(1); pg <= size; pg++ {
		req := &syncpb.PullUpdatesReqProtoBody{ServerRevision: first, ServerPagesSelector: selector(t, pg-1)}
		got, status, msg := ts.tryPull(t, "", req)
		switch {
		case changed[pg]:
			if status != http.StatusGone || !strings.Contains(msg, "changed after revision") {
				t.Fatalf("page %d, written since %s: %d %s", pg, first, status, msg)
			}
		case status != http.StatusOK:
			t.Fatalf("page %d, unchanged since %s: %d %s", pg, first, status, msg)
		case !bytes.Equal(got.pages[pg], old.pages[pg]) || len(got.pages) != 1 || got.hdr.ServerRevision != first:
			t.Fatalf("page %d as of %s: not its image then (%d pages, %s)", pg, first, len(got.pages), got.hdr.ServerRevision)
		default:
			unchanged = append(unchanged, pg-1)
		}
	}
	// Many at once, zstd too.
	all := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: first, ServerPagesSelector: selector(t, unchanged...),
		Encoding: syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD})
	if len(all.pages) != len(unchanged) {
		t.Fatalf("%d of %d unchanged pages sent", len(all.pages), len(unchanged))
	}
	for _, id := range unchanged {
		if !bytes.Equal(all.pages[id+1], old.pages[id+1]) {
			t.Fatalf("page %d differs", id+1)
		}
	}
	// Beyond the latest size: cannot be told.
	if _, status, _ := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: first,
		ServerPagesSelector: selector(t, d.hist.Latest().DBSize+5)}); status != http.StatusGone {
		t.Fatalf("a page beyond the database as of a compacted revision: %d", status)
	}
	// Revision 0 was never one.
	if _, status, _ := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: d.revision(0)}); status != http.StatusGone {
		t.Fatalf("revision 0: %d", status)
	}
	if _, status, _ := ts.tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: d.revision(0), ServerPagesSelector: selector(t, 0)}); status != http.StatusGone {
		t.Fatalf("revision 0, a page: %d", status)
	}
}
