package syncdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
)

// failCopyAfter makes the next checkpoint's copy into r's database file
// fail with a full disk after n page writes (the process lives on), and
// reports whether it failed.
func failCopyAfter(t *testing.T, r *lossyReplica, n int32) {
	t.Helper()
	var writes atomic.Int32
	failpoint.Set(func(name, owner string) {
		if name == "checkpoint.meta" && strings.HasPrefix(owner, r.cfg.Path) {
			r.rec.SetFull(func(p string) bool { return p == r.cfg.Path && writes.Add(1) > n })
		}
	})
	err := r.db.Checkpoint(context.Background())
	failpoint.Set(nil)
	r.rec.SetFull(nil)
	if err == nil || writes.Load() <= n {
		t.Fatalf("the copy did not fail part-way: %v (%d writes into the database file)", err, writes.Load())
	}
}

// TestCheckpointCopyFailsPartWay: a checkpoint whose copy into the database
// file fails after some pages (a full disk), then a successful checkpoint,
// must record the file's real content hash: a partly copied file is not
// the one the first checkpoint planned its hash for. With a wrong hash, a
// mere touch of the file (same bytes, new mtime) made the replica refuse
// every write as modified outside syncdb.
func TestCheckpointCopyFailsPartWay(t *testing.T) {
	ctx := context.Background()
	a := newLossyReplica(t, newServer(t))
	mustExec(t, a.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		mustExec(t, a.db, "INSERT INTO t VALUES(?, ?)", i, strings.Repeat("x", 100))
	}
	failCopyAfter(t, a, 1)
	if err := a.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(a.cfg.Path + "-info")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		SyncDB struct {
			DBFile *struct{ Hash uint64 } `json:"db_file"`
		} `json:"syncdb"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	h, err := dbactor.ContentHash(a.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if m.SyncDB.DBFile == nil || m.SyncDB.DBFile.Hash != h {
		t.Errorf("recorded content hash %+v, the file's is %d", m.SyncDB.DBFile, h)
	}
	a.db.Close()
	a.db = nil
	st, err := os.Stat(a.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	later := st.ModTime().Add(time.Second)
	if err := os.Chtimes(a.cfg.Path, later, later); err != nil {
		t.Fatal(err)
	}
	a.open()
	if _, err := a.db.Exec(ctx, "INSERT INTO t VALUES(1000, 'y')"); err != nil {
		t.Fatalf("a write after a touch: %v", err)
	}
}

// TestCheckpointCopyFailsThenCrash: the copy fails part-way (some local
// pages already in the database file); the next operation finishes the
// checkpoint (recoverCheckpoint) and the process dies right after renaming
// its last -info, before the directory sync; the next process writes on,
// over pages the failed copy had already written (t's rows, new content)
// and pages it had not (u), and is killed; a power loss takes the rename
// back. The open then finds the checkpoint unfinished and a WAL of later
// commits whose pages have no base image: the recovery must save them
// (from the base, not the database file's local pages) before copying,
// so that every local write reaches the other replica. Without the power
// loss the rename stands and nothing is recovered (the control case).
func TestCheckpointCopyFailsThenCrash(t *testing.T) {
	for _, power := range []bool{false, true} {
		t.Run(fmt.Sprintf("power=%v", power), func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			a := newLossyReplica(t, url)
			a.createTU()
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				mustExec(t, a.db, "INSERT INTO t VALUES(?, ?)", i, strings.Repeat("x", 100))
			}
			failCopyAfter(t, a, 3)
			fired := a.crashAtRenameAfter("checkpoint.copied")
			if _, err := a.db.Exec(ctx, "UPDATE t SET v = 'never'"); err == nil || !fired() {
				t.Fatalf("the finishing checkpoint did not crash after its last rename: %v", err)
			}
			a.restart(false)
			mustExec(t, a.db, "UPDATE t SET v = 'y' || id")
			mustExec(t, a.db, "INSERT INTO u VALUES(1, 'after')")
			a.crashedWrite("write.committed", "INSERT INTO u VALUES(2, 'killed')")
			a.restart(power)
			if got := rows(t, a.db, "SELECT count(*) FROM t WHERE v = 'y' || id"); got != "100" {
				t.Fatalf("t has %s updated rows, want 100", got)
			}
			b := pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO t VALUES(1000, 'remote')")
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.db.Push(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after the push")
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			gotT := rows(t, b, "SELECT count(*) FROM t WHERE v = 'y' || id")
			gotU := rows(t, b, "SELECT id, v FROM u ORDER BY id")
			if gotT != "100" || gotU != "1|after\n2|killed" {
				t.Fatalf("the other replica has %s updated t rows, u: %q; want 100 and both u rows", gotT, gotU)
			}
		})
	}
}

// crashAtRenameAfter is crashAt at the first rename (fsx.renamed) after
// failpoint point: the -info that records what point's step did.
func (r *lossyReplica) crashAtRenameAfter(point string) (fired func() bool) {
	var seen, done atomic.Bool
	failpoint.Set(func(name, owner string) {
		if !strings.HasPrefix(owner, r.cfg.Path) {
			return
		}
		if name == point {
			seen.Store(true)
		} else if name == "fsx.renamed" && seen.Load() && done.CompareAndSwap(false, true) {
			r.fs.Freeze()
			r.rec.Crash()
			panic(failpoint.Crash{Name: name, Owner: owner})
		}
	})
	return done.Load
}
