package syncdb_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The tests here open a replica that the release before 7dd7ae2 left
// mid-pull (the upgrade path). That release saved page 1's base image in a
// -revert.next file, recorded its length in the journal (NextRevertLen, no
// Page1 and no From), renamed -revert.next over -revert after T2, and its T2
// recorded no synced base. Each test makes this release's on-disk state at
// a failpoint and rewrites it into the older release's.

// oldCRC is the checksum of journal headers and revert records.
var oldCRC = crc32.MakeTable(crc32.Castagnoli)

// serverPage1 is the server's page 1 as of revision rev.
func serverPage1(t *testing.T, url, rev string) []byte {
	t.Helper()
	sel, err := wire.EncodeSelector(wire.SelectorRange(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	body, err := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerRevision: rev, ServerPagesSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/pull-updates", "application/protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fr := wire.NewFrameReader(resp.Body, 0)
	if err := fr.Next(&syncpb.PullUpdatesRespProtoBody{}); err != nil {
		t.Fatal(err)
	}
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			t.Fatal("the server sent no page 1")
		}
		if err != nil {
			t.Fatal(err)
		}
		if id == 0 {
			return bytes.Clone(page)
		}
	}
}

// makeOlderJournal rewrites the pull journal of the replica at path into
// the older release's (NextRevertLen of one revert record, no Page1, no
// From; the header's CRC recomputed) and returns the older release's
// -revert.next: one revert record holding the server's page 1 at the
// pull's revision.
func makeOlderJournal(t *testing.T, path, url string) (revertNext []byte) {
	t.Helper()
	var revision string
	rewriteJournalHeader(t, path, func(hdr map[string]any) {
		pull, _ := hdr["pull"].(map[string]any)
		if pull == nil {
			t.Fatal("the journal records no pull")
		}
		pull["next_revert_len"] = 4 + 4096 + 4 // page number, page, CRC
		delete(pull, "page1")
		delete(pull, "from")
		revision = hdr["revision"].(string)
	})
	rec := binary.BigEndian.AppendUint32(nil, 1)
	rec = append(rec, serverPage1(t, url, revision)...)
	return binary.BigEndian.AppendUint32(rec, crc32.Checksum(rec, oldCRC))
}

