package syncdb_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/server"
)

// A journal that is not whole (its header's CRC, or the size and CRC of
// the rest, fail) is no pending pull only while the pull never reached
// T1: that is what an interrupted in-place rewrite leaves. Once T1
// committed, the database holds the server's pages and the journal the
// only copy of the unpushed local changes: a journal damaged then (one
// byte flipped, in its header or in its changes) must make Open refuse
// with ErrCorruptJournal, leave the journal as it is, and open again once
// the journal is put back. Stopped before T1 (pull.journal) or after T2
// (pull.t2, the changes in the database), the same damage opens normally
// and nothing is lost.
func TestPullJournalDamaged(t *testing.T) {
	for _, point := range []string{"pull.journal", "pull.t1", "pull.t2"} {
		for _, where := range []string{"header", "changes"} {
			t.Run(point+"/"+where, func(t *testing.T) {
				ctx := context.Background()
				url := newServer(t)
				dir := t.TempDir()
				path := closedReplica(t, url, dir, "local") // row 1, not pushed
				b := pushedReplica(t, url, dir, "b.db", "INSERT INTO t VALUES(2, 'remote')")
				whole, damaged := stopPullAndDamage(t, path, point, where)
				if point == "pull.t1" {
					refusedOpen(t, path, whole, damaged)
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
}

// The same after T1, with a server whose pages carry a _syncdb_local (an
// older server let a remote writer make one): the database cannot tell
// then, the WAL can (the journal's header whole names the pull's start,
// and the WAL holds a commit after it).
func TestPullJournalDamagedForgedLocal(t *testing.T) {
	sdir := t.TempDir()
	url := serverWith(t, server.Config{DataDir: sdir})
	dir := t.TempDir()
	path := closedReplica(t, url, dir, "local")
	forgeServerDB(t, sdir, "CREATE TABLE _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID; INSERT INTO _syncdb_local VALUES('forged', 1)")
	if _, err := rawclient.Exec(url, "INSERT INTO t VALUES(2, 'remote')"); err != nil { // the server takes the commit in
		t.Fatal(err)
	}
	whole, damaged := stopPullAndDamage(t, path, "pull.t1", "changes")
	refusedOpen(t, path, whole, damaged)
	a := open(t, syncdb.Config{Path: path, URL: url})
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	syncedAll(t, a, b, path, url, "1|local\n2|remote")
}

// The same after T1, then another program checkpoints the WAL: the replica
// opens detached (no recovery at open), and its local state for Stats and
// for Config.Recover's rebuild comes from the journal. Damaged, it must
// fail them with ErrCorruptJournal (a rebuild took the server's pages for
// the local state and lost the local row), and once it is put back the
// rebuild keeps the row.
func TestPullJournalDamagedDetached(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	path := closedReplica(t, url, dir, "local")
	journal := path + "-syncdb-replay"
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, b, "INSERT INTO t VALUES(2, 'remote')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	whole, damaged := stopPullAndDamage(t, path, "pull.t1", "changes")
	otherProgram(t, path, "PRAGMA wal_checkpoint(TRUNCATE)", false)
	a := open(t, syncdb.Config{Path: path})
	if st, err := a.Stats(ctx); !errors.Is(err, syncdb.ErrCorruptJournal) {
		t.Fatalf("stats of the detached replica: %+v %v", st, err)
	}
	a.Close()
	a, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, Recover: true})
	if err == nil {
		got := rows(t, a, "SELECT id, v FROM t ORDER BY id")
		a.Close()
		t.Fatalf("rebuilt with the journal damaged: t %q", got)
	}
	if !errors.Is(err, syncdb.ErrCorruptJournal) {
		t.Fatalf("rebuilding with the journal damaged: %v", err)
	}
	if got, err := os.ReadFile(journal); err != nil || !bytes.Equal(got, damaged) {
		t.Fatalf("the refused rebuild changed the journal (%d bytes, %v)", len(got), err)
	}
	if err := os.WriteFile(journal, whole, 0o644); err != nil {
		t.Fatal(err)
	}
	a = open(t, syncdb.Config{Path: path, URL: url, Recover: true})
	syncedAll(t, a, b, path, url, "1|local\n2|remote")
}

// stopPullAndDamage runs a pull of the closed replica at path, stopped at
// point, then flips one byte of its journal, in its header or in the
// changes after it (where), and returns the journal as it was and as it is.
func stopPullAndDamage(t *testing.T, path, point, where string) (whole, damaged []byte) {
	t.Helper()
	journal := path + "-syncdb-replay"
	stoppedPull(t, path, point)
	var err error
	if whole, err = os.ReadFile(journal); err != nil {
		t.Fatal(err)
	}
	at := 10 // in the header's JSON
	if where == "changes" {
		at = 4 + int(binary.BigEndian.Uint32(whole)) + 4 + 10
	}
	if at >= len(whole) {
		t.Fatalf("a journal of %d bytes has no byte %d", len(whole), at)
	}
	damaged = bytes.Clone(whole)
	damaged[at] ^= 0xff
	if err := os.WriteFile(journal, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	return whole, damaged
}

// refusedOpen checks that Open refuses the replica at path with
// ErrCorruptJournal, naming the journal, and leaves the journal (damaged)
// as it is; then puts the whole one back, as from a backup.
func refusedOpen(t *testing.T, path string, whole, damaged []byte) {
	t.Helper()
	journal := path + "-syncdb-replay"
	a, err := syncdb.Open(context.Background(), syncdb.Config{Path: path})
	if err == nil {
		got := rows(t, a, "SELECT id, v FROM t ORDER BY id")
		a.Close()
		t.Fatalf("opened with the journal damaged after T1: t %q", got)
	}
	if !errors.Is(err, syncdb.ErrCorruptJournal) || !strings.Contains(err.Error(), journal) {
		t.Fatalf("opening with the journal damaged after T1: %v", err)
	}
	t.Logf("refused: %v", err)
	if got, err := os.ReadFile(journal); err != nil || !bytes.Equal(got, damaged) {
		t.Fatalf("the refused open changed the journal (%d bytes, %v)", len(got), err)
	}
	if err := os.WriteFile(journal, whole, 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncedAll is syncedPair, then checks that a's base is the server's
// revision.
func syncedAll(t *testing.T, a, b *syncdb.DB, path, url, want string) {
	t.Helper()
	syncedPair(t, a, b, want)
	a.Close()
	checkSyncedBase(t, path, url)
}
