package syncdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// partialMB is the size of the remote database the partial-sync tests
// build: about 200 MB normally, less under the race detector (which slows
// SQLite tenfold) unless SYNCDB_PARTIAL_MB says otherwise.
func partialMB() int {
	if s := os.Getenv("SYNCDB_PARTIAL_MB"); s != "" {
		n, _ := strconv.Atoi(s)
		return n
	}
	if raceEnabled || testing.Short() {
		return 12
	}
	return 200
}

// bigRemote builds a server whose database "big" holds about mb megabytes:
// table big(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB), about 1 KiB a
// row. The database file is written directly and then served, as a
// pre-existing database.
func bigRemote(t *testing.T, mb int) (url string, rows int) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	rows = mb * 1000
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "big", "db.sqlite")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE big(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO big SELECT i, printf('key-%08d', i), zeroblob(1000) || randomblob(24) FROM n;`, rows); err != nil {
		t.Fatal(err)
	}
	db.Close()
	srv, err := server.New(server.Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.BeginShutdown()
		hs.Close()
		srv.Close()
	})
	return hs.URL + "/db/big", rows
}

// countingTransport counts pull requests and remembers their selectors.
type countingTransport struct {
	pulls     atomic.Int64
	mu        sync.Mutex
	selectors map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/pull-updates") && r.GetBody != nil {
		c.pulls.Add(1)
		body, _ := r.GetBody()
		b, _ := io.ReadAll(body)
		var req syncpb.PullUpdatesReqProtoBody
		if proto.Unmarshal(b, &req) == nil && len(req.ServerPagesSelector) > 0 {
			if bm, err := wire.DecodeSelector(req.ServerPagesSelector); err == nil {
				c.mu.Lock()
				if c.selectors == nil {
					c.selectors = map[string]int{}
				}
				c.selectors[fmt.Sprint(bm.ToArray())]++
				c.mu.Unlock()
			}
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func received(t *testing.T, db *syncdb.DB) int64 {
	t.Helper()
	st, err := db.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.NetworkReceivedBytes
}

// A cold partial replica answers lookups after downloading little, counts
// exactly, stays correct when the remote changes, and its readers share
// segment fetches.
func TestPartialPrefix(t *testing.T) {
	mb := partialMB()
	url, rows := bigRemote(t, mb)
	ctx := context.Background()
	tr := &countingTransport{}
	db := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "p.db"), URL: url, HTTPClient: &http.Client{Transport: tr},
		Partial: &syncdb.PartialSync{PrefixBytes: 128 << 10}})
	st, _ := db.Stats(ctx)
	if st.PagesPresent != 32 || st.PagesTotal < int64(mb)*200 {
		t.Fatalf("after bootstrap: %d of %d pages", st.PagesPresent, st.PagesTotal)
	}
	t.Logf("bootstrap: %d of %d pages, %d bytes", st.PagesPresent, st.PagesTotal, st.NetworkReceivedBytes)

	before := received(t, db)
	var k string
	if err := db.QueryRow(ctx, "SELECT k FROM big WHERE id = ?", rows/2).Scan(&k); err != nil || k != fmt.Sprintf("key-%08d", rows/2) {
		t.Fatalf("rowid lookup: %q %v", k, err)
	}
	if got := received(t, db) - before; got > 1<<20 {
		t.Fatalf("a rowid lookup downloaded %d bytes", got)
	} else {
		t.Logf("rowid lookup: %d bytes", got)
	}
	before = received(t, db)
	var id int
	if err := db.QueryRow(ctx, "SELECT id FROM big WHERE k = ?", fmt.Sprintf("key-%08d", rows/3)).Scan(&id); err != nil || id != rows/3 {
		t.Fatalf("index lookup: %d %v", id, err)
	}
	if got := received(t, db) - before; got > 1<<20 {
		t.Fatalf("an index lookup downloaded %d bytes", got)
	} else {
		t.Logf("index lookup: %d bytes", got)
	}

	// 16 readers on cold segments: correct answers, each segment once.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				id := 1 + (g*997+i*7919)%rows
				var k string
				if err := db.QueryRow(ctx, "SELECT k FROM big WHERE id = ?", id).Scan(&k); err != nil || k != fmt.Sprintf("key-%08d", id) {
					errs <- fmt.Errorf("reader %d, id %d: %q %v", g, id, k, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tr.mu.Lock()
	for sel, n := range tr.selectors {
		if n > 1 {
			t.Errorf("selector %.60s... requested %d times", sel, n)
		}
	}
	t.Logf("%d pull requests so far", tr.pulls.Load())
	tr.mu.Unlock()

	// The remote changes; the replica pulls and stays exact.
	w := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "w.db"), URL: url,
		Partial: &syncdb.PartialSync{PrefixBytes: 4096}})
	mustExec(t, w, "UPDATE big SET k = 'changed' WHERE id = ?", rows/2)
	mustExec(t, w, "DELETE FROM big WHERE id = ?", rows/4)
	mustExec(t, w, "INSERT INTO big(id, k, v) VALUES(?, 'new', x'00')", rows+1)
	if err := w.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "INSERT INTO big(id, k, v) VALUES(?, 'local', x'01')", rows+2)
	if _, err := db.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	var n, sum int64
	if err := db.QueryRow(ctx, "SELECT count(*), sum(id) FROM big").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	wantN := int64(rows) - 1 + 2
	wantSum := int64(rows)*int64(rows+1)/2 - int64(rows/4) + int64(rows+1) + int64(rows+2)
	if n != wantN || sum != wantSum {
		t.Fatalf("full scan after pull: count %d sum %d, want %d %d", n, sum, wantN, wantSum)
	}
	if got := rows1(t, db, "SELECT k FROM big WHERE id = ?", rows/2); got != "changed" {
		t.Fatalf("changed row: %q", got)
	}
	if err := db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	integrity(t, db)
	if err := db.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows1(t, w, "SELECT k FROM big WHERE id = ?", rows+2); got != "local" {
		t.Fatalf("w sees: %q", got)
	}
	st, _ = db.Stats(ctx)
	t.Logf("after a full scan: %d of %d pages, %d bytes received, %d requests", st.PagesPresent, st.PagesTotal, st.NetworkReceivedBytes, tr.pulls.Load())
}

func rows1(t *testing.T, db *syncdb.DB, q string, args ...any) string {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

// A query bootstrap answers its own query with no further fetch.
func TestPartialQuery(t *testing.T) {
	url, rows := bigRemote(t, max(2, partialMB()/10))
	ctx := context.Background()
	tr := &countingTransport{}
	q := fmt.Sprintf("SELECT id, k FROM big WHERE id BETWEEN %d AND %d", rows/2, rows/2+50)
	db := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "q.db"), URL: url, HTTPClient: &http.Client{Transport: tr},
		Partial: &syncdb.PartialSync{Query: q}})
	after := tr.pulls.Load()
	got := 0
	rs, err := db.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		got++
	}
	rs.Close()
	if got != 51 {
		t.Fatalf("query rows: %d", got)
	}
	if n := tr.pulls.Load() - after; n != 0 {
		t.Fatalf("the bootstrap query needed %d more requests", n)
	}
	st, _ := db.Stats(ctx)
	if st.PagesPresent*10 > st.PagesTotal {
		t.Fatalf("the query bootstrap downloaded %d of %d pages", st.PagesPresent, st.PagesTotal)
	}
	t.Logf("query bootstrap: %d of %d pages, %d bytes", st.PagesPresent, st.PagesTotal, st.NetworkReceivedBytes)
}

// Case 10: a partial replica outlives its bootstrap revision. Each pull
// that changes it checkpoints, which moves its fetches to the synced
// revision (pageactor.Repin); the server's history may then forget the
// bootstrap revision (and later the next ones) while the replica still
// answers every query exactly, fetching what it lacks.
func TestPartialOutlivesBootstrapRevision(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		HistoryRetention: time.Millisecond, MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.BeginShutdown(); hs.Close(); srv.Close() })
	dir := t.TempDir()
	// The rows are made on the server (a push would replay them one by
	// one); w, the full replica the answers are compared with, bootstraps.
	serverExec(t, hs.URL, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	serverExec(t, hs.URL, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO t SELECT i, printf('%d-%s', i, hex(randomblob(300))) FROM n`)
	w := open(t, syncdb.Config{Path: filepath.Join(dir, "w.db"), URL: hs.URL})
	p := open(t, syncdb.Config{Path: filepath.Join(dir, "p.db"), URL: hs.URL, Partial: &syncdb.PartialSync{PrefixBytes: 4 * 4096, SegmentSize: 4096}})
	st, err := p.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gone := func(rev string) bool {
		body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerRevision: rev})
		resp, err := http.Post(hs.URL+"/pull-updates", "application/protobuf", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusGone
	}
	same := func(when string) {
		t.Helper()
		q := "SELECT count(*), sum(length(v)), sum(id * length(v)), group_concat(substr(v, 1, 8)) FROM t"
		if got, want := rows(t, p, q), rows(t, w, q); got != want {
			t.Fatalf("%s: the partial replica answers %.80q, the full one %.80q", when, got, want)
		}
	}
	revs := []string{st.Revision}
	for round := 1; round <= 3; round++ {
		// The remote moves on; the replica pulls; the history forgets
		// every older revision.
		mustExec(t, w, `UPDATE t SET v = 'changed ' || ? || ' ' || v WHERE id % 97 = ?`, round, round)
		if err := w.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if changed, err := p.Pull(ctx); err != nil || !changed {
			t.Fatalf("pull: %v %v", changed, err)
		}
		st, _ := p.Stats(ctx)
		revs = append(revs, st.Revision)
		time.Sleep(5 * time.Millisecond)
		if err := srv.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range revs[:len(revs)-1] {
			if !gone(r) {
				t.Fatalf("round %d: revision %s is still served: the test proves nothing", round, r)
			}
		}
		same(fmt.Sprintf("round %d, after the history dropped %d revisions", round, len(revs)-1))
		if round == 1 {
			// A local change on top, pushed: still exact.
			mustExec(t, p, `UPDATE t SET v = 'local' WHERE id = 1500`)
			if err := p.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Pull(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	integrity(t, p)
}

// Case 10, offline: a partial replica that stayed away longer than the
// server's history retention, with an unpushed local write, needs no
// manual step. The server answers a fetch as of its revision for every
// page no later revision wrote (the read works at once), and a pull from
// it (the pull rebases the local write as usual; nothing is rebuilt). A
// page that changed since is refused until that pull, with a log line
// that says so. Config.Recover finds nothing to repair.
func TestPartialOfflinePastRetention(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		HistoryRetention: time.Millisecond, MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.BeginShutdown(); hs.Close(); srv.Close() })
	dir := t.TempDir()
	// Written on the server: a push of 3000 rows would take most of the
	// test's time under -race.
	serverExec(t, hs.URL, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	serverExec(t, hs.URL, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
		INSERT INTO t SELECT i, printf('%04d-%s', i, hex(randomblob(300))) FROM n`)
	w := open(t, syncdb.Config{Path: filepath.Join(dir, "w.db"), URL: hs.URL})
	logf, err := os.Create(filepath.Join(dir, "p.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	pcfg := syncdb.Config{Path: filepath.Join(dir, "p.db"), URL: hs.URL, Logger: slog.New(slog.NewTextHandler(logf, nil)),
		Partial: &syncdb.PartialSync{PrefixBytes: 4 * 4096, SegmentSize: 4096}}
	p := open(t, pcfg)
	st, err := p.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bootRev := st.Revision
	mustExec(t, p, `INSERT INTO t VALUES(5001, 'written offline')`)

	// The server moves on (same-sized values: only the leaves of rows
	// 2500..2600 change, and page 1 with the new table), and its history
	// forgets the replica's revision.
	mustExec(t, w, `UPDATE t SET v = replace(v, '-', '+') WHERE id BETWEEN 2500 AND 2600`)
	mustExec(t, w, `CREATE TABLE u(id INTEGER PRIMARY KEY, note TEXT)`)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := srv.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerRevision: bootRev})
	resp, err := http.Post(hs.URL+"/pull-updates", "application/protobuf", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("the bootstrap revision is still served whole (%d): the test proves nothing", resp.StatusCode)
	}

	// Config.Recover: the server can pull the replica as it is, so nothing
	// is rebuilt.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	rcfg := pcfg
	rcfg.Recover = true
	p = open(t, rcfg)
	if old, _ := filepath.Glob(pcfg.Path + ".before-recover-*"); len(old) != 0 {
		t.Fatalf("Config.Recover rebuilt a replica the server can pull: %v", old)
	}

	// A missing page nothing wrote since: fetched as of the old revision.
	if got := rows(t, p, `SELECT v FROM t WHERE id = 1000`); !strings.HasPrefix(got, "1000-") {
		t.Fatalf("row 1000 before the pull: %.40q", got)
	}
	// A missing page written since: refused (the replica must not see
	// the new image under its old base), until the pull.
	var v string
	if err := p.QueryRow(ctx, `SELECT v FROM t WHERE id = 2550`).Scan(&v); err == nil {
		t.Fatalf("row 2550 read %.20q as of a revision the server no longer keeps", v)
	}
	if b, _ := os.ReadFile(logf.Name()); !strings.Contains(string(b), "changed on the server after the revision this replica fetches at") {
		t.Fatalf("the log does not say why the read failed:\n%s", b)
	}

	if changed, err := p.Pull(ctx); err != nil || !changed {
		t.Fatalf("pull from a compacted revision: %v %v", changed, err)
	}
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, w, `SELECT v FROM t WHERE id = 5001`); got != "written offline" {
		t.Fatalf("the offline write on the server: %q", got)
	}
	q := "SELECT count(*), sum(length(v)), sum(id * length(v)), group_concat(substr(v, 1, 8)) FROM t"
	if got, want := rows(t, p, q), rows(t, w, q); got != want {
		t.Fatalf("the partial replica answers %.80q, the full one %.80q", got, want)
	}
	if got := rows(t, p, `SELECT v FROM t WHERE id = 2550`); !strings.HasPrefix(got, "2550+") {
		t.Fatalf("row 2550 after the pull: %.40q", got)
	}
	mustExec(t, p, `INSERT INTO u VALUES(1, 'after')`)
	if err := p.Push(ctx); err != nil {
		t.Fatal(err)
	}
	integrity(t, p)
}
