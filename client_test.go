package syncdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/syncdb/syncdb"
)

// Checkpoints (explicit and automatic) keep the synced base: pulls after
// them still apply correctly, with local changes rebased.
func TestCheckpointKeepsBase(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url, AutoCheckpointFrames: 50})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	// Rows of 360 bytes: about as many pages as 300 and 400 rows of 120 bytes
	// (which a push replays one by one, three times slower under -race)
	// and, planted, the same checkpoints that lose base pages caught.
	for round := 0; round < 5; round++ {
		mustExec(t, a, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) INSERT OR REPLACE INTO t SELECT ?*1000+i, hex(randomblob(180)) FROM n", round)
		if err := a.Push(ctx); err != nil {
			t.Fatal(err)
		}
		// B writes enough locally to trigger automatic checkpoints, and
		// checkpoints explicitly too, before pulling.
		mustExec(t, b, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 130) INSERT OR REPLACE INTO t SELECT 100000+?*1000+i, hex(randomblob(180)) FROM n", round)
		if round%2 == 0 {
			if err := b.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// A row B has from an earlier pull, changed locally before this one.
		mustExec(t, b, "UPDATE t SET v = 'b' WHERE id = ?", max(0, round-1)*1000+1)
		if _, err := b.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		integrity(t, b)
	}
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if ra, rb := rows(t, a, "SELECT * FROM t ORDER BY id"), rows(t, b, "SELECT * FROM t ORDER BY id"); ra != rb || !strings.Contains(rb, "|b") {
		t.Fatalf("replicas differ after checkpoints (a %d bytes, b %d bytes)", len(ra), len(rb))
	}
	t.Logf("stats: %+v", st)
}

func integrity(t *testing.T, db *syncdb.DB) {
	t.Helper()
	var ok string
	if err := db.QueryRow(context.Background(), "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q %v", ok, err)
	}
}

// Deferred mode: a database opened without a URL works locally; the first
// pull once a URL is set keeps the local rows, and pushing delivers them.
func TestDeferred(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'remote')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "d.db")
	d, err := syncdb.Open(ctx, syncdb.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, d, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, d, "INSERT INTO t VALUES(2, 'local')")
	if err := d.Push(ctx); !errors.Is(err, syncdb.ErrNoURL) {
		t.Fatalf("push without URL: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = open(t, syncdb.Config{Path: path, URL: url})
	if _, err := d.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, d, "SELECT * FROM t ORDER BY id"); got != "1|remote\n2|local" {
		t.Fatalf("after the first pull: %q", got)
	}
	if err := d.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT * FROM t ORDER BY id"); got != "1|remote\n2|local" {
		t.Fatalf("a: %q", got)
	}
	integrity(t, d)
}

// Reopen without network, push later; the URL is remembered.
func TestReopenThenPush(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	path := filepath.Join(dir, "a.db")
	a, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'before close')")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = open(t, syncdb.Config{Path: path}) // no URL: the saved one is used
	mustExec(t, a, "INSERT INTO t VALUES(2, 'after reopen')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	if got := rows(t, b, "SELECT * FROM t ORDER BY id"); got != "1|before close\n2|after reopen" {
		t.Fatalf("b: %q", got)
	}
}

// Another program writing to or checkpointing the files is detected and
// refused, with a recovery hint, instead of corrupting the database.
func TestExternalModification(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	for _, how := range []string{"checkpoint", "write"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(dir, how+".db")
			a, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url})
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, a, "CREATE TABLE IF NOT EXISTS t_"+how+"(id INTEGER PRIMARY KEY, v TEXT)")
			mustExec(t, a, "INSERT INTO t_"+how+" VALUES(1, 'x')")
			// A foreign checkpoint changes the file only if the WAL holds
			// frames: after a crash (Close empties it).
			closeAs(t, a, path, how == "checkpoint")
			other, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			if how == "checkpoint" {
				_, err = other.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			} else {
				_, err = other.Exec("INSERT INTO t_" + how + " VALUES(2, 'foreign')")
			}
			if err != nil {
				t.Fatal(err)
			}
			other.Close()
			// The replica opens for reading; writes and syncs are refused
			// with what to run.
			b := open(t, syncdb.Config{Path: path, URL: url})
			if _, err := b.Pull(ctx); !errors.Is(err, syncdb.ErrExternalModification) || !strings.Contains(err.Error(), "syncdb recover "+path) {
				t.Fatalf("pull after a foreign %s: %v", how, err)
			}
			if got := rows(t, b, "SELECT count(*) >= 1 FROM t_"+how); got != "1" {
				t.Fatalf("read after a foreign %s: %q", how, got)
			}
		})
	}
}

