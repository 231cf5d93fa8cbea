package syncdb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// moveWAL moves the closed replica's -wal (and -shm) aside, as a backup
// restored without them or a copy of the database file alone, and
// returns the WAL's content.
func moveWAL(t *testing.T, path string) []byte {
	t.Helper()
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path + "-shm")
	if err := os.Remove(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	return wal
}

// A replica whose base W has no frame in the WAL (frame 0 after a
// bootstrap or an explicit checkpoint; Copied after an automatic one),
// with local commits not pushed in the WAL and no clean close: its -wal
// lost whole left the open nothing to check, and it opened as its base
// without those commits. -info records the WAL generation's first local
// commit (recordLocalWAL), so the open refuses: read only, the error
// says the WAL lost them and to put it back; Config.Recover, which would
// rebuild from the database file alone, is refused too; with the -wal put
// back it opens with every commit and syncs them. The replica is killed
// right after the record (localwal.recorded), and again after a later
// write of the same generation.
func TestLocalWALLost(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		cfg     func(*syncdb.Config)
		prepare func(*testing.T, *lossyReplica)
		later   bool // killed at a later write of the generation
	}{
		// A partial replica has no stamp: another program's checkpoint
		// would leave the same files, so the refusal says both and
		// Config.Recover is not refused (not run here).
		{"partial", func(c *syncdb.Config) { c.Partial = &syncdb.PartialSync{PrefixBytes: 4096, SegmentSize: 4096} }, func(*testing.T, *lossyReplica) {}, false},
		{"bootstrap", nil, func(*testing.T, *lossyReplica) {}, false},
		{"bootstrap/later write", nil, func(*testing.T, *lossyReplica) {}, true},
		{"checkpoint", nil, func(t *testing.T, r *lossyReplica) {
			mustExec(t, r.db, "INSERT INTO t VALUES(3, 'before')")
			if err := r.db.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"automatic checkpoint", func(c *syncdb.Config) { c.AutoCheckpointFrames = 4 }, func(t *testing.T, r *lossyReplica) {
			for i := 10; ; i++ {
				mustExec(t, r.db, fmt.Sprintf("INSERT INTO t VALUES(%d, 'before')", i))
				if m := infoOf(t, r.cfg.Path); m.SyncDB.Base.Copied && m.SyncDB.LocalWAL == nil {
					return
				}
				if i > 100 {
					t.Fatal("no automatic checkpoint")
				}
			}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := newServer(t)
			b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
			r := newLossyReplicaWith(t, url, c.cfg)
			c.prepare(t, r)
			before := rows(t, r.db, "SELECT id, v FROM t ORDER BY id")
			point, q := "localwal.recorded", "INSERT INTO t VALUES(1, 'local')"
			if c.later {
				mustExec(t, r.db, q)
				point, q = "write.committed", "INSERT INTO t VALUES(4, 'later')"
			}
			fired := r.crashAt(point)
			r.db.Exec(ctx, q)
			if !fired() {
				t.Fatalf("no crash at %s: the write was not its generation's first local commit", point)
			}
			r.down(false)
			m := infoOf(t, r.cfg.Path)
			if w := m.SyncDB.Base.WAL; w.Frame != 0 && !m.SyncDB.Base.Copied || m.SyncDB.LocalWAL == nil || m.SyncDB.CleanClose != nil {
				t.Fatalf("the test's premise: W at frame %d (copied %v), local WAL %v, clean close %v", w.Frame, m.SyncDB.Base.Copied, m.SyncDB.LocalWAL, m.SyncDB.CleanClose)
			}
			wal := moveWAL(t, r.cfg.Path)

			r.open()
			_, err := r.db.Exec(ctx, "INSERT INTO t VALUES(5, 'x')")
			got := rows(t, r.db, "SELECT id, v FROM t ORDER BY id")
			r.db.Close()
			unstamped := r.cfg.Partial != nil
			said := []string{"WAL lost local commits", "Put the -wal back"}
			if unstamped {
				said = []string{"another program checkpointed it", "or it was lost", "put it back before anything else"}
			}
			for _, s := range said {
				if !errors.Is(err, syncdb.ErrExternalModification) || !strings.Contains(err.Error(), s) {
					t.Fatalf("a write to the replica without its WAL (t %q): %v, want ErrExternalModification saying %q", got, err, s)
				}
			}
			t.Logf("detached: %v", err)
			rcfg := r.cfg
			rcfg.Recover = true
			if unstamped {
				rcfg.Recover = false // a rebuild would keep the database file's changes: the user's choice
			}
			// Refused by the check of the local state (the first open's
			// tables were in the lost WAL too: no local tables, no
			// journal) or by SaveLocal.
			if !rcfg.Recover {
			} else if db, err := syncdb.Open(r.ctx, rcfg); !errors.Is(err, syncdb.ErrExternalModification) && !errors.Is(err, syncdb.ErrCorruptJournal) || !strings.Contains(err.Error(), "-wal") {
				if db != nil {
					db.Close()
				}
				t.Fatalf("Config.Recover of the replica without its WAL: %v, want it refused", err)
			}

			os.Remove(r.cfg.Path + "-shm")
			if err := os.WriteFile(r.cfg.Path+"-wal", wal, 0o644); err != nil {
				t.Fatal(err)
			}
			r.open()
			want := "1|local\n" + before
			if c.later {
				want = "1|local\n" + before + "\n4|later"
			}
			if got := rows(t, r.db, "SELECT id, v FROM t ORDER BY id"); got != want {
				t.Fatalf("the WAL put back: t %q, want %q", got, want)
			}
			if err := r.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, b, "SELECT id, v FROM t WHERE id = 1"); got != "1|local" {
				t.Fatalf("the other replica after the sync: %q", got)
			}
		})
	}
}

