package syncdb_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/pageactor"
)

// A SyncNormal partial replica's local commit reuses free-list leaves of
// the bootstrap that it never fetched (SQLite does not read a free-list
// leaf it reuses): the pages have only their WAL frames, which no fsync
// covers yet. A checkpoint records the WAL's pages in the presence log
// before SQLite's copy, the only thing that would have synced the WAL;
// a power loss right after the record takes the frames back. The log
// must not then name those pages' holes as present (a later base image
// of them would be zeros): the checkpoint makes the commits durable
// before the record. Every page the log names must hold the server's
// content (a full replica's file), not a hole.
func TestPartialSyncNormalCheckpointPowerLoss(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	serverExec(t, url, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	serverExec(t, url, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
		INSERT INTO t SELECT i, printf('%d-%s', i, hex(randomblob(1500))) FROM n`)
	serverExec(t, url, `DELETE FROM t WHERE id > 10`) // free-list leaves with old content
	r := newLossyReplicaWith(t, url, func(c *syncdb.Config) {
		c.SyncNormal = true
		c.Partial = &syncdb.PartialSync{PrefixBytes: 4 * 4096, SegmentSize: 4096}
	})
	mustExec(t, r.db, `INSERT INTO t VALUES(999, 'first')`) // a first local commit
	mustExec(t, r.db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 50)
		INSERT INTO t SELECT 1000 + i, hex(randomblob(1500)) FROM n`) // reuses leaves, unsynced
	fired := r.crashAt("checkpoint.marked")
	if err := r.db.Checkpoint(ctx); err == nil || !fired() {
		t.Fatalf("no crash after the checkpoint's MarkPresent: %v", err)
	}
	r.down(true)
	r.open()
	if err := r.db.Checkpoint(ctx); err != nil { // the file alone holds what survived
		t.Fatal(err)
	}
	integrity(t, r.db)
	t.Logf("rows of the checkpointed commit after the power loss: %s", rows(t, r.db, "SELECT count(*) FROM t WHERE id > 1000"))
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	r.db = nil
	checkNoPresentHoles(t, url, r.cfg.Path)
}

// The open-time recovery of an interrupted checkpoint (recoverCheckpoint,
// copyWAL again) records the WAL's pages in the presence log before its
// copy too, without a sync of its own: the WAL it marks must be durable
// already. A SyncNormal partial replica's checkpoint is killed (a process
// crash, no power loss) after it recorded Checkpointing, before its own
// MarkPresent; the next open's recovery is cut by a power loss right after
// its MarkPresent. The log must name no hole present: the interrupted
// checkpoint had made the commits durable (syncBeforeMark) before it
// recorded Checkpointing, and nothing commits while that is set.
func TestPartialSyncNormalRecoveredCheckpointPowerLoss(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	serverExec(t, url, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	serverExec(t, url, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
		INSERT INTO t SELECT i, printf('%d-%s', i, hex(randomblob(1500))) FROM n`)
	serverExec(t, url, `DELETE FROM t WHERE id > 10`) // free-list leaves with old content
	r := newLossyReplicaWith(t, url, func(c *syncdb.Config) {
		c.SyncNormal = true
		c.Partial = &syncdb.PartialSync{PrefixBytes: 4 * 4096, SegmentSize: 4096}
	})
	mustExec(t, r.db, `INSERT INTO t VALUES(999, 'first')`)
	mustExec(t, r.db, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 50)
		INSERT INTO t SELECT 1000 + i, hex(randomblob(1500)) FROM n`) // reuses leaves, unsynced
	fired := r.crashAt("checkpoint.meta")
	if err := r.db.Checkpoint(ctx); err == nil || !fired() {
		t.Fatalf("no crash after the checkpoint recorded Checkpointing: %v", err)
	}
	r.down(false)                            // killed: the OS keeps what it wrote
	r.crashedOpen("checkpoint.marked", true) // the recovery's MarkPresent, then a power loss
	r.open()
	if err := r.db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	integrity(t, r.db)
	if got := rows(t, r.db, "SELECT count(*) FROM t WHERE id > 1000"); got != "50" {
		t.Errorf("rows of the commit before the checkpoint: %s, want 50 (it was durable)", got)
	}
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	r.db = nil
	checkNoPresentHoles(t, url, r.cfg.Path)
}

// checkNoPresentHoles compares the closed partial replica at path with a
// full replica of url: no page its presence log names present may be a
// hole (zeros) where the full replica's page is not.
func checkNoPresentHoles(t *testing.T, url, path string) {
	t.Helper()
	ctx := context.Background()
	wpath := filepath.Join(t.TempDir(), "w.db")
	w := open(t, syncdb.Config{Path: wpath, URL: url})
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(wpath)
	if err != nil {
		t.Fatal(err)
	}
	part, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	present, err := pageactor.LoadPresence(fsx.OS, path, uint32(len(part)/4096))
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 4096)
	holes := 0
	for pg := uint32(1); int(pg)*4096 <= min(len(full), len(part)); pg++ {
		off := int(pg-1) * 4096
		if present.Contains(pg) && bytes.Equal(part[off:off+4096], zero) && !bytes.Equal(full[off:off+4096], zero) {
			holes++
		}
	}
	if holes > 0 {
		t.Fatalf("the presence log names %d pages present whose file pages are holes (of %d present)", holes, present.GetCardinality())
	}
}