// A push whose response is lost after the server committed is not applied
// twice: the retry reads the high-water mark first.
func TestPushExactlyOnceWhenResponseLost(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	var drop atomic.Int32
	client := &http.Client{Transport: dropResponses{next: http.DefaultTransport, drop: &drop}}
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, HTTPClient: client})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 0)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	// Count, on the server, how often an update of row 1 is applied.
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, b, "CREATE TABLE audit(id INTEGER PRIMARY KEY, at INTEGER)")
	mustExec(t, b, "CREATE TRIGGER count_updates AFTER UPDATE ON t BEGIN INSERT INTO audit(at) VALUES (NEW.n); END")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "UPDATE t SET n = 1 WHERE id = 1")
	drop.Store(1) // the next push's response is lost after the server ran it
	// The push retries by itself, re-reading the high-water mark first.
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if drop.Load() != 0 {
		t.Fatal("no response was dropped: the test tested nothing")
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, "SELECT count(*) FROM audit"); got != "1" {
		t.Fatalf("the update was applied %s times on the server", got)
	}
}

// dropResponses loses the response of the next pipeline request after the
// server handled it.
type dropResponses struct {
	next http.RoundTripper
	drop *atomic.Int32
}

func (d dropResponses) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, "/v2/pipeline") && strings.Contains(r.Header.Get("Content-Type"), "json") {
		if r.ContentLength != 0 && d.drop.Load() > 0 && bodyIsPush(r) {
			d.drop.Add(-1)
			resp.Body.Close()
			return nil, errors.New("connection reset (simulated)")
		}
	}
	return resp, err
}

func bodyIsPush(r *http.Request) bool { return r.ContentLength > 400 }

// Tables without a primary key are refused unless kept local.
func TestNoPrimaryKey(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, IgnoreTables: []string{"scratch"}})
	mustExec(t, a, "CREATE TABLE nopk(a, b)")
	if _, err := a.Exec(ctx, "INSERT INTO nopk VALUES(1, 2)"); !errors.Is(err, syncdb.ErrNoPrimaryKey) {
		t.Fatalf("insert into a table without a key: %v", err)
	}
	if got := rows(t, a, "SELECT count(*) FROM nopk"); got != "0" {
		t.Fatalf("the refused write committed: %s rows", got)
	}
	mustExec(t, a, "CREATE TABLE scratch(a, b)")
	mustExec(t, a, "INSERT INTO scratch VALUES(1, 2)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	// Local tables survive pulls.
	if got := rows(t, a, "SELECT * FROM scratch"); got != "1|2" {
		t.Fatalf("scratch after pull: %q", got)
	}
}

func TestRefusedStatements(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db")})
	for _, q := range []string{"BEGIN", "COMMIT", "PRAGMA journal_mode=DELETE", "PRAGMA wal_checkpoint(FULL)", "VACUUM", "ROLLBACK"} {
		if _, err := a.Exec(ctx, q); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
			t.Errorf("%s: %v", q, err)
		}
	}
	if _, err := a.Exec(ctx, "PRAGMA journal_mode"); err != nil {
		t.Errorf("reading a pragma: %v", err)
	}
}

// Schema changes travel both ways.
func TestSchemaChanges(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, a, `CREATE TABLE "my table"(id INTEGER PRIMARY KEY, v TEXT)`)
	mustExec(t, a, `INSERT INTO "my table" VALUES(1, 'x')`)
	mustExec(t, a, `ALTER TABLE "my table" ADD COLUMN extra INTEGER DEFAULT 7`)
	mustExec(t, a, `CREATE INDEX "my index" ON "my table"(v)`)
	mustExec(t, a, `CREATE TABLE gone(id INTEGER PRIMARY KEY)`)
	mustExec(t, a, `DROP TABLE gone`)
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, `SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite%' AND name NOT LIKE '\_syncdb%' ESCAPE '\' AND name != 'turso_sync_last_change_id' ORDER BY name`); got != "index|my index\ntable|my table" {
		t.Fatalf("schema on b: %q", got)
	}
	mustExec(t, b, `UPDATE "my table" SET extra = 8 WHERE id = 1`)
	mustExec(t, b, `ALTER TABLE "my table" ADD COLUMN more TEXT`)
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, `SELECT * FROM "my table"`); got != "1|x|8|<nil>" {
		t.Fatalf("a: %q", got)
	}
	integrity(t, a)
}

