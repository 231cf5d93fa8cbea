package dbactor_test

import (
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/syncactor"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The database actor's contract for a pull, on real parts: a syncdb
// server on loopback, replicas bootstrapped and pushed by the real sync
// actor, and the pull under test driven by hand as the sync actor's
// pullOnce drives it: Download, the network actor's PullUpdates into the
// sink, ApplyPull.

func newLoopbackServer(t *testing.T) string {
	t.Helper()
	s, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.BeginShutdown()
		hs.Close()
		s.Close()
	})
	return hs.URL
}

type syncedReplica struct {
	path   string
	url    string
	sys    *actors.System
	meta   metaactor.Handle
	net    netactor.Handle
	db     dbactor.Handle
	sync   syncactor.Handle
	writer *dbactor.Writer
}

// openSynced opens the replica name of the server at url, bootstrapping
// it first if path does not exist.
func openSynced(t *testing.T, url, path, name string) *syncedReplica {
	t.Helper()
	ctx := t.Context()
	r := &syncedReplica{path: path, url: url}
	r.sys = actors.NewSystem(actors.Options{Name: name, OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})
	t.Cleanup(r.sys.Stop)
	var err error
	if r.meta, err = metaactor.Spawn(r.sys, fsx.OS, path+"-info"); err != nil {
		t.Fatal(err)
	}
	if r.net, err = netactor.Spawn(r.sys, netactor.Config{URL: url}); err != nil {
		t.Fatal(err)
	}
	if r.db, r.writer, err = dbactor.Spawn(dbactor.Config{Path: path, ClientID: name, Sys: r.sys, Meta: r.meta, Gate: noReaders{}}); err != nil {
		t.Fatal(err)
	}
	if r.sync, err = syncactor.Spawn(syncactor.Config{Sys: r.sys, DB: r.db, Net: r.net, Meta: r.meta, Path: path, ClientID: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := r.sync.Bootstrap(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.db.Open(ctx, &messages.OpenDB{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *syncedReplica) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := r.writer.Exec(t.Context(), q, nil); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (r *syncedReplica) push(t *testing.T) {
	t.Helper()
	if _, err := r.sync.Push(t.Context(), false); err != nil {
		t.Fatalf("push: %v", err)
	}
}

func (r *syncedReplica) syncedRevision(t *testing.T) string {
	t.Helper()
	m, err := r.meta.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m.SyncedRevision == nil {
		return ""
	}
	return m.SyncedRevision.Revision
}

// pull downloads what the server has after the synced revision and
// applies it: the database actor's part of a pull, by hand.
func (r *syncedReplica) pull(t *testing.T) messages.PullResult {
	t.Helper()
	ctx := t.Context()
	w, err := r.db.Download(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := r.net.PullUpdates(ctx, &messages.PullUpdates{
		Req:    &syncpb.PullUpdatesReqProtoBody{ClientRevision: r.syncedRevision(t)},
		OnPage: func(pgno uint32, data []byte) error { return w.Add(pgno, data) },
	})
	if err != nil {
		r.db.DropDownload(ctx, w)
		t.Fatalf("download: %v", err)
	}
	res, err := r.db.ApplyPull(ctx, &messages.ApplyPull{
		Revision: info.Header.ServerRevision, DBSize: uint32(info.Header.DbSize), Download: w, Tables: true,
	})
	if err != nil {
		t.Fatalf("ApplyPull: %v", err)
	}
	if _, err := os.Stat(r.path + "-changes"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after ApplyPull the download is still there (%v)", err)
	}
	return res
}

// rows reads the replica's file as the facade's readers do.
func (r *syncedReplica) rows(t *testing.T, q string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", dbactor.ReaderDSN(r.path, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r *syncedReplica) unpushed(t *testing.T) messages.Pending {
	t.Helper()
	p, err := r.db.PendingChanges(t.Context(), &messages.PendingChanges{Unpushed: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ApplyPull makes the replica the server's at the pulled revision with
// its unpushed local changes on top: the server's rows and the local ones
// are both there, the local change is still unpushed, once, in a new pull
// generation, the synced revision is the pulled one, the result names the
// changed table, and the download is gone. A pull with nothing new
// changes nothing. All of it holds across a reopen, and the replayed
// change then reaches the server once.
func TestApplyPullReplaysLocalChanges(t *testing.T) {
	url := newLoopbackServer(t)
	dir := t.TempDir()
	a := openSynced(t, url, filepath.Join(dir, "a.db"), "a")
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	a.exec(t, "INSERT INTO t VALUES (1, 'a1')")
	a.push(t)

	bPath := filepath.Join(dir, "b.db")
	b := openSynced(t, url, bPath, "b")
	b.exec(t, "INSERT INTO t VALUES (10, 'b10')")
	before := b.unpushed(t)
	if len(before.Changes) != 1 {
		t.Fatalf("b's unpushed changes before the pull: %s", describe(before.Changes))
	}
	a.exec(t, "INSERT INTO t VALUES (2, 'a2')")
	a.push(t)

	res := b.pull(t)
	if !res.Changed || res.Revision == "" || !slices.Equal(res.Tables, []string{"t"}) {
		t.Fatalf("the pull of a's insert: %+v, want changed, a revision, tables [t]", res)
	}
	check := func(when string) {
		t.Helper()
		if got := b.rows(t, "SELECT id || ':' || v FROM t ORDER BY id"); !slices.Equal(got, []string{"1:a1", "2:a2", "10:b10"}) {
			t.Errorf("%s: b has %q, want the server's rows and its own", when, got)
		}
		p := b.unpushed(t)
		if len(p.Changes) != 1 || p.Changes[0].Table != "t" || p.PullGen <= before.PullGen {
			t.Errorf("%s: b's unpushed changes %s in pull generation %d (before the pull: %d); want its insert alone, in a newer one",
				when, describe(p.Changes), p.PullGen, before.PullGen)
		}
		if got := b.syncedRevision(t); got != res.Revision {
			t.Errorf("%s: synced revision %q, want the pulled %q", when, got, res.Revision)
		}
	}
	check("after the pull")

	if again := b.pull(t); again.Changed || again.Revision != res.Revision || len(again.Tables) != 0 {
		t.Errorf("a pull with nothing new: %+v, want unchanged at %s", again, res.Revision)
	}
	check("after a pull with nothing new")

	b.sys.Stop()
	b = openSynced(t, url, bPath, "b")
	check("after a reopen")
	b.push(t)
	a.pull(t)
	if got := a.rows(t, "SELECT id || ':' || v FROM t ORDER BY id"); !slices.Equal(got, []string{"1:a1", "2:a2", "10:b10"}) {
		t.Errorf("a has %q after b's push and a pull, want b's insert once", got)
	}
	if p := b.unpushed(t); len(p.Changes) != 0 {
		t.Errorf("b's unpushed changes after its push: %s", describe(p.Changes))
	}
}

// A replayed local change that meets a remote change it never saw is
// recorded as a conflict by ApplyPull, with the server's row in place: a
// local update of a row another replica deleted is update-deleted, and
// the row stays deleted until the conflict is resolved.
func TestApplyPullRecordsConflicts(t *testing.T) {
	url := newLoopbackServer(t)
	dir := t.TempDir()
	a := openSynced(t, url, filepath.Join(dir, "a.db"), "a")
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	a.exec(t, "INSERT INTO t VALUES (1, 'a1')")
	a.push(t)
	b := openSynced(t, url, filepath.Join(dir, "b.db"), "b")

	a.exec(t, "DELETE FROM t WHERE id = 1")
	a.push(t)
	b.exec(t, "UPDATE t SET v = 'b1' WHERE id = 1")
	if res := b.pull(t); !res.Changed {
		t.Fatalf("the pull of a's delete: %+v", res)
	}
	cs, err := b.db.ListConflicts(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Kind != dbactor.KindUpdateDeleted || cs[0].Table != "t" || cs[0].Resolved != "" || cs[0].Remote != nil {
		t.Fatalf("conflicts after the pull: %+v, want one waiting update-deleted on t with no remote row", cs)
	}
	if got := b.rows(t, "SELECT id || ':' || v FROM t ORDER BY id"); len(got) != 0 {
		t.Errorf("b has %q, want the server's (no rows) while the conflict waits", got)
	}
}
