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
// pages already in the database file), the process writes on (pages the
// failed checkpoint saved no base image of), then dies, with or without a
// power loss. The recovery must save the later pages' base images, not the
// partly copied file's: every local write reaches the other replica.
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
			mustExec(t, a.db, "INSERT INTO u VALUES(1, 'after')")
			a.crashedWrite("write.committed", "INSERT INTO u VALUES(2, 'killed')")
			a.restart(power)
			if got := rows(t, a.db, "SELECT count(*) FROM t"); got != "100" {
				t.Fatalf("t has %s rows, want 100", got)
			}
			b := pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO t VALUES(1000, 'remote')")
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.db.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			gotT, gotU := rows(t, b, "SELECT count(*) FROM t"), rows(t, b, "SELECT id, v FROM u ORDER BY id")
			if gotT != "101" || gotU != "1|after\n2|killed" {
				t.Fatalf("the other replica has t: %s rows, u: %q; want 101 and both u rows", gotT, gotU)
			}
		})
	}
}
