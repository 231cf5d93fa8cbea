package syncdb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// countingFS counts the fsyncs of syncdb's own files (File.Sync, SyncDir)
// and the rewrites of <db>-info (its rename into place), and notes which
// file each was for.
type countingFS struct {
	fsx.FS
	syncs, dirSyncs, infoWrites atomic.Int64

	mu     sync.Mutex
	events []string
}

func (c *countingFS) note(what, name string) {
	c.mu.Lock()
	c.events = append(c.events, what+" "+filepath.Base(name))
	c.mu.Unlock()
}

// take returns the events noted since the last take.
func (c *countingFS) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.events
	c.events = nil
	return e
}

type countingFile struct {
	fsx.File
	fs   *countingFS
	name string
}

func (f countingFile) Sync() error {
	f.fs.syncs.Add(1)
	f.fs.note("fsync", f.name)
	return f.File.Sync()
}

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c, name}, nil
}

func (c *countingFS) SyncDir(dir string) error {
	c.dirSyncs.Add(1)
	c.note("fsync dir", dir)
	return c.FS.SyncDir(dir)
}

func (c *countingFS) Rename(oldpath, newpath string) error {
	if strings.HasSuffix(newpath, "-info") {
		c.infoWrites.Add(1)
		c.note("rename to", newpath)
	}
	return c.FS.Rename(oldpath, newpath)
}

// syncCounts are the durability costs of one operation on a replica.
type syncCounts struct {
	sqlite   int64 // SQLite's xSync calls (database, WAL, journals), through the shim VFS
	files    int64 // fsyncs of syncdb's own files
	dirs     int64 // fsyncs of the directory
	infoRewr int64 // rewrites of <db>-info
}

func (c syncCounts) fsyncs() int64 { return c.sqlite + c.files + c.dirs }

func (c syncCounts) String() string {
	return fmt.Sprintf("%d fsyncs (SQLite %d, own files %d, directory %d), %d -info rewrites", c.fsyncs(), c.sqlite, c.files, c.dirs, c.infoRewr)
}

// Ceilings of what a replica's local insert, push, pull and
// insert+push+pull cycle cost today: fsyncs (SQLite's, syncdb's own files'
// and the directory's, together) and -info rewrites. Issue 15's target for
// the cycle is at most 5 fsyncs and 1 -info rewrite. The test fails if an
// operation needs more; lower a ceiling when a change removes one (with a
// crash test proving it redundant). SQLite's one-time fsync of the
// directory when it creates a WAL or journal is not counted (the shim does
// not see it); in steady state the WAL exists already.
var syncCeilings = map[string]struct{ fsyncs, infoRewrites int64 }{
	"insert": {1, 0},
	"push":   {1, 0},
	"pull":   {3, 0},
	"cycle":  {5, 0},
}

// The fsyncs and -info rewrites of a push, a pull that brings another
// client's row, and a whole cycle (one local insert, push, pull), counted
// on a real replica over loopback HTTP, in steady state (the highest of
// several rounds). A change that adds any fails here.
func TestSyncCycleFsyncs(t *testing.T) {
	checkSyncCeilings(t, syncCeilings, nil)
}

// What a partial replica's insert, push, pull and cycle cost, in steady
// state. Its pull checkpoints (two -info rewrites: Checkpointing, then
// finishCheckpoint, which carries the pull's deferred update), so that
// its fetches move to the new revision; the WAL's next generation then
// starts at the next local insert, whose commit -info records
// (recordLocalWAL: one -info rewrite, its .tmp's fsync and the
// directory's): the LocalWAL record costs a partial sync cycle 2 fsyncs
// and 1 -info rewrite (docs/ARCHITECTURE.md, A -wal that lost local
// commits). Measured: insert 4 fsyncs (SQLite's 2: the new generation's
// header and the commit; the record's 2), 1 -info rewrite; push 1, 0;
// pull 10, 2; cycle 15, 3. With recordLocalWAL a no-op: insert 2, 0;
// push 1, 0; pull 10, 2; cycle 13, 2.
var partialSyncCeilings = map[string]struct{ fsyncs, infoRewrites int64 }{
	"insert": {4, 1},
	"push":   {1, 0},
	"pull":   {10, 2},
	"cycle":  {15, 3},
}

func TestPartialSyncCycleFsyncs(t *testing.T) {
	checkSyncCeilings(t, partialSyncCeilings, &syncdb.PartialSync{PrefixBytes: 4096, SegmentSize: 4096})
}

// checkSyncCeilings measures a replica's (partial if partial is set)
// insert, push, pull and cycle and fails any over its ceiling.
func checkSyncCeilings(t *testing.T, ceilings map[string]struct{ fsyncs, infoRewrites int64 }, partial *syncdb.PartialSync) {
	t.Helper()
	url := newServer(t)
	vfs, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := shimvfs.Record(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	cfs := &countingFS{FS: fsx.OS}
	ctx := testhooks.With(context.Background(), testhooks.Hooks{VFS: vfs, FS: cfs, OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
	a, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, Partial: partial})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	other := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})

	now := func() syncCounts {
		return syncCounts{rec.Stats().Syncs, cfs.syncs.Load(), cfs.dirSyncs.Load(), cfs.infoWrites.Load()}
	}
	worst := map[string]syncCounts{}
	events := map[string][]string{} // of the last round
	measure := func(name string, op func() error) {
		t.Helper()
		cfs.take()
		before := now()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		after := now()
		events[name] = cfs.take()
		c := syncCounts{after.sqlite - before.sqlite, after.files - before.files, after.dirs - before.dirs, after.infoRewr - before.infoRewr}
		w := worst[name]
		worst[name] = syncCounts{max(w.sqlite, c.sqlite), max(w.files, c.files), max(w.dirs, c.dirs), max(w.infoRewr, c.infoRewr)}
	}
	n := 0
	insert := func(db *syncdb.DB, who string) error {
		n++
		_, err := db.Exec(ctx, "INSERT INTO t VALUES (?, ?, ?)", n, who, strings.Repeat("x", 100))
		return err
	}
	// Another client's row for a's next pull.
	theirs := func() {
		t.Helper()
		if err := insert(other, "b"); err != nil {
			t.Fatal(err)
		}
		if err := other.Push(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const rounds = 4
	for round := range rounds + 1 {
		if round == 1 {
			clear(worst) // the first round is a warm-up
		}
		measure("insert", func() error { return insert(a, "a") })
		measure("push", func() error { return a.Push(ctx) })
		theirs()
		measure("pull", func() error {
			changed, err := a.Pull(ctx)
			if err == nil && !changed {
				err = fmt.Errorf("the pull brought nothing")
			}
			return err
		})
		theirs()
		measure("cycle", func() error {
			if err := insert(a, "a"); err != nil {
				return err
			}
			if err := a.Push(ctx); err != nil {
				return err
			}
			_, err := a.Pull(ctx)
			return err
		})
	}
	for _, name := range []string{"insert", "push", "pull", "cycle"} {
		got, ceiling := worst[name], ceilings[name]
		t.Logf("%s: %v; own files: %s", name, got, strings.Join(events[name], ", "))
		if got.fsyncs() > ceiling.fsyncs || got.infoRewr > ceiling.infoRewrites {
			t.Errorf("%s costs more than it did: %v; ceiling %d fsyncs, %d -info rewrites", name, got, ceiling.fsyncs, ceiling.infoRewrites)
		}
	}
}