// What must still open without its -wal: a fresh bootstrap with no local
// write, killed (the WAL held only the first open's local tables, which
// syncdb creates again), and a replica closed cleanly (its close
// checkpointed every local commit into the database file and cleared the
// record). And a replica killed between its generation's first local
// commit and the record (failpoint write.committed; the write was not
// acknowledged) opens with the commit, and its next write records the
// generation.
func TestLocalWALNotLost(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) *lossyReplica {
		url := newServer(t)
		pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')").Close()
		return newLossyReplica(t, url)
	}
	reopened := func(t *testing.T, r *lossyReplica, want string) {
		t.Helper()
		r.open()
		if got := rows(t, r.db, "SELECT id, v FROM t ORDER BY id"); got != want {
			t.Fatalf("t %q, want %q", got, want)
		}
		mustExec(t, r.db, "INSERT INTO t VALUES(7, 'after')")
		if err := r.db.Sync(ctx); err != nil {
			t.Fatalf("sync after the reopen: %v", err)
		}
	}
	t.Run("fresh bootstrap", func(t *testing.T) {
		r := setup(t)
		r.kill()
		r.down(false)
		if m := infoOf(t, r.cfg.Path); m.SyncDB.LocalWAL != nil || m.SyncDB.CleanClose != nil {
			t.Fatalf("the test's premise: local WAL %v, clean close %v", m.SyncDB.LocalWAL, m.SyncDB.CleanClose)
		}
		moveWAL(t, r.cfg.Path)
		reopened(t, r, "2|remote")
	})
	t.Run("clean close", func(t *testing.T) {
		r := setup(t)
		mustExec(t, r.db, "INSERT INTO t VALUES(1, 'local')")
		if err := r.db.Close(); err != nil {
			t.Fatal(err)
		}
		if m := infoOf(t, r.cfg.Path); m.SyncDB.LocalWAL != nil || m.SyncDB.CleanClose == nil {
			t.Fatalf("the test's premise: local WAL %v, clean close %v", m.SyncDB.LocalWAL, m.SyncDB.CleanClose)
		}
		moveWAL(t, r.cfg.Path)
		reopened(t, r, "1|local\n2|remote")
	})
	t.Run("killed before the record", func(t *testing.T) {
		r := setup(t)
		fired := r.crashAt("write.committed")
		r.db.Exec(ctx, "INSERT INTO t VALUES(1, 'local')")
		if !fired() {
			t.Fatal("no crash at write.committed")
		}
		r.down(false)
		if m := infoOf(t, r.cfg.Path); m.SyncDB.LocalWAL != nil {
			t.Fatalf("the test's premise: local WAL %v recorded", m.SyncDB.LocalWAL)
		}
		r.open()
		if got := rows(t, r.db, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote" {
			t.Fatalf("t %q", got)
		}
		mustExec(t, r.db, "INSERT INTO t VALUES(3, 'local')")
		if m := infoOf(t, r.cfg.Path); m.SyncDB.LocalWAL == nil {
			t.Fatal("the next write of the generation recorded nothing")
		}
	})
}