// rewriteJournalHeader rewrites the header of the pull journal of the
// replica at path into an earlier release's: edit changes it, and what
// releases before the in-place journal did not write goes (its format,
// and the size and CRC of the rest: their journals were replaced
// atomically, never torn). The header's CRC is recomputed.
func rewriteJournalHeader(t *testing.T, path string, edit func(hdr map[string]any)) {
	t.Helper()
	journal := path + "-syncdb-replay"
	data, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(data)
	payload, rest := data[4:4+n], data[4+n+4:]
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber() // keep the WAL positions' numbers exact
	var hdr map[string]any
	if err := dec.Decode(&hdr); err != nil {
		t.Fatal(err)
	}
	if hdr["format"] == nil {
		t.Fatal("the journal has no format: not this release's")
	}
	delete(hdr, "format")
	delete(hdr, "size")
	delete(hdr, "crc")
	edit(hdr)
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(h)))
	out = append(out, h...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(h, oldCRC))
	out = append(out, rest...)
	if err := os.WriteFile(journal, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pullKilledAt makes a replica with an unpushed local row whose pull of
// another replica's change (a new table, so page 1 changes, and a row in u)
// is killed at the failpoint point. checkpoint: the local row is
// checkpointed first, so -revert holds records (another page's old image).
func pullKilledAt(t *testing.T, point string, checkpoint bool) (*lossyReplica, string) {
	t.Helper()
	url := newServer(t)
	a := newLossyReplica(t, url)
	a.unpushedRow(checkpoint)
	pushedReplica(t, url, t.TempDir(), "b.db", "CREATE TABLE w(x)", "INSERT INTO u VALUES(2, 'remote')")
	a.crashedPull(point)
	failpoint.Set(nil)
	a.db.Close()
	a.db = nil
	a.rec.Resume()
	a.fs.Thaw()
	return a, url
}

// The older release killed at its pull.renamed: T1 and T2 committed,
// -revert.next renamed over -revert with the directory synced, -info not
// yet written. The same state is left by this release's recovery of an
// older journal killed after that rename. The open must find the rename
// done and not redo it: an unconditional rename failed with ENOENT at
// every open, and the replica could never be opened again.
func TestOlderPullRenamedThenUpgrade(t *testing.T) {
	ctx := context.Background()
	a, url := pullKilledAt(t, "pull.t2", false)

	// The older release's T2 recorded no synced base.
	plain, err := sql.Open("sqlite", dbactor.WriterDSN(a.cfg.Path, ""))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := plain.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlitex.Raw(ctx, conn, func(c *sqlitex.Conn) error { return c.SetNoCheckpointOnClose(true) }); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "DELETE FROM _syncdb_local WHERE key = 'synced_base'"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	plain.Close()
	// -revert.next is already the revert store.
	if err := os.WriteFile(a.cfg.Path+"-revert", makeOlderJournal(t, a.cfg.Path, url), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(a.cfg.Path + "-revert.next")

	db, err := syncdb.Open(a.ctx, a.cfg)
	if err != nil {
		t.Fatalf("the upgraded replica does not open: %v", err)
	}
	a.db = db
	if got := rows(t, a.db, "SELECT id, v FROM u ORDER BY id"); got != "2|remote" {
		t.Fatalf("u %q", got)
	}
	a.checkBase(url)
}

// The older release killed at its pull.t1: T1 committed, -revert.next holds
// page 1's base image, -revert still the old base's store (with a record
// of another page). This release's recovery of it is killed right after
// T2, which records the new base (synced_base, RevertLen = NextRevertLen).
// -revert.next must be the revert store by then: the next open takes the
// record and treats the journal as a leftover, so a rename after T2 never
// happened, and the new base's store was the first bytes of the old
// -revert (a wrong page 1), a silently wrong base.
func TestOlderPullT2KilledThenUpgrade(t *testing.T) {
	a, url := pullKilledAt(t, "pull.t1", true)
	if err := os.WriteFile(a.cfg.Path+"-revert.next", makeOlderJournal(t, a.cfg.Path, url), 0o644); err != nil {
		t.Fatal(err)
	}

	a.crashedOpen("pull.t2", false) // in the recovery

	a.open()
	if got := rows(t, a.db, "SELECT id, v FROM u ORDER BY id"); got != "2|remote" {
		t.Fatalf("u %q", got)
	}
	a.db.Close()
	if _, err := os.Stat(a.cfg.Path + "-revert.next"); err == nil {
		t.Errorf("-revert.next was never renamed")
	}
	checkSyncedBase(t, a.cfg.Path, url)
	a.open()
}

// The release before the in-place journal wrote the journal this one
// writes, without its format and the size and CRC of the rest (it replaced
// the file atomically). A replica it left mid-pull (T1 committed: the
// journal is the pending pull's, with or without its T2), or with a
// finished pull's journal left behind (its removal was not synced), is
// opened by this release after a power loss: the pull is finished once,
// nothing is lost, the base is the server's revision, and the next pull
// rewrites the old journal in place.
func TestPreviousReleaseJournal(t *testing.T) {
	for _, point := range []string{"pull.t1", "pull.t2", "pull.done"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			a, url := pullKilledAt(t, point, true)
			rewriteJournalHeader(t, a.cfg.Path, func(map[string]any) {})
			if err := a.fs.PowerLoss(); err != nil {
				t.Fatal(err)
			}
			if err := a.rec.PowerLoss(); err != nil {
				t.Fatal(err)
			}
			a.open()
			check := func(when, wantU string) {
				t.Helper()
				if gotT, gotU := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"), rows(t, a.db, "SELECT id, v FROM u ORDER BY id"); gotT != "1|local" || gotU != wantU {
					t.Fatalf("%s: t %q, u %q", when, gotT, gotU)
				}
			}
			check("after the upgrade", "2|remote")
			a.checkBase(url)
			b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
			mustExec(t, b, "INSERT INTO u VALUES(3, 'remote2')")
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after a sync")
			check("after a sync", "2|remote\n3|remote2")
			a.checkBase(url)
		})
	}
}
