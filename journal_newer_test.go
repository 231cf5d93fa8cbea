package syncdb_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// A finished pull's journal stays in place, so a release that writes a
// newer journal format must not keep this one from opening the replica
// (a downgrade) when its pull is finished: told by -info's Pulled, or by
// T2's record when -info did not get it (stopped at pull.t2). Only a
// pending pull's journal (stopped at pull.journal, before T1, or at
// pull.t1) is refused, with ErrNewerJournal saying to open the replica
// with the newer release, the journal left as it is; once that release
// finished the pull (here: the header put back) it opens with nothing
// lost.
func TestPullJournalNewerFormat(t *testing.T) {
	for _, point := range []string{"finished", "pull.journal", "pull.t1", "pull.t2"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			path := closedReplica(t, url, dir, "local") // row 1, not pushed
			b := pushedReplica(t, url, dir, "b.db", "INSERT INTO t VALUES(2, 'remote')")
			journal := path + "-syncdb-replay"
			if point == "finished" {
				a := open(t, syncdb.Config{Path: path, URL: url})
				if _, err := a.Pull(ctx); err != nil {
					t.Fatal(err)
				}
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				stoppedPull(t, path, point)
			}
			whole, err := os.ReadFile(journal)
			if err != nil {
				t.Fatal(err)
			}
			newer := bumpJournalFormat(t, journal)
			if point == "pull.journal" || point == "pull.t1" {
				a, err := syncdb.Open(ctx, syncdb.Config{Path: path})
				if err == nil {
					got := rows(t, a, "SELECT id, v FROM t ORDER BY id")
					a.Close()
					t.Fatalf("opened with a newer release's pending journal: t %q", got)
				}
				if !errors.Is(err, syncdb.ErrNewerJournal) || !strings.Contains(err.Error(), "Open the replica with that release") {
					t.Fatalf("opening with a newer release's pending journal: %v", err)
				}
				t.Logf("refused: %v", err)
				if got, err := os.ReadFile(journal); err != nil || !bytes.Equal(got, newer) {
					t.Fatalf("the refused open changed the journal (%d bytes, %v)", len(got), err)
				}
				if err := os.WriteFile(journal, whole, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := open(t, syncdb.Config{Path: path, URL: url})
			if point == "pull.journal" {
				if _, err := a.Pull(ctx); err != nil {
					t.Fatal(err)
				}
			}
			syncedAll(t, a, b, path, url, "1|local\n2|remote")
		})
	}
}

// bumpJournalFormat rewrites the journal's header as a newer release
// would: a format above this release's and a field it does not know, the
// rest of the file as it was (the header's CRC recomputed). It returns
// the new bytes.
func bumpJournalFormat(t *testing.T, journal string) []byte {
	t.Helper()
	data, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(data)
	dec := json.NewDecoder(bytes.NewReader(data[4 : 4+n]))
	dec.UseNumber()
	var hdr map[string]any
	if err := dec.Decode(&hdr); err != nil {
		t.Fatal(err)
	}
	f, err := hdr["format"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	hdr["format"] = f + 1
	hdr["future_field"] = []int{1, 2}
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(h)))
	out = append(out, h...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli)))
	out = append(out, data[4+n+4:]...)
	if err := os.WriteFile(journal, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
