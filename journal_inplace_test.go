package syncdb_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
)

// crashAtThen is crashAt, with fn(owner) as the process's last act.
func (r *lossyReplica) crashAtThen(point string, fn func(owner string)) (fired func() bool) {
	var armed atomic.Bool
	armed.Store(true)
	failpoint.Set(func(name, owner string) {
		if name == point && strings.HasPrefix(owner, r.cfg.Path) && armed.CompareAndSwap(true, false) {
			fn(owner)
			r.fs.Freeze()
			r.rec.Crash()
			panic(failpoint.Crash{Name: name, Owner: owner})
		}
	})
	return func() bool { return !armed.Load() }
}

// restartKilled restarts the replica after a kill without a power loss,
// with kept() changing the files first (what the dead process left).
func (r *lossyReplica) restartKilled(kept func()) {
	r.t.Helper()
	failpoint.Set(nil)
	r.db.Close()
	r.db = nil
	kept()
	r.rec.Resume()
	r.fs.Thaw()
	r.open()
}

// ids is the ids of table tab, one line each.
func ids(t *testing.T, db *syncdb.DB, tab string) string {
	t.Helper()
	return rows(t, db, "SELECT id FROM "+tab+" ORDER BY id")
}

// A pull writes its journal in place (one fsync: no temporary file, no
// rename, no directory sync), so a crash or power loss during that write
// can leave the first bytes of the new journal over the old one (over
// nothing for the replica's first pull), at the old length or the new.
// Such a journal is torn (its header's CRC, or the size and CRC of the
// rest, say so) and is no pending pull: T1 runs only after the journal's
// fsync. Here the pull dies at journal.written (written, not synced) and
// the disk keeps a prefix of the new bytes: cut in the header, in the
// changes, all of them over a longer old journal, or none (the power loss
// took the whole rewrite back: the previous, finished pull's journal is
// intact and must not be taken for a pending pull). The replica opens
// with nothing lost and without the interrupted pull, its base the
// server's revision; the pull is redone and killed after its T1 with a
// power loss (so the journal file it rewrote must be durable, also one
// whose creation a killed first write never synced), and after a sync
// every replica has every row once.
func TestPullJournalTornRewrite(t *testing.T) {
	type tear struct {
		name  string
		first bool // the replica's first pull: nothing under the new bytes
		power bool // a power loss, or only a kill (interrupting the write)
		cut   func(old, neu []byte) int
	}
	inHeader := func(old, neu []byte) int { return 10 }
	inChanges := func(old, neu []byte) int { return 4 + int(binary.BigEndian.Uint32(neu)) + 4 + 10 } // the header whole
	whole := func(old, neu []byte) int { return len(neu) }
	none := func(old, neu []byte) int { return 0 }
	for _, tc := range []tear{
		{"first/header/power", true, true, inHeader},
		{"first/changes/power", true, true, inChanges},
		{"first/header/killed", true, false, inHeader},
		{"first/changes/killed", true, false, inChanges},
		{"rewrite/header/power", false, true, inHeader},
		{"rewrite/changes/power", false, true, inChanges},
		{"rewrite/whole-over-longer/power", false, true, whole},
		{"rewrite/changes/killed", false, false, inChanges},
		{"rewrite/none/power", false, true, none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			a := newLossyReplica(t, url)
			journal := a.cfg.Path + "-syncdb-replay"
			a.createTU()
			if err := a.db.Push(ctx); err != nil {
				t.Fatal(err)
			}
			// Large enough that the journal spans several pages.
			mustExec(t, a.db, "INSERT INTO t VALUES(1, ?)", strings.Repeat("L", 10000))
			b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE w(x)", "INSERT INTO u VALUES(2, 'remote')")
			wantT, wantU, finalU := "1", "", "2"
			if !tc.first {
				if _, err := a.db.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				// The change log is pushed away: the next journal is
				// shorter than this pull's.
				if err := a.db.Push(ctx); err != nil {
					t.Fatal(err)
				}
				mustExec(t, a.db, "INSERT INTO t VALUES(3, 'small')")
				mustExec(t, b, "INSERT INTO u VALUES(4, 'remote2')")
				if err := b.Push(ctx); err != nil {
					t.Fatal(err)
				}
				wantT, wantU, finalU = "1\n3", "2", "2\n4"
			}
			old, err := os.ReadFile(journal)
			if tc.first != os.IsNotExist(err) {
				t.Fatalf("the journal before the pull: %v", err)
			}
			var neu []byte
			fired := a.crashAtThen("journal.written", func(owner string) {
				if neu, err = os.ReadFile(owner); err != nil {
					t.Error(err)
				}
			})
			if _, err := a.db.Pull(ctx); err == nil || !fired() {
				t.Fatalf("no crash at journal.written: %v", err)
			}
			if len(old) <= len(neu) && !tc.first {
				t.Fatalf("the new journal (%d bytes) is not shorter than the old (%d)", len(neu), len(old))
			}
			n := tc.cut(old, neu)
			left := append(bytes.Clone(neu[:n]), old[min(n, len(old)):]...)
			leave := func() {
				if err := os.WriteFile(journal, left, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.power {
				a.restartAfter(leave)
			} else {
				a.restartKilled(leave)
			}
			if gotT, gotU := ids(t, a.db, "t"), ids(t, a.db, "u"); gotT != wantT || gotU != wantU {
				t.Fatalf("after the restart: t %q, u %q; want %q, %q", gotT, gotU, wantT, wantU)
			}
			// Taken for no pending pull, not for one that was abandoned
			// (which removes the journal).
			if got, err := os.ReadFile(journal); err != nil || !bytes.Equal(got, left) {
				t.Fatalf("the journal left by the crash was changed at open (%d bytes, %v)", len(got), err)
			}
			// No clean close here: its -info write would sync the
			// directory, and with it the entry of a journal file whose
			// creation a killed process never synced.
			a.crashedPull("pull.t1")
			a.restart(true)
			if gotT, gotU := ids(t, a.db, "t"), ids(t, a.db, "u"); gotT != wantT || gotU != finalU {
				t.Fatalf("after the pull again, killed after T1 with a power loss: t %q, u %q; want %q, %q", gotT, gotU, wantT, finalU)
			}
			a.checkBase(url)

			mustExec(t, a.db, "INSERT INTO t VALUES(5, 'five')")
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after a sync")
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if gotT, gotU := ids(t, b, "t"), ids(t, b, "u"); gotT != wantT+"\n5" || gotU != finalU {
				t.Fatalf("the other replica: t %q, u %q", gotT, gotU)
			}
			a.checkBase(url)
		})
	}
}

// A finished pull's journal stays in place (the next pull rewrites it):
// only -info's Pulled says that pull is finished, and a pull does not
// write -info (deferred): a power loss takes back the -info write that
// would have carried it, or finds none, and then T2's record in the
// database does (reconcileBase). Taken for a pending pull, the journal
// would have recovery record the pull's base again over a later one (a
// checkpoint's, with the WAL's truncation taken back by the power loss:
// recovery finds the pull's T1 in the stale frames and cuts the revert
// store). Here, after a finished pull: a write then a power loss (-info
// never written); a checkpoint killed after renaming its first or last
// -info write into place, with a power loss (the rename taken back); a
// whole checkpoint, then a power loss; a clean close (-info names the
// pull), then a write and a power loss. The replica keeps every row, its
// base is the server's revision page for page, the journal is still there
// (what this tests), and a sync lands everything once.
func TestPullJournalLeftInPlace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		point string
		hit   int
	}{
		{"write", "write.committed", 1},
		{"checkpoint-first-info", "fsx.renamed", 1},
		{"checkpoint-last-info", "fsx.renamed", 2},
		{"checkpoint-copied", "checkpoint.copied", 1},
		{"checkpointed", "", 0},
		{"closed", "write.committed", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			a := newLossyReplica(t, url)
			journal := a.cfg.Path + "-syncdb-replay"
			a.createTU()
			// A table the pull leaves alone: T1 does not write its page.
			mustExec(t, a.db, "CREATE TABLE v(id INTEGER PRIMARY KEY, x TEXT)")
			mustExec(t, a.db, "INSERT INTO v VALUES(1, 'base')")
			if err := a.db.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.db.Pull(ctx); err != nil { // v's page in the base
				t.Fatal(err)
			}
			mustExec(t, a.db, "INSERT INTO t VALUES(1, 'local')") // not pushed
			// The base before the pull has pages in the revert store.
			if err := a.db.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			b := pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE w(x)", "INSERT INTO u VALUES(2, 'remote')")
			if _, err := a.db.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(journal); err != nil {
				t.Fatalf("the finished pull's journal: %v", err)
			}
			// Its base image is the checkpoint's to save.
			mustExec(t, a.db, "INSERT INTO v VALUES(2, 'local')")
			switch tc.name {
			case "write":
				a.crashedWrite(tc.point, "INSERT INTO t VALUES(3, 'three')")
			case "checkpoint-first-info", "checkpoint-last-info", "checkpoint-copied":
				mustExec(t, a.db, "INSERT INTO t VALUES(3, 'three')")
				fired := a.crashAtHit(tc.point, tc.hit)
				if err := a.db.Checkpoint(ctx); err == nil || !fired() {
					t.Fatalf("no crash at %s #%d: %v", tc.point, tc.hit, err)
				}
			case "checkpointed":
				mustExec(t, a.db, "INSERT INTO t VALUES(3, 'three')")
				if err := a.db.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
				a.fs.Freeze()
				a.rec.Crash()
			case "closed":
				a.db.Close()
				a.open()
				a.crashedWrite(tc.point, "INSERT INTO t VALUES(3, 'three')")
			}
			a.restart(true)
			if _, err := os.Stat(journal); err != nil {
				t.Fatalf("the finished pull's journal after the power loss: %v", err)
			}
			check := func(db *syncdb.DB, when, wantT, wantU string) {
				t.Helper()
				if gotT, gotU, gotV := ids(t, db, "t"), ids(t, db, "u"), ids(t, db, "v"); gotT != wantT || gotU != wantU || gotV != "1\n2" {
					t.Fatalf("%s: t %q, u %q, v %q; want %q, %q, \"1\\n2\"", when, gotT, gotU, gotV, wantT, wantU)
				}
			}
			check(a.db, "after the power loss", "1\n3", "2")
			a.checkBase(url)

			mustExec(t, b, "INSERT INTO u VALUES(4, 'remote2')")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			mustExec(t, a.db, "INSERT INTO t VALUES(5, 'five')")
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after a sync")
			check(a.db, "after a sync", "1\n3\n5", "2\n4")
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			check(b, "the other replica", "1\n3\n5", "2\n4")
			a.checkBase(url)
		})
	}
}
