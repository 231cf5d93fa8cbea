package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// A journal deleted after its pull's T1 (by hand, or a backup restored
// without it) took the only copy of the unpushed changes with it: Open
// must refuse with ErrCorruptJournal saying it is missing and what to do,
// create nothing, and open once it is put back. Deleted before T1
// (pull.journal) or after T2 (pull.t2: the changes are in the database),
// the replica opens with nothing lost.
func TestPullJournalMissing(t *testing.T) {
	for _, point := range []string{"pull.journal", "pull.t1", "pull.t2"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			path := closedReplica(t, url, dir, "local") // row 1, not pushed
			b := pushedReplica(t, url, dir, "b.db", "INSERT INTO t VALUES(2, 'remote')")
			journal := path + "-syncdb-replay"
			stoppedPull(t, path, point)
			whole, err := os.ReadFile(journal)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(journal); err != nil {
				t.Fatal(err)
			}
			if point == "pull.t1" {
				a, err := syncdb.Open(ctx, syncdb.Config{Path: path})
				if err == nil {
					got := rows(t, a, "SELECT id, v FROM t ORDER BY id")
					a.Close()
					t.Fatalf("opened with the journal deleted after T1: t %q", got)
				}
				if !errors.Is(err, syncdb.ErrCorruptJournal) || !strings.Contains(err.Error(), journal+" is missing") {
					t.Fatalf("opening with the journal deleted after T1: %v", err)
				}
				t.Logf("refused: %v", err)
				if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the refused open made a journal: %v", err)
				}
				if err := os.WriteFile(journal, whole, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := open(t, syncdb.Config{Path: path, URL: url})
			if point == "pull.journal" {
				if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|local" {
					t.Fatalf("after the reopen, the pull not made: %q", got)
				}
				if _, err := a.Pull(ctx); err != nil {
					t.Fatal(err)
				}
			}
			syncedAll(t, a, b, path, url, "1|local\n2|remote")
		})
	}
}

// A replica with no pull pending and no journal opens, whatever brought
// it there: a new local database, reopened, after its first pull; a fresh
// bootstrap (full or partial), reopened; the journal of
// a finished pull deleted, then reopened attached or detached (another
// program wrote to the database); a Config.Recover rebuild (whose import
// journal is removed), reopened.
func TestPullJournalMissingNormalReplica(t *testing.T) {
	ctx := context.Background()
	reopen := func(t *testing.T, cfg syncdb.Config, want string) *syncdb.DB {
		t.Helper()
		if _, err := os.Stat(cfg.Path + "-syncdb-replay"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a journal: %v", err)
		}
		db := open(t, cfg)
		if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != want {
			t.Fatalf("t %q, want %q", got, want)
		}
		return db
	}
	// A local database (no URL): created, reopened, then its first pull.
	{
		url := newServer(t)
		dir := t.TempDir()
		b := pushedReplica(t, url, dir, "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
		b.Close()
		cfg := syncdb.Config{Path: filepath.Join(dir, "local.db")}
		a := open(t, cfg)
		mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
		mustExec(t, a, "INSERT INTO t VALUES(1, 'local')")
		a.Close()
		reopen(t, cfg, "1|local").Close()
		cfg.URL = url
		a = reopen(t, cfg, "1|local")
		if _, err := a.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if err := os.Remove(cfg.Path + "-syncdb-replay"); err != nil { // a finished pull's
			t.Fatal(err)
		}
		reopen(t, cfg, "1|local\n2|remote").Close()
	}
	for _, partial := range []bool{false, true} {
		url := newServer(t)
		dir := t.TempDir()
		b := pushedReplica(t, url, dir, "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
		cfg := syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url}
		if partial {
			cfg.Partial = &syncdb.PartialSync{PrefixBytes: 4096, SegmentSize: 4096}
		}
		open(t, cfg).Close()
		a := reopen(t, cfg, "2|remote")
		mustExec(t, a, "INSERT INTO t VALUES(1, 'local')")
		mustExec(t, b, "INSERT INTO t VALUES(3, 'remote')")
		if err := b.Push(ctx); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if _, err := a.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if err := os.Remove(cfg.Path + "-syncdb-replay"); err != nil {
			t.Fatal(err)
		}
		a = reopen(t, cfg, "1|local\n2|remote\n3|remote")
		mustExec(t, a, "INSERT INTO t VALUES(4, 'local')") // frames in the WAL, for the checkpoint below
		a.Close()
		const want = "1|local\n2|remote\n3|remote\n4|local"
		if !partial {
			otherProgram(t, cfg.Path, "INSERT INTO t VALUES(9, 'other')", false)
			a = reopen(t, syncdb.Config{Path: cfg.Path}, want+"\n9|other")
			if _, err := a.Stats(ctx); err != nil {
				t.Fatalf("stats of the detached replica: %v", err)
			}
			if _, err := a.Exec(ctx, "INSERT INTO t VALUES(5, 'x')"); !errors.Is(err, syncdb.ErrExternalModification) {
				t.Fatalf("a write after another program's: %v, want ErrExternalModification (detached)", err)
			}
			a.Close()
			rcfg := cfg
			rcfg.Recover = true
			reopen(t, rcfg, want).Close() // the other program's row was never captured
			reopen(t, cfg, want).Close()
		}
	}
}

// A SyncNormal replica's first open after its bootstrap (or of a new
// local database) creates the local tables; a power loss after that open
// must not leave a database without them and -info no longer Fresh, which
// is what a pull's T1 leaves (missingJournal would refuse it).
func TestPullJournalMissingSyncNormalBootstrap(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "bootstrap", true: "local"}[local], func(t *testing.T) { syncNormalFirstOpenLost(t, local) })
	}
}

// syncNormalFirstOpenLost: a SyncNormal replica (bootstrapped, or a new
// local database, which makes its table t itself) opens, writes
// nothing, and a power loss follows; it must open again.
func syncNormalFirstOpenLost(t *testing.T, local bool) {
	url := newServer(t)
	b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
	b.Close()
	if local {
		url = ""
	}
	vfs, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := shimvfs.Record(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Stop)
	r := &lossyReplica{t: t, cfg: syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, SyncNormal: true}, rec: rec, fs: fsx.NewCrashFS()}
	r.ctx = testhooks.With(context.Background(), testhooks.Hooks{VFS: vfs, FS: r.fs, OnPanic: func(error) {}})
	r.open()
	t.Cleanup(func() {
		failpoint.Set(nil)
		if r.db != nil {
			r.db.Close()
		}
	})
	r.powerCut()
	if local {
		mustExec(t, r.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(2, 'remote')")
	}
	if got := rows(t, r.db, "SELECT id, v FROM t ORDER BY id"); got != "2|remote" {
		t.Fatalf("t %q", got)
	}
}
