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

// TestCloseBusyWriterReopens: after a close that left the writer
// connection unclosed (rows open on it, TestCloseBusyWriter), the next
// open of the same database, in the same process, opens with nothing lost
// and nothing refused: every committed row (the transaction that left the
// rows open included), the unpushed changes, a write after the open, and
// a push of them all. Cases: the rows still open at the reopen, or closed
// first; and a pull that failed busy before the close (T1 in the WAL, the
// cache stale: the close records no clean close, so the open recovers as
// after a crash and finishes the pull).
func TestCloseBusyWriterReopens(t *testing.T) {
	for _, c := range []struct {
		name             string
		closeFirst, pull bool
	}{{"rows-still-open", false, false}, {"rows-closed", true, false}, {"busy-pull", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			url := newLoopbackServer(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "b.db")
			b := openSynced(t, url, path, "b")
			b.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
			b.exec(t, "INSERT INTO t VALUES (1), (2)")
			b.push(t)
			want := []string{"1", "2", "3", "4"}
			if c.pull {
				a := openSynced(t, url, filepath.Join(dir, "a.db"), "a")
				a.exec(t, "INSERT INTO t VALUES (10)")
				a.push(t)
				want = append(want, "10")
			}
			b.exec(t, "INSERT INTO t VALUES (3)")
			var rows *sql.Rows
			if err := b.db.Tx(t.Context(), func(c messages.WriteConn) error {
				if _, err := c.Exec(context.Background(), "INSERT INTO t VALUES (4)"); err != nil {
					return err
				}
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
			if c.pull {
				info, w := download(t, b)
				_, err := b.db.ApplyPull(t.Context(), &messages.ApplyPull{
					Revision: info.Header.ServerRevision, DBSize: uint32(info.Header.DbSize), Download: w, Tables: true,
				})
				if !errors.Is(err, dbactor.ErrWriterBusy) {
					t.Fatalf("ApplyPull with rows open on the writer: %v, want errWriterBusy", err)
				}
			}
			b.sys.Stop()
			if c.closeFirst {
				if err := rows.Close(); err != nil {
					t.Fatal(err)
				}
			}
			info, err := os.ReadFile(path + "-info")
			if err != nil {
				t.Fatal(err)
			}
			if clean := strings.Contains(string(info), `"clean_close"`); clean == c.pull {
				t.Errorf("clean close recorded: %v, want %v", clean, !c.pull)
			}

			b = openSynced(t, url, path, "b")
			if got := b.rows(t, "SELECT id FROM t ORDER BY id"); !slices.Equal(got, want) {
				t.Fatalf("after the reopen t has %q, want %q", got, want)
			}
			if p := b.unpushed(t); len(p.Changes) != 2 {
				t.Errorf("unpushed after the reopen: %s, want the inserts of 3 and 4", describe(p.Changes))
			}
			b.exec(t, "INSERT INTO t VALUES (5)")
			want = append(want, "5")
			slices.Sort(want)
			b.push(t)
			if p := b.unpushed(t); len(p.Changes) != 0 {
				t.Errorf("unpushed after the push: %s, want none", describe(p.Changes))
			}
			if got := b.rows(t, "PRAGMA integrity_check"); !slices.Equal(got, []string{"ok"}) {
				t.Errorf("integrity_check: %q", got)
			}
			n := openSynced(t, url, filepath.Join(dir, "n.db"), "n")
			got := n.rows(t, "SELECT id FROM t ORDER BY id")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("a new replica has %q, want %q", got, want)
			}
		})
	}
}
