package syncdb_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
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
	"github.com/syncdb/syncdb/messages"
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
// is what a pull's T1 leaves (planMissingJournal would refuse it).
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

// backupWithoutWAL copies the replica's database file (with its time, so
// that its stamp holds) and -info to a new directory, as a backup taken
// without the -wal and the pull journal, and returns the copy's path.
func backupWithoutWAL(t *testing.T, path string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), filepath.Base(path))
	for _, suffix := range []string{"", "-info"} {
		data, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, data, 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(to+suffix, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// withoutLocalWAL rewrites the closed replica's -info without the record
// of a WAL generation's local commits (syncdb.local_wal), as a release
// before it left it: the state whose lost WAL the open's missing-journal
// and base checks judge alone.
func withoutLocalWAL(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path + "-info")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // the stamp's hash is a uint64
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	s, _ := m["syncdb"].(map[string]any)
	if _, ok := s["local_wal"]; !ok {
		t.Fatal("the test's premise: -info records no local WAL generation")
	}
	delete(s, "local_wal")
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-info", data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// infoOf reads the replica's -info as syncdb wrote it.
func infoOf(t *testing.T, path string) messages.Meta {
	t.Helper()
	data, err := os.ReadFile(path + "-info")
	if err != nil {
		t.Fatal(err)
	}
	var m messages.Meta
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A backup restored without its -wal and its journal, taken after a pull
// and before any checkpoint: the database file has no _syncdb_local (the
// local tables and the pull live in the lost WAL), which is what a T1
// leaves, but the WAL lost the base's frames, an outside modification:
// the replica opens read only, as any outside modification does, not
// refused as an interrupted pull. With -info as an earlier release left
// it (no record of the WAL's local commits), the missing-journal and base
// checks judge: the error names the missing journal, and Config.Recover
// is refused with ErrCorruptJournal; with this release's record, the
// open refuses before them, naming the WAL's lost local commits, and so
// does Config.Recover. Both open once the -wal is put back.
func TestPullJournalMissingBackupWithoutWAL(t *testing.T) {
	for _, earlier := range []bool{true, false} {
		t.Run(map[bool]string{true: "earlier release", false: "recorded"}[earlier], func(t *testing.T) { backupWithoutWALAfterPull(t, earlier) })
	}
}

func backupWithoutWALAfterPull(t *testing.T, earlier bool) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	b := pushedReplica(t, url, dir, "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
	path := filepath.Join(dir, "a.db")
	fired := stopAt(t, "pull.done", path)
	a, err := syncdb.Open(testhooks.With(ctx, testhooks.Hooks{OnPanic: func(error) {}}), syncdb.Config{Path: path, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(1, 'local')")
	mustExec(t, b, "INSERT INTO t VALUES(3, 'remote')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err == nil || !fired() {
		t.Fatalf("no stop at pull.done: %v", err)
	}
	a.Close()                                        // killed: no checkpoint
	a = open(t, syncdb.Config{Path: path, URL: url}) // writes -info with the pull's base
	if m := infoOf(t, path); m.SyncDB.Base.WAL.Frame == 0 || m.SyncDB.Fresh || m.SyncDB.DBFile == nil {
		t.Fatalf("the test's premise: -info's base at WAL frame %d (fresh %v, stamp %v), want one in the WAL", m.SyncDB.Base.WAL.Frame, m.SyncDB.Fresh, m.SyncDB.DBFile)
	}
	restored := backupWithoutWAL(t, path)
	wal, err := os.ReadFile(path + "-wal") // the backup's WAL, not restored
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	if earlier {
		withoutLocalWAL(t, restored)
	}
	if n := plainCount(t, restored, "SELECT count(*) FROM sqlite_schema WHERE name = '_syncdb_local'"); n != 0 {
		t.Fatalf("the test's premise: the database file has _syncdb_local (%d)", n)
	}
	r, err := syncdb.Open(ctx, syncdb.Config{Path: restored, URL: url})
	if err != nil {
		t.Fatalf("open of the backup without its WAL: %v, want it opened read only", err)
	}
	_, err = r.Exec(ctx, "INSERT INTO t VALUES(5, 'x')")
	r.Close()
	named := "journal"
	if !earlier {
		named = "WAL lost local commits"
	}
	if !errors.Is(err, syncdb.ErrExternalModification) || !strings.Contains(err.Error(), named) {
		t.Fatalf("a write to the backup without its WAL: %v, want ErrExternalModification naming %q", err, named)
	}
	t.Logf("detached: %v", err)
	// The local changes were in the lost WAL: a rebuild has none to
	// carry over, and says where they were.
	_, err = syncdb.Open(ctx, syncdb.Config{Path: restored, URL: url, Recover: true})
	if want := syncdb.ErrCorruptJournal; earlier && (!errors.Is(err, want) || !strings.Contains(err.Error(), "-wal")) ||
		!earlier && (!errors.Is(err, syncdb.ErrExternalModification) || !strings.Contains(err.Error(), "-wal")) {
		t.Fatalf("Config.Recover of the backup without its WAL: %v, want it refused saying what to put back", err)
	}
	os.Remove(restored + "-shm")
	if err := os.WriteFile(restored+"-wal", wal, 0o644); err != nil {
		t.Fatal(err)
	}
	r = open(t, syncdb.Config{Path: restored, URL: url})
	if got := rows(t, r, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote\n3|remote" {
		t.Fatalf("the backup with its WAL put back: t %q", got)
	}
}

// plainCount runs a count query on the database file at path alone (no
// WAL), read only.
func plainCount(t *testing.T, path, q string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A replica an earlier release left without _syncdb_local and with -info
// no longer Fresh (its first open killed before the local tables
// committed, or under SyncNormal their creation lost to a power loss: that
// release recreated them at the next open) opens: its database file is as
// syncdb left it (stamped) and its WAL holds no commit after the base, so
// no pull ran T1. The same state as a backup restored without its WAL
// before anything was written after the bootstrap.
func TestPullJournalMissingEarlierReleaseFirstOpen(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	b := pushedReplica(t, url, dir, "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
	path := filepath.Join(dir, "a.db")
	a := open(t, syncdb.Config{Path: path, URL: url}) // the first open: the local tables in the WAL only
	if m := infoOf(t, path); m.SyncDB.Fresh || m.SyncDB.DBFile == nil {
		t.Fatalf("the test's premise: -info fresh %v, stamp %v", m.SyncDB.Fresh, m.SyncDB.DBFile)
	}
	restored := backupWithoutWAL(t, path)
	a.Close()
	r := open(t, syncdb.Config{Path: restored, URL: url})
	if got := rows(t, r, "SELECT id, v FROM t ORDER BY id"); got != "2|remote" {
		t.Fatalf("t %q", got)
	}
	mustExec(t, r, "INSERT INTO t VALUES(1, 'local')")
	syncedPair(t, r, b, "1|local\n2|remote")
}

// The same state in a local database (no server on record, never
// synced) is refused, as its files cannot show that no other program
// checkpointed into them (they have no stamp before a checkpoint); the
// advice is not to download it from a server it never had.
// With this release's record of the WAL's local commits (the CREATE
// TABLE), the open refuses before that, read only, with the same advice.
func TestPullJournalMissingLocalAdvice(t *testing.T) {
	for _, earlier := range []bool{true, false} {
		t.Run(map[bool]string{true: "earlier release", false: "recorded"}[earlier], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "local.db")
			a := open(t, syncdb.Config{Path: path})
			mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			if m := infoOf(t, path); m.SyncDB.Fresh || m.SyncDB.DBFile != nil {
				t.Fatalf("the test's premise: -info fresh %v, stamp %v", m.SyncDB.Fresh, m.SyncDB.DBFile)
			}
			restored := backupWithoutWAL(t, path)
			a.Close()
			if earlier {
				withoutLocalWAL(t, restored)
			}
			ctx := context.Background()
			r, err := syncdb.Open(ctx, syncdb.Config{Path: restored})
			want := syncdb.ErrCorruptJournal
			if !earlier {
				want = syncdb.ErrExternalModification
				if err != nil {
					t.Fatalf("open of the local database without its WAL: %v, want it opened read only", err)
				}
				_, err = r.Exec(ctx, "CREATE TABLE u(id INTEGER PRIMARY KEY)")
				r.Close()
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), "never synced") || strings.Contains(err.Error(), "download") {
				t.Fatalf("the local database without its WAL: %v, want %v with a local database's advice", err, want)
			}
			t.Logf("refused: %v", err)
		})
	}
}