// Every crash point of the record, killed with and without a power loss,
// with synchronous FULL and NORMAL: the replica opens (never refused: a
// record is made only once its commit is durable) and writes, with the
// row if its commit reached the disk: always with FULL; with NORMAL
// always from localwal.committed on (the commit was made durable before
// the record), and at write.committed not after a power loss (the
// SyncNormal commit was not fsynced). The points: after the commit, before
// the record (write.committed; localwal.committed, after the SyncNormal
// commit is made durable); in the -info write (fsx.written, fsx.synced,
// fsx.renamed: old or new -info); after it (localwal.recorded).
func TestLocalWALCrashPowerLoss(t *testing.T) {
	points := []string{"write.committed", "localwal.committed", "fsx.written", "fsx.synced", "fsx.renamed", "localwal.recorded"}
	for _, normal := range []bool{false, true} {
		for _, point := range points {
			for _, power := range []bool{false, true} {
				t.Run(fmt.Sprintf("normal=%v/%s/power=%v", normal, point, power), func(t *testing.T) {
					ctx := context.Background()
					url := newServer(t)
					var r *lossyReplica
					if normal {
						r = newSyncNormalReplica(t, url)
					} else {
						r = newLossyReplica(t, url)
					}
					r.createTU()
					if err := r.db.Push(ctx); err != nil {
						t.Fatal(err)
					}
					if err := r.db.Checkpoint(ctx); err != nil { // a new generation for the write
						t.Fatal(err)
					}
					fired := r.crashAt(point)
					r.db.Exec(ctx, "INSERT INTO t VALUES(1, 'local')")
					if !fired() {
						t.Fatalf("no crash at %s", point)
					}
					r.restart(power)
					if _, err := r.db.Exec(ctx, "INSERT INTO t VALUES(2, 'after')"); err != nil {
						t.Fatalf("a write after the restart: %v", err)
					}
					got := rows(t, r.db, "SELECT id, v FROM t ORDER BY id")
					want := "1|local\n2|after"
					if normal && power && point == "write.committed" && got == "2|after" {
						want = got // lost: not fsynced, not acknowledged
					}
					if got != want {
						t.Fatalf("after the restart: t %q, want %q", got, want)
					}
					if err := r.db.Push(ctx); err != nil {
						t.Fatalf("push after the restart: %v", err)
					}
				})
			}
		}
	}
}