// The last push wins on the same row.
func TestLastPushWins(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, w TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'orig', 'orig')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, a, "UPDATE t SET v = 'a' WHERE id = 1")
	mustExec(t, b, "UPDATE t SET v = 'b', w = 'b' WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	for _, db := range []*syncdb.DB{a, b} {
		if _, err := db.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, db, "SELECT v, w FROM t"); got != "b|b" {
			t.Fatalf("got %q", got)
		}
	}
	// An update of a row deleted remotely meanwhile is a conflict: it
	// waits, and brings the row back only if the local side is kept.
	mustExec(t, a, "DELETE FROM t WHERE id = 1")
	mustExec(t, b, "UPDATE t SET w = 'kept' WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("push of an update of a deleted row: %v", err)
	}
	cs, err := b.Conflicts(ctx)
	if err != nil || len(cs) != 1 || cs[0].Kind != "update-deleted" {
		t.Fatalf("conflicts: %+v %v", cs, err)
	}
	if err := b.ResolveConflict(ctx, cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	for _, db := range []*syncdb.DB{a, b} {
		if _, err := db.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, db, "SELECT v, w FROM t"); got != "b|kept" {
			t.Fatalf("after delete vs update: %q", got)
		}
	}
}

// Cancellation is honoured: a request whose context ends returns promptly.
func TestContextCancellation(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, LongPollTimeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Pull(ctx) // a long poll with nothing to wait for
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("pull: %v after %v", err, time.Since(start))
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer ccancel()
	_, err = a.Exec(cctx, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n) SELECT count(*) FROM n")
	if err == nil {
		t.Fatal("an endless statement was not interrupted")
	}
	mustExec(t, a, "CREATE TABLE ok(id INTEGER PRIMARY KEY)")
}

// Chunked bootstrap and batched pushes give the same result as the
// single-request forms.
func TestChunkedBootstrapAndBatchedPush(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, PushBatchChanges: 100})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	for i := 0; i < 50; i++ { // 50 transactions of 20 rows
		if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
			for j := 0; j < 20; j++ {
				if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(?, hex(randomblob(100)))", i*20+j); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := a.Stats(ctx)
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url, BootstrapChunkBytes: 16 << 10})
	if ra, rb := rows(t, a, "SELECT * FROM t ORDER BY id"), rows(t, b, "SELECT * FROM t ORDER BY id"); ra != rb || strings.Count(rb, "\n") != 999 {
		t.Fatal("chunked bootstrap differs")
	}
	integrity(t, b)
	if st.NetworkSentBytes == 0 || st.LastPushUnixTime == 0 || st.Revision == "" {
		t.Fatalf("stats: %+v", st)
	}
}

// A write by another program while the database is open is noticed before
// syncdb writes or pulls again.
func TestForeignWriteWhileOpen(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	path := filepath.Join(dir, "a.db")
	a, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec("INSERT INTO t VALUES(1, 'foreign')"); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if _, err := a.Pull(ctx); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("pull after a foreign write: %v", err)
	}
	if _, err := a.Exec(ctx, "INSERT INTO t VALUES(2, 'mine')"); !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("write after a foreign write: %v", err)
	}
}

// Close stops every actor and goroutine, those of a live replica, of
// Changes subscriptions and of DB.SQL included.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	cycle := func() {
		db, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, LongPollTimeout: time.Second,
			Live: &syncdb.LiveSync{PollTimeout: time.Second, PushDelay: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		db.Changes(ctx)
		mustExec(t, db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY)")
		if _, err := db.SQL().ExecContext(ctx, "INSERT INTO t DEFAULT VALUES"); err != nil {
			t.Fatal(err)
		}
		tx, err := db.SQL().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if err := db.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		// Close with a long poll in flight.
		go db.Pull(ctx)
		time.Sleep(50 * time.Millisecond)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // the server opens its database and keeps it open
	time.Sleep(100 * time.Millisecond)
	ignore := goleak.IgnoreCurrent()
	for i := 0; i < 3; i++ {
		cycle()
	}
	goleak.VerifyNone(t, ignore, goleak.IgnoreTopFunction("net/http.(*conn).serve"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// A push request replayed later (a duplicate delivered by the network)
// changes nothing: no old values come back, the high-water mark does not
// move back.
func TestReplayedPushIsHarmless(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	rec := &recordPushes{next: http.DefaultTransport}
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, HTTPClient: &http.Client{Transport: rec}})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'old')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	old := rec.last
	mustExec(t, a, "UPDATE t SET v = 'new' WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/v2/pipeline", "application/json", strings.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	if got := rows(t, b, "SELECT v FROM t"); got != "new" {
		t.Fatalf("after a replayed push: %q", got)
	}
	mustExec(t, a, "INSERT INTO t VALUES(2, 'after')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|new\n2|after" {
		t.Fatalf("b: %q", got)
	}
}

type recordPushes struct {
	next http.RoundTripper
	last string
}

func (r *recordPushes) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/v2/pipeline") && req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			if strings.Contains(string(b), "COMMIT") {
				r.last = string(b)
			}
		}
	}
	return r.next.RoundTrip(req)
}

