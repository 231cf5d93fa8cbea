package syncactor_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/syncactor"
	"github.com/syncdb/syncdb/wire/hrana"
)

// The sync actor's contract with its callers, on real parts: a syncdb
// server on loopback, replicas of real SQLite files, the real metadata,
// network and database actors around it (assembled as the facade does,
// without the facade).

// testServer is a real server on loopback that counts the pipeline
// requests it answers.
type testServer struct {
	url       string
	pipelines atomic.Int64
}

func newServer(t *testing.T) *testServer {
	t.Helper()
	s, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{}
	h := s.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v2/pipeline") {
			ts.pipelines.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.BeginShutdown()
		hs.Close()
		s.Close()
	})
	ts.url = hs.URL
	return ts
}

// query runs a one-value query on the server, outside any replica.
func (ts *testServer) query(t *testing.T, q string) string {
	t.Helper()
	body, err := rawclient.Exec(ts.url, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var resp hrana.PipelineRespBody
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	rs := resp.Results[0].Response.StmtResult
	if rs == nil || len(rs.Rows) != 1 || len(rs.Rows[0]) != 1 {
		t.Fatalf("%s: unexpected answer %s", q, body)
	}
	return fmt.Sprint(rs.Rows[0][0].V)
}

// noReaders is the database actor's gate for a replica without read
// connections: a pull has no reader to hold back.
type noReaders struct{}

func (noReaders) Close() {}
func (noReaders) Open()  {}

type replica struct {
	path   string
	sys    *actors.System
	db     dbactor.Handle
	sync   syncactor.Handle
	writer *dbactor.Writer
}

// newReplica bootstraps a replica of ts's database and opens it.
func newReplica(t *testing.T, ts *testServer, name string, pushBatch int) *replica {
	t.Helper()
	ctx := t.Context()
	r := &replica{path: filepath.Join(t.TempDir(), name+".db")}
	r.sys = actors.NewSystem(actors.Options{Name: name, OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})
	t.Cleanup(r.sys.Stop)
	meta, err := metaactor.Spawn(r.sys, fsx.OS, r.path+"-info")
	if err != nil {
		t.Fatal(err)
	}
	net, err := netactor.Spawn(r.sys, netactor.Config{URL: ts.url})
	if err != nil {
		t.Fatal(err)
	}
	if r.db, r.writer, err = dbactor.Spawn(dbactor.Config{Path: r.path, ClientID: name, Sys: r.sys, Meta: meta, Gate: noReaders{}}); err != nil {
		t.Fatal(err)
	}
	if r.sync, err = syncactor.Spawn(syncactor.Config{Sys: r.sys, DB: r.db, Net: net, Meta: meta, Path: r.path, ClientID: name, PushBatch: pushBatch}); err != nil {
		t.Fatal(err)
	}
	if err := r.sync.Bootstrap(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.db.Open(ctx, &messages.OpenDB{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *replica) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := r.writer.Exec(t.Context(), q, nil); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (r *replica) push(t *testing.T) messages.PushResult {
	t.Helper()
	res, err := r.sync.Push(t.Context(), false)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res
}

func (r *replica) pull(t *testing.T) messages.PullResult {
	t.Helper()
	res, err := r.sync.Pull(t.Context(), &messages.Pull{})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	return res
}

// query reads the replica's file as the facade's readers do.
func (r *replica) query(t *testing.T, q string) string {
	t.Helper()
	db, err := sql.Open("sqlite", dbactor.ReaderDSN(r.path, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s sql.NullString
	if err := db.QueryRow(q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s.String
}

// Push sends each local change to the server once: the server has them
// after it, a second Push with nothing new sends no request, and a change
// made after is pushed alone. Pull brings another replica's pushed changes
// and says that the database changed; a pull with nothing new does not.
func TestPushPull(t *testing.T) {
	ts := newServer(t)
	a := newReplica(t, ts, "a", 0)
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	a.exec(t, "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
	if got := a.push(t).Pushed; got != 3 { // the schema change and two rows
		t.Fatalf("first push: %d changes, want 3", got)
	}
	if got := ts.query(t, "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY id)"); got != "one,two" {
		t.Fatalf("the server has %q after the push", got)
	}
	before := ts.pipelines.Load()
	if got := a.push(t).Pushed; got != 0 {
		t.Fatalf("push with nothing new: %d changes", got)
	}
	if n := ts.pipelines.Load() - before; n != 0 {
		t.Fatalf("push with nothing new sent %d requests", n)
	}
	a.exec(t, "UPDATE t SET v = 'uno' WHERE id = 1")
	if got := a.push(t).Pushed; got != 1 {
		t.Fatalf("push of one update: %d changes", got)
	}

	b := newReplica(t, ts, "b", 0)
	if got := b.query(t, "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY id)"); got != "uno,two" {
		t.Fatalf("a new replica has %q", got)
	}
	b.exec(t, "DELETE FROM t WHERE id = 2")
	b.push(t)
	res := a.pull(t)
	if !res.Changed || res.Revision == "" {
		t.Fatalf("pull of b's delete: %+v", res)
	}
	if got := a.query(t, "SELECT count(*) FROM t"); got != "1" {
		t.Fatalf("a has %s rows after the pull, want 1", got)
	}
	if res := a.pull(t); res.Changed {
		t.Fatalf("pull with nothing new: %+v", res)
	}
}

// A push split into batches (Config.PushBatch) never splits a local
// transaction: after each batch the server has whole transactions only.
// Planted: go test -tags mutation_split_txns (dbactor cuts a batch at its
// limit inside a transaction) fails here.
func TestPushBatchesWholeTransactions(t *testing.T) {
	ts := newServer(t)
	a := newReplica(t, ts, "a", 2)
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, txn INTEGER)")
	a.push(t)
	a.exec(t, "INSERT INTO t VALUES (1, 1), (2, 1), (3, 1)") // more than a batch
	a.exec(t, "INSERT INTO t VALUES (4, 2)")
	a.exec(t, "INSERT INTO t VALUES (5, 3), (6, 3)")
	a.exec(t, "INSERT INTO t VALUES (7, 4)")

	var mu sync.Mutex
	var seen []string
	failpoint.Set(func(name, owner string) {
		if name != "push.sent" || owner != a.path {
			return
		}
		// Each transaction wrote its number on all its rows, as many as
		// its number of rows: a transaction is whole iff count = its size.
		got := ts.query(t, "SELECT coalesce(group_concat(txn || ':' || n, ' '), '') FROM (SELECT txn, count(*) n FROM t GROUP BY txn ORDER BY txn)")
		mu.Lock()
		seen = append(seen, got)
		mu.Unlock()
	})
	defer failpoint.Set(nil)
	if got := a.push(t).Pushed; got != 7 {
		t.Fatalf("pushed %d changes, want 7", got)
	}
	size := map[string]string{"1": "3", "2": "1", "3": "2", "4": "1"}
	if len(seen) < 2 {
		t.Fatalf("the push took %d batches (%v), want several", len(seen), seen)
	}
	for i, s := range seen {
		for _, f := range strings.Fields(s) {
			txn, n, _ := strings.Cut(f, ":")
			if size[txn] != n {
				t.Errorf("after batch %d the server has %s of transaction %s's %s rows (all: %s)", i+1, n, txn, size[txn], s)
			}
		}
	}
	t.Logf("the server after each batch (transaction:rows): %q", seen)
}

// A push the server refuses because a change meets a row another replica
// changed meanwhile changes nothing on the server; the push pulls first,
// the pull records the conflict, and Push fails with ErrConflict naming
// it, having pushed what does not conflict; resolved for the local side,
// the next push sends the change over the other replica's.
func TestPushConflict(t *testing.T) {
	ts := newServer(t)
	a := newReplica(t, ts, "a", 0)
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	a.exec(t, "INSERT INTO t VALUES (1, 'x'), (2, 'y')")
	a.push(t)
	b := newReplica(t, ts, "b", 0)
	b.exec(t, "UPDATE t SET v = 'from b' WHERE id = 1")
	b.push(t)

	a.exec(t, "DELETE FROM t WHERE id = 1") // a has not seen b's update
	a.exec(t, "INSERT INTO t VALUES (3, 'z')")
	res, err := a.sync.Push(t.Context(), false)
	if !errors.Is(err, dbactor.ErrConflict) {
		t.Fatalf("push over b's update: %v, want ErrConflict", err)
	}
	if !res.Pulled.Changed {
		t.Errorf("the push did not report the pull it ran first: %+v", res)
	}
	cs, err := a.db.ListConflicts(t.Context(), false)
	if err != nil || len(cs) != 1 || cs[0].Kind != "delete-updated" || fmt.Sprint(cs[0].Key) != "[1]" {
		t.Fatalf("conflicts: %+v, %v; want one delete-updated of [1]", cs, err)
	}
	if got := ts.query(t, "SELECT group_concat(id || '=' || v, ' ') FROM (SELECT * FROM t ORDER BY id)"); got != "1=from b 2=y 3=z" {
		t.Fatalf("the server has %q, want b's row kept and a's insert", got)
	}

	// Resolved for the local side, the delete is pushed over b's update.
	if err := a.db.ResolveConflict(t.Context(), cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	a.push(t)
	if got := ts.query(t, "SELECT group_concat(id || '=' || v, ' ') FROM (SELECT * FROM t ORDER BY id)"); got != "2=y 3=z" {
		t.Fatalf("after the resolution the server has %q, want row 1 deleted", got)
	}
	if cs, err := a.db.ListConflicts(t.Context(), false); err != nil || len(cs) != 0 {
		t.Fatalf("conflicts after the resolution: %+v, %v", cs, err)
	}
}

// Pull with Tables reports the tables whose rows or schema the pull
// changed, sorted, and only those.
func TestPullTables(t *testing.T) {
	ts := newServer(t)
	a := newReplica(t, ts, "a", 0)
	b := newReplica(t, ts, "b", 0)
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(id INTEGER PRIMARY KEY, v); CREATE TABLE w(id INTEGER PRIMARY KEY, v)")
	a.exec(t, "INSERT INTO u VALUES (1, 'x'); INSERT INTO t VALUES (1, 'y')")
	a.push(t)
	pull := func() messages.PullResult {
		t.Helper()
		res, err := b.sync.Pull(t.Context(), &messages.Pull{Tables: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := pull(); fmt.Sprint(res.Tables) != "[t u w]" {
		t.Fatalf("first pull: tables %v, want [t u w]", res.Tables)
	}
	a.exec(t, "UPDATE u SET v = 'z' WHERE id = 1")
	a.push(t)
	if res := pull(); !res.Changed || fmt.Sprint(res.Tables) != "[u]" {
		t.Fatalf("pull of an update of u: %+v, want tables [u]", res)
	}
	if res := pull(); res.Changed || len(res.Tables) != 0 {
		t.Fatalf("pull with nothing new: %+v", res)
	}
}