// The record's cost: one -info rewrite (the .tmp's fsync and the
// directory's) at the first local commit of each WAL generation, with
// SyncNormal one WAL fsync more (that commit made durable); nothing at
// the next commits of the generation. Without the record the first
// commit costs SQLite 2 fsyncs with FULL, 1 with NORMAL (the new
// generation's header, and the commit with FULL).
func TestLocalWALCost(t *testing.T) {
	for _, normal := range []bool{false, true} {
		t.Run(fmt.Sprintf("normal=%v", normal), func(t *testing.T) {
			ctx := context.Background()
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
			hctx := testhooks.With(ctx, testhooks.Hooks{VFS: vfs, FS: cfs, OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
			a, err := syncdb.Open(hctx, syncdb.Config{Path: filepath.Join(dir, "a.db"), SyncNormal: normal})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
			now := func() syncCounts {
				return syncCounts{rec.Stats().Syncs, cfs.syncs.Load(), cfs.dirSyncs.Load(), cfs.infoWrites.Load()}
			}
			for gen := range 2 {
				if err := a.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
				for i := range 2 {
					before := now()
					mustExec(t, a, fmt.Sprintf("INSERT INTO t VALUES(%d)", 10*gen+i))
					after := now()
					got := syncCounts{after.sqlite - before.sqlite, after.files - before.files, after.dirs - before.dirs, after.infoRewr - before.infoRewr}
					want := syncCounts{1, 0, 0, 0}
					if normal {
						want.sqlite = 0
					}
					if i == 0 {
						// SQLite syncs a new generation's header: with FULL
						// that is its second fsync, with NORMAL its only one
						// but for the record's durable commit.
						want = syncCounts{2, 1, 1, 1}
					}
					if got != want {
						t.Errorf("generation %d, write %d: %v, want %v", gen, i, got, want)
					}
				}
			}
		})
	}
}

// A local commit that writes no frame (an UPDATE matching no row, an
// INSERT OR IGNORE of a present key, a DB.Tx that only reads) right after
// an automatic checkpoint copied the whole WAL holds nothing the WAL
// could lose: it must record nothing. It recorded the copied generation's
// end; the next commit, the pull's, restarted the WAL (new salts) without
// recording, and after a kill the open called the WAL "of another
// generation": read only, Recover refused. Here the replica is killed
// after the pull and must open, write and sync with every row.
func TestLocalWALNoFrameCommit(t *testing.T) {
	ctx := context.Background()
	noops := []struct {
		name string
		run  func(*testing.T, *syncdb.DB)
	}{
		{"update matching no row", func(t *testing.T, db *syncdb.DB) { mustExec(t, db, "UPDATE t SET v = 'none' WHERE id = -1") }},
		{"insert or ignore", func(t *testing.T, db *syncdb.DB) { mustExec(t, db, "INSERT OR IGNORE INTO t VALUES(2, 'again')") }},
		{"read-only tx", func(t *testing.T, db *syncdb.DB) {
			if err := db.Tx(ctx, func(tx *syncdb.Tx) error {
				var n int
				return tx.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
			}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range noops {
		t.Run(c.name, func(t *testing.T) {
			url := newServer(t)
			b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
			r := newLossyReplicaWith(t, url, func(c *syncdb.Config) { c.AutoCheckpointFrames = 4 })
			for i := 10; ; i++ {
				mustExec(t, r.db, fmt.Sprintf("INSERT INTO t VALUES(%d, 'local')", i))
				if m := infoOf(t, r.cfg.Path); m.SyncDB.Base.Copied && m.SyncDB.LocalWAL == nil {
					break
				}
				if i > 100 {
					t.Fatal("no automatic checkpoint")
				}
			}
			want := rows(t, r.db, "SELECT id, v FROM t ORDER BY id")
			c.run(t, r.db)
			if m := infoOf(t, r.cfg.Path); m.SyncDB.LocalWAL != nil {
				t.Errorf("a commit that wrote no frame recorded the local WAL %+v (the base W %+v, copied %v)", *m.SyncDB.LocalWAL, m.SyncDB.Base.WAL, m.SyncDB.Base.Copied)
			}
			mustExec(t, b, "INSERT INTO t VALUES(3, 'remote')")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := r.db.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			r.kill()
			r.down(false)
			r.open()
			if _, err := r.db.Exec(ctx, "INSERT INTO t VALUES(4, 'after')"); err != nil {
				t.Fatalf("a write after the kill: %v", err)
			}
			if got, want := rows(t, r.db, "SELECT id, v FROM t ORDER BY id"), "2|remote\n3|remote\n4|after"+want[len("2|remote"):]; got != want {
				t.Fatalf("t %q, want %q", got, want)
			}
			if err := r.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A record the copied base covers, as a49b44d's build could leave it
// (local_wal = the base's W, Copied: a commit that wrote no frame right
// after an automatic checkpoint), with a pull's deferred -info update
// taken by a kill: the pull's anchor restarted the WAL. The open accepts
// the record (the base, still that copy, covers it) and reconcileBase
// moves the base to the pull's, in the new generation; the record must
// go with the old base (it was satisfied), or the next open, after a
// kill before any local write, calls the WAL "of another generation"
// and opens read only.
func TestLocalWALCoveredRecordBaseMoves(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')")
	r := newLossyReplicaWith(t, url, func(c *syncdb.Config) { c.AutoCheckpointFrames = 4 })
	for i := 10; ; i++ {
		mustExec(t, r.db, fmt.Sprintf("INSERT INTO t VALUES(%d, 'local')", i))
		if m := infoOf(t, r.cfg.Path); m.SyncDB.Base.Copied && m.SyncDB.LocalWAL == nil {
			break
		}
		if i > 100 {
			t.Fatal("no automatic checkpoint")
		}
	}
	want := rows(t, r.db, "SELECT id, v FROM t ORDER BY id")
	mustExec(t, b, "INSERT INTO t VALUES(3, 'remote')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.db.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	r.kill()
	r.down(false)
	m := infoOf(t, r.cfg.Path)
	old := m.SyncDB.Base.WAL
	if !m.SyncDB.Base.Copied || m.SyncDB.LocalWAL != nil {
		t.Fatalf("the test's premise: the kill took the pull's -info update (base W %+v, copied %v, local WAL %v)", old, m.SyncDB.Base.Copied, m.SyncDB.LocalWAL)
	}
	localWALAtBase(t, r.cfg.Path)
	r.open()
	m = infoOf(t, r.cfg.Path)
	if m.SyncDB.Base.WAL.Salt1 == old.Salt1 && m.SyncDB.Base.WAL.Salt2 == old.Salt2 {
		t.Fatalf("the test's premise: the open moved the base to the pull's, in a new generation (base W %+v, before %+v)", m.SyncDB.Base.WAL, old)
	}
	if l := m.SyncDB.LocalWAL; l != nil {
		t.Errorf("the base moved to %+v (copied %v), -info still records the local WAL %+v of the old one", m.SyncDB.Base.WAL, m.SyncDB.Base.Copied, *l)
	}
	r.kill()
	r.down(false)
	r.open()
	if _, err := r.db.Exec(ctx, "INSERT INTO t VALUES(4, 'after')"); err != nil {
		t.Fatalf("a write after the second kill: %v", err)
	}
	if got, want := rows(t, r.db, "SELECT id, v FROM t ORDER BY id"), "2|remote\n3|remote\n4|after"+want[len("2|remote"):]; got != want {
		t.Fatalf("t %q, want %q", got, want)
	}
	if err := r.db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// localWALAtBase rewrites the closed replica's -info with the record at
// the base's W (syncdb.local_wal = syncdb.base.wal).
func localWALAtBase(t *testing.T, path string) {
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
	base, _ := s["base"].(map[string]any)
	if base == nil || base["wal"] == nil {
		t.Fatalf("the test's premise: -info's base has a W: %s", data)
	}
	s["local_wal"] = base["wal"]
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-info", data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A -wal swapped for one of an older generation (a backup of the -wal
// taken before a checkpoint, restored with the later -info and database
// file) that holds as many frames as the record or more: its valid log
// reaches the recorded frame, but it is not the generation that holds
// the recorded commit, whose commits the database file lacks. Refused
// (read only, Recover refused); the right -wal put back opens with every
// row.
func TestLocalWALOtherGeneration(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(2, 'remote')").Close()
	r := newLossyReplica(t, url)
	// The older generation starts as the recorded one does (a checkpoint,
	// then a row): its first commit ends at the recorded frame too.
	if err := r.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		mustExec(t, r.db, fmt.Sprintf("INSERT INTO t VALUES(%d, 'older')", i))
	}
	older, err := os.ReadFile(r.cfg.Path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, r.db, "INSERT INTO t VALUES(1, 'local')")
	r.kill()
	r.down(false)
	m := infoOf(t, r.cfg.Path)
	l := m.SyncDB.LocalWAL
	if l == nil || m.SyncDB.CleanClose != nil || m.SyncDB.Base.WAL.Frame != 0 {
		t.Fatalf("the test's premise: local WAL %v, clean close %v, W %+v", l, m.SyncDB.CleanClose, m.SyncDB.Base.WAL)
	}
	if n := (len(older) - 32) / (24 + 4096); n < l.Frame {
		t.Fatalf("the test's premise: the older -wal has %d frames, the record is at frame %d", n, l.Frame)
	}
	wal := moveWAL(t, r.cfg.Path)
	if err := os.WriteFile(r.cfg.Path+"-wal", older, 0o644); err != nil {
		t.Fatal(err)
	}
	r.open()
	_, err = r.db.Exec(ctx, "INSERT INTO t VALUES(5, 'x')")
	r.db.Close()
	if !errors.Is(err, syncdb.ErrExternalModification) || !strings.Contains(err.Error(), "of another generation") || !strings.Contains(err.Error(), "Put the -wal back") {
		t.Fatalf("a write to the replica with an older generation's -wal: %v, want ErrExternalModification saying the WAL is of another generation", err)
	}
	rcfg := r.cfg
	rcfg.Recover = true
	if db, err := syncdb.Open(r.ctx, rcfg); !errors.Is(err, syncdb.ErrExternalModification) && !errors.Is(err, syncdb.ErrCorruptJournal) || !strings.Contains(err.Error(), "-wal") {
		if db != nil {
			db.Close()
		}
		t.Fatalf("Config.Recover with an older generation's -wal: %v, want it refused", err)
	}
	os.Remove(r.cfg.Path + "-shm")
	if err := os.WriteFile(r.cfg.Path+"-wal", wal, 0o644); err != nil {
		t.Fatal(err)
	}
	r.open()
	if got, want := rows(t, r.db, "SELECT count(*) FROM t"), "12"; got != want {
		t.Fatalf("the right -wal put back: %s rows, want %s", got, want)
	}
	mustExec(t, r.db, "INSERT INTO t VALUES(5, 'x')")
	if err := r.db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}
