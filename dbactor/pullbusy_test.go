package dbactor_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// TestApplyPullBusyWriter: a pull whose T1 commits while a statement on
// the writer is stepped, not reset (rows a transaction function left
// open), fails with errWriterBusy and leaves the pull pending: T1 in the
// WAL (the server's rows), T2 not run (no local change on top), nothing
// run on the writer's stale page cache. Once the rows are closed the next
// request refreshes the cache and finishes the pull: the local change is
// replayed and the database is intact. TestRefreshWriterBusyStatement is
// refreshWriter's part alone. Planted (see the commit): applyPull running
// recoverPull after errWriterBusy; and with that, recoveryFacts taking the
// stale writer for one.
func TestApplyPullBusyWriter(t *testing.T) {
	url := newLoopbackServer(t)
	dir := t.TempDir()
	a := openSynced(t, url, filepath.Join(dir, "a.db"), "a")
	a.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	a.exec(t, "INSERT INTO t VALUES (1, 'a1')")
	a.push(t)
	bPath := filepath.Join(dir, "b.db")
	b := openSynced(t, url, bPath, "b")
	b.exec(t, "INSERT INTO t VALUES (10, 'b10')")
	from := b.syncedRevision(t)
	a.exec(t, "INSERT INTO t VALUES (2, 'a2')")
	a.push(t)

	// Rows left open on the writer, stepped once: its own ctx, so that
	// nothing closes them before the test does.
	var rows *sql.Rows
	if err := b.db.Tx(t.Context(), func(c messages.WriteConn) error {
		var err error
		if rows, err = c.Query(context.Background(), "SELECT id FROM t"); err != nil {
			return err
		}
		if !rows.Next() {
			return errors.New("no row")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer rows.Close()

	info, w := download(t, b)
	var mu sync.Mutex
	var hits []string
	failpoint.Set(func(name, owner string) {
		if owner == bPath {
			mu.Lock()
			hits = append(hits, name)
			mu.Unlock()
		}
	})
	_, err := b.db.ApplyPull(t.Context(), &messages.ApplyPull{
		Revision: info.Header.ServerRevision, DBSize: uint32(info.Header.DbSize), Download: w, Tables: true,
	})
	if !errors.Is(err, dbactor.ErrWriterBusy) {
		t.Fatalf("ApplyPull with rows open on the writer: %v, want errWriterBusy", err)
	}
	failpoint.Set(nil)
	// Nothing after T1 ran on the stale writer: recovery's replay (T2),
	// which may fail on the stale pages (an error joined to the busy one)
	// or succeed on them (pull.t2).
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("ApplyPull reported more than the busy writer (recovery ran on the stale writer): %v", err)
	}
	mu.Lock()
	if !slices.Equal(hits, []string{"pull.journal", "pull.pending", "pull.t1"}) {
		t.Errorf("the busy pull's failpoints: %q, want it to stop after T1", hits)
	}
	mu.Unlock()
	if got := b.syncedRevision(t); got != from {
		t.Errorf("after the busy pull: synced revision %q, want the old %q (the pull pending)", got, from)
	}
	if _, err := os.Stat(layout.For(bPath).Replay); err != nil {
		t.Errorf("after the busy pull the replay journal is gone (%v), want the pull pending", err)
	}
	if got := b.rows(t, "SELECT id || ':' || v FROM t ORDER BY id"); !slices.Equal(got, []string{"1:a1", "2:a2"}) {
		t.Errorf("after the busy pull the file has %q, want T1's (the server's rows) without T2's", got)
	}

	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.PendingChanges(t.Context(), &messages.PendingChanges{Unpushed: true, Peek: true}); err != nil {
		t.Fatalf("the request after the rows closed: %v", err)
	}
	if got := b.syncedRevision(t); got != info.Header.ServerRevision {
		t.Errorf("after the next request: synced revision %q, want the pulled %q", got, info.Header.ServerRevision)
	}
	if got := b.rows(t, "SELECT id || ':' || v FROM t ORDER BY id"); !slices.Equal(got, []string{"1:a1", "2:a2", "10:b10"}) {
		t.Errorf("after the next request b has %q, want the server's rows and its own", got)
	}
	if got := b.rows(t, "PRAGMA integrity_check"); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("integrity_check: %q", got)
	}
	if p := b.unpushed(t); len(p.Changes) != 1 {
		t.Errorf("b's unpushed changes after the pull: %s, want its insert alone", describe(p.Changes))
	}
}

// download is pull's first half: the server's pages after the synced
// revision in a new download of r's.
func download(t *testing.T, r *syncedReplica) (messages.PullInfo, messages.PageSink) {
	t.Helper()
	w, err := r.db.Download(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, err := r.net.PullUpdates(t.Context(), &messages.PullUpdates{
		Req:    &syncpb.PullUpdatesReqProtoBody{ClientRevision: r.syncedRevision(t)},
		OnPage: func(pgno uint32, data []byte) error { return w.Add(pgno, data) },
	})
	if err != nil {
		r.db.DropDownload(t.Context(), w)
		t.Fatalf("download: %v", err)
	}
	return info, w
}

// TestCloseBusyWriter: the actor's close does not wait forever for rows
// left open on the writer (database/sql's close of the connection would):
// it leaves that connection alone. Planted (closeFiles closing it all the
// same): the stop does not return (see the commit).
func TestCloseBusyWriter(t *testing.T) {
	url := newLoopbackServer(t)
	b := openSynced(t, url, filepath.Join(t.TempDir(), "b.db"), "b")
	b.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	b.exec(t, "INSERT INTO t VALUES (1), (2)")
	var rows *sql.Rows
	if err := b.db.Tx(t.Context(), func(c messages.WriteConn) error {
		var err error
		if rows, err = c.Query(context.Background(), "SELECT id FROM t"); err != nil {
			return err
		}
		if !rows.Next() {
			return errors.New("no row")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	done := make(chan struct{})
	go func() { b.sys.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stop with rows open on the writer did not return in 10 s")
	}
}
