package syncdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/server"
)

// flakyServer is a sync server that can go away (every connection is cut,
// as when the process is gone) and come back restarted on the same data.
type flakyServer struct {
	t    *testing.T
	dir  string
	URL  string
	hs   *httptest.Server
	mu   sync.Mutex
	srv  *server.Server
	down atomic.Bool
	// inflight counts the requests being served, which stop waits for.
	inflight sync.WaitGroup
}

func newFlakyServer(t *testing.T) *flakyServer {
	f := &flakyServer{t: t, dir: t.TempDir()}
	f.start()
	f.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		srv := f.srv
		if !f.down.Load() && srv != nil {
			f.inflight.Add(1)
			defer f.inflight.Done()
		}
		f.mu.Unlock()
		if f.down.Load() || srv == nil {
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	f.URL = f.hs.URL
	t.Cleanup(func() {
		f.down.Store(true)
		f.stop()
		f.hs.Close()
	})
	return f
}

func (f *flakyServer) start() {
	s, err := server.New(server.Config{DataDir: f.dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.srv = s
	f.mu.Unlock()
}

// stop shuts the server down as syncdb serve does: no new requests, long
// polls answered, the requests in flight finished, then Close.
func (f *flakyServer) stop() {
	f.mu.Lock()
	s := f.srv
	f.srv = nil
	f.mu.Unlock()
	if s != nil {
		s.BeginShutdown()
		f.inflight.Wait()
		s.Close()
	}
}

// goAway cuts every connection and stops the server; comeBack restarts it.
func (f *flakyServer) goAway() {
	f.down.Store(true)
	f.stop()
	f.hs.CloseClientConnections()
}

func (f *flakyServer) comeBack() {
	f.start()
	f.down.Store(false)
}

func liveConfig(path, url string, errs *atomic.Int64) syncdb.Config {
	return syncdb.Config{Path: path, URL: url, MaxRetryTime: -1, Live: &syncdb.LiveSync{
		PushDelay: 20 * time.Millisecond, PollTimeout: 2 * time.Second, MaxBackoff: 300 * time.Millisecond,
		OnError: func(error) { errs.Add(1) },
	}}
}

// Two live replicas follow each other through the server, keep working
// while it is gone, and converge by themselves once it is back.
func TestLiveReplicas(t *testing.T) {
	srv := newFlakyServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	var aErrs, bErrs atomic.Int64
	a := open(t, liveConfig(filepath.Join(dir, "a.db"), srv.URL, &aErrs))
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
	b := open(t, liveConfig(filepath.Join(dir, "b.db"), srv.URL, &bErrs))
	changes := b.Changes(ctx)
	count := func(db *syncdb.DB, who string) string {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM t WHERE who = ?", who).Scan(&n); err != nil {
			return err.Error() // the table has not arrived yet
		}
		return fmt.Sprint(n)
	}

	// A's write reaches B without any call to Push or Pull.
	mustExec(t, a, "INSERT INTO t VALUES(1, 'a')")
	testutil.Eventually(t, time.Minute, "a's row on b", func() bool { return count(b, "a") == "1" })
	testutil.Eventually(t, time.Minute, "a change of t on b", func() bool {
		select {
		case c := <-changes:
			return slices.Contains(c.Tables, "t")
		default:
			return false
		}
	})
	mustExec(t, b, "INSERT INTO t VALUES(2, 'b')")
	testutil.Eventually(t, time.Minute, "b's row on a", func() bool { return count(a, "b") == "1" })

	// The server goes away: both keep writing locally and notice.
	srv.goAway()
	aBefore, bBefore := aErrs.Load(), bErrs.Load()
	for i := 0; i < 5; i++ {
		mustExec(t, a, "INSERT INTO t VALUES(?, 'a')", 100+i)
		mustExec(t, b, "INSERT INTO t VALUES(?, 'b')", 200+i)
	}
	testutil.Eventually(t, time.Minute, "both replicas failing to sync", func() bool { return aErrs.Load() > aBefore+1 && bErrs.Load() > bBefore+1 })
	if count(a, "b") != "1" || count(b, "a") != "1" {
		t.Fatal("rows moved while the server was away")
	}

	// It comes back (restarted on its data): they converge by themselves.
	srv.comeBack()
	testutil.Eventually(t, time.Minute, "convergence", func() bool { return count(a, "b") == "6" && count(b, "a") == "6" })
	if ra, rb := rows(t, a, "SELECT * FROM t ORDER BY id"), rows(t, b, "SELECT * FROM t ORDER BY id"); ra != rb {
		t.Fatalf("replicas differ:\n%s\n%s", ra, rb)
	}
	testutil.Eventually(t, time.Minute, "a has pushed everything", func() bool {
		st, err := a.Stats(ctx)
		return err == nil && st.CDCOperations == 0
	})

	// Close stops the loop at once, even in the middle of a long poll.
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if _, ok := <-changes; ok {
		// A change still in flight may come first; then the channel closes.
		if _, ok := <-changes; ok {
			t.Fatal("Changes channel open after Close")
		}
	}
}

// serverExec runs one statement on the server's database as a remote SQL
// (Hrana) client would, in a transaction of its own.
func serverExec(t *testing.T, url, sql string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"requests": []any{
		map[string]any{"type": "execute", "stmt": map[string]any{"sql": sql}},
		map[string]any{"type": "close"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/v2/pipeline", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Type  string `json:"type"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pipeline: %d %v", resp.StatusCode, err)
	}
	if len(out.Results) == 0 || out.Results[0].Type != "ok" {
		t.Fatalf("%s: %+v", sql, out.Results)
	}
}

// A subscriber reading during a bulk pull sees the table before or after
// the remote transaction, never part of it, and is told after the pull
// which tables changed, at the revision its reads then see.
func TestChangesDuringBulkPull(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE big(id INTEGER PRIMARY KEY, v INTEGER, pad TEXT); CREATE TABLE other(id INTEGER PRIMARY KEY, doc TEXT)")
	mustExec(t, a, "INSERT INTO other VALUES(1, ?)", strings.Repeat("x", 20000))
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	changes := b.Changes(ctx)

	// The bulk transaction is made on the server, in one statement: a
	// push of as many rows replays them one by one (most of the test's
	// time under -race), and the pull is the same.
	const n = 20000
	serverExec(t, url, fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < %d)
		INSERT INTO big SELECT i, 1, hex(randomblob(50)) FROM s`, n))

	// Readers: all of big's rows or none, never a part.
	var wg sync.WaitGroup
	var reads, torn atomic.Int64
	stop := make(chan struct{})
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var cnt, sum int64
				if err := b.QueryRow(ctx, "SELECT count(*), coalesce(sum(v), 0) FROM big").Scan(&cnt, &sum); err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
				if (cnt != 0 && cnt != n) || sum != cnt {
					torn.Add(1)
				}
			}
		}()
	}
	testutil.Eventually(t, time.Minute, "readers running", func() bool { return reads.Load() > 0 })
	changed, err := b.Pull(ctx)
	if err != nil || !changed {
		t.Fatalf("pull: %v %v", changed, err)
	}
	c := <-changes
	var cnt int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&cnt); err != nil || cnt != n {
		t.Fatalf("after the change was reported: %d rows, %v", cnt, err)
	}
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Revision != st.Revision || !slices.Equal(c.Tables, []string{"big"}) {
		t.Fatalf("change %+v, want tables [big] at revision %s", c, st.Revision)
	}
	close(stop)
	wg.Wait()
	if torn.Load() > 0 {
		t.Fatalf("%d of %d reads saw part of the pull", torn.Load(), reads.Load())
	}

	// Only the overflow pages of one big value change: still reported.
	mustExec(t, a, "UPDATE other SET doc = substr(doc, 1, 19990) || 'tail change' WHERE id = 1")
	// A schema change of its own.
	mustExec(t, a, "CREATE TABLE fresh(id INTEGER PRIMARY KEY)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if c := <-changes; !slices.Equal(c.Tables, []string{"fresh", "other"}) {
		t.Fatalf("change %+v, want [fresh other]", c)
	}

	// A subscriber that does not read gets the missed pulls merged.
	slow := b.Changes(ctx)
	for i, tbl := range []string{"big", "fresh"} {
		mustExec(t, a, fmt.Sprintf("INSERT INTO %s(id) VALUES(%d)", tbl, n+10+i))
		if err := a.Push(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		<-changes
	}
	st, _ = b.Stats(ctx)
	var merged syncdb.Change
	testutil.Eventually(t, time.Minute, "the merged change", func() bool {
		select {
		case c := <-slow:
			merged.Revision = c.Revision
			merged.Tables = append(merged.Tables, c.Tables...)
		default:
		}
		return merged.Revision == st.Revision
	})
	slices.Sort(merged.Tables)
	if !slices.Equal(slices.Compact(merged.Tables), []string{"big", "fresh"}) {
		t.Fatalf("merged %+v", merged)
	}
}

// On a live replica, explicit Sync calls do not wait for the long poll in
// flight (PollTimeout here is far longer than the bound checked).
func TestLiveExplicitSync(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	var errs atomic.Int64
	cfg := liveConfig(filepath.Join(dir, "a.db"), url, &errs)
	cfg.Live.PollTimeout = 2 * time.Minute
	a := open(t, cfg)
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	time.Sleep(200 * time.Millisecond) // the loop pushes, then waits at the server
	for i := 0; i < 3; i++ {
		start := time.Now()
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("Sync on a live replica took %v", d)
		}
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "INSERT INTO t VALUES(1)")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Minute, "b's row on a", func() bool { return rows(t, a, "SELECT count(*) FROM t") == "1" })
}

// A live replica with a conflict waiting keeps following the server (the
// conflict is reported, not retried as a failure), and pushes by itself
// once the conflict is resolved (case 1 on a live replica).
func TestLiveWithAConflictWaiting(t *testing.T) {
	// Waits on timers (little CPU) and touches no process-wide state
	// (failpoints, hooks, environment): runs beside the other such tests.
	t.Parallel()
	ctx := context.Background()
	url, dir := newServer(t), t.TempDir()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, a, "INSERT INTO kv VALUES(5, 'a')")
	mustExec(t, b, "INSERT INTO kv VALUES(5, 'b')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b sync: %v, want ErrConflict", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var errs atomic.Int64
	var reported atomic.Value
	cfg := liveConfig(filepath.Join(dir, "b.db"), url, &errs)
	cfg.Live.OnError = func(err error) {
		errs.Add(1)
		if errors.Is(err, syncdb.ErrConflict) {
			reported.Store(err.Error())
		}
	}
	b = open(t, cfg)
	// The server's news still arrive.
	mustExec(t, a, "INSERT INTO kv VALUES(6, 'a6')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Minute, "a's new row on b", func() bool { return rows(t, b, "SELECT v FROM kv WHERE k = 6") == "a6" })
	testutil.Eventually(t, time.Minute, "the conflict reported", func() bool { return reported.Load() != nil })
	n := errs.Load()
	time.Sleep(3 * time.Second) // more than a long poll
	if d := errs.Load() - n; d > 1 {
		t.Errorf("the waiting conflict was reported %d more times", d)
	}
	// Resolved, the local row reaches the server without a call to Push.
	cs := conflicts(t, b)
	if len(cs) != 1 {
		t.Fatalf("conflicts: %+v", cs)
	}
	if err := b.ResolveConflict(ctx, cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Minute, "b's resolution on a", func() bool {
		if _, err := a.Pull(ctx); err != nil && !errors.Is(err, syncdb.ErrConflict) {
			t.Fatal(err)
		}
		return rows(t, a, "SELECT v FROM kv WHERE k = 5") == "b"
	})
}