// One DB at a time per database file; CDCOperations counts what is not
// pushed yet.
func TestInUseAndStats(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	path := filepath.Join(dir, "a.db")
	a := open(t, syncdb.Config{Path: path, URL: url})
	if _, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url}); !errors.Is(err, syncdb.ErrInUse) {
		t.Fatalf("second open: %v", err)
	}
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	mustExec(t, a, "INSERT INTO t VALUES(1), (2)")
	st, _ := a.Stats(ctx)
	if st.CDCOperations != 3 {
		t.Fatalf("before push: %d operations", st.CDCOperations)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ = a.Stats(ctx); st.CDCOperations != 0 {
		t.Fatalf("after push: %d operations", st.CDCOperations)
	}
	if _, err := a.Exec(ctx, "PRAGMA wal_checkpoint"); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
		t.Fatalf("PRAGMA wal_checkpoint: %v", err)
	}
}

// A statement that makes SQLite roll the whole transaction back ends the
// Tx: nothing after it commits on its own.
func TestTxRolledBackBySQLite(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db")})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'x')")
	err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		tx.Exec(ctx, "INSERT INTO t VALUES(2, 'y')")
		if _, err := tx.Exec(ctx, "INSERT OR ROLLBACK INTO t VALUES(3, 'x')"); err == nil {
			t.Error("the conflicting insert succeeded")
		}
		tx.Exec(ctx, "INSERT INTO t VALUES(4, 'z')") // must not commit by itself
		return nil
	})
	if err == nil {
		t.Fatal("the transaction reported success")
	}
	if got := rows(t, a, "SELECT id FROM t ORDER BY id"); got != "1" {
		t.Fatalf("rows after the rolled-back transaction: %q", got)
	}
	if st, _ := a.Stats(ctx); st.CDCOperations != 2 {
		t.Fatalf("captured changes: %d, want 2 (the table and the first insert)", st.CDCOperations)
	}
}

// The writer keeps the user's DML prepared, the read pool the SELECTs. The
// same statement text stays right across the schema changing under it:
// locally, by a pull, and a table dropped and made again with other
// columns.
func TestRepeatedStatementsAcrossSchemaChanges(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	const ins = `INSERT INTO t VALUES (?, ?)`
	const upd = `UPDATE t SET v = v || ? WHERE id = ?`
	mustExec(t, a, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	for i := 1; i <= 3; i++ {
		mustExec(t, a, ins, i, fmt.Sprint("a", i))
	}
	mustExec(t, a, upd, "+", 1)
	const all = `SELECT * FROM t ORDER BY id`
	const vid = `SELECT v, id FROM t ORDER BY id`
	if got := rows(t, a, all); got != "1|a1+\n2|a2\n3|a3" {
		t.Fatalf("before ALTER: %q", got)
	}
	if got := rows(t, a, vid); got != "a1+|1\na2|2\na3|3" {
		t.Fatalf("before ALTER: %q", got)
	}
	// A column added locally: the cached INSERT now has too few values.
	mustExec(t, a, `ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 0`)
	if got := rows(t, a, all); got != "1|a1+|0\n2|a2|0\n3|a3|0" {
		t.Fatalf("after ALTER: %q", got)
	}
	if _, err := a.Exec(ctx, ins, 4, "a4"); err == nil || !strings.Contains(err.Error(), "3 columns but 2 values") {
		t.Fatalf("insert of 2 values into 3 columns: %v", err)
	}
	mustExec(t, a, upd, "+", 2)
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	// The table made again by another client with other columns, pulled.
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, `DROP TABLE t`)
	mustExec(t, b, `CREATE TABLE t(v TEXT, id INTEGER PRIMARY KEY)`)
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, ins, "first", 10) // the same text, now v then id
	mustExec(t, a, upd, "!", 10)
	if err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		_, err := tx.Exec(ctx, ins, "second", 11)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := "first!|10\nsecond|11"
	if got := rows(t, a, vid); got != want {
		t.Fatalf("a: %q", got)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, `SELECT v, id FROM t ORDER BY id`); got != want {
		t.Fatalf("b: %q", got)
	}
	integrity(t, a)
}
