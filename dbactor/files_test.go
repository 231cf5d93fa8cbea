package dbactor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
)

func page(b byte) []byte { return bytes.Repeat([]byte{b}, PageSize) }

// The revert store keeps the first image of a page, the changes file the
// last; a torn tail is cut off; remote records survive a reopen.
func TestPageStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store")
	rv, err := openPageStore(fsx.OS, path, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	rv.append(3, page(1))
	rv.append(3, page(2)) // ignored: the first (oldest) image wins
	rv.append(7, page(7))
	if err := rv.appendRemote(9); err != nil {
		t.Fatal(err)
	}
	rv.sync()
	valid := rv.size
	rv.close()
	// A torn record after the valid length.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(page(9)[:100])
	f.Close()

	rv, err = openPageStore(fsx.OS, path, valid, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rv.close()
	if got, _ := rv.read(nil, 3); !bytes.Equal(got, page(1)) {
		t.Fatal("revert store did not keep the first image")
	}
	if !rv.has(7) || !rv.remote(9) || rv.remote(7) || rv.has(4) {
		t.Fatalf("index after reopen: %v remotes %v", rv.index, rv.remotes)
	}
	if st, _ := os.Stat(path); st.Size() != valid {
		t.Fatalf("torn tail not cut: %d bytes, want %d", st.Size(), valid)
	}
	// A damaged record inside the valid length is an error, not a guess.
	data, _ := os.ReadFile(path)
	data[10] ^= 0xff
	os.WriteFile(path, data, 0o644)
	if _, err := openPageStore(fsx.OS, path, valid, true); err == nil {
		t.Fatal("a corrupt record was accepted")
	}

	a := &dbActor{cfg: Config{FS: fsx.OS}, files: layout.For(filepath.Join(dir, "db"))}
	w, err := a.startDownload()
	if err != nil {
		t.Fatal(err)
	}
	w.Add(5, page(1))
	w.Add(5, page(2)) // a later image of the same page wins
	if err := a.takeDownload(w); err != nil {
		t.Fatal(err)
	}
	ch, err := openPageStore(fsx.OS, layout.For(filepath.Join(dir, "db")).Changes, -1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.close()
	if got, _ := ch.read(nil, 5); !bytes.Equal(got, page(2)) {
		t.Fatal("changes file did not keep the last image")
	}
}

func TestJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	entries := []journalEntry{{ID: 1, Txn: 1, Record: []byte("a")}, {ID: 2, Txn: 1, Record: bytes.Repeat([]byte("b"), 70000)}}
	key := int64(7)
	recs := []*conflictRecord{{ID: 4, Kind: KindInsertInsert, Table: "t", Changes: [][]byte{[]byte("c1"), []byte("c2")}, Remote: []byte{0, 1}, NewKey: &key, Resolved: Rekeyed}}
	if err := writeJournal(fsx.OS, path, journalHeader{PullGen: 3, Revision: "r"}, entries, recs, false); err != nil {
		t.Fatal(err)
	}
	hdr, got, gotRecs, err := readJournal(fsx.OS, path)
	if err != nil || hdr.PullGen != 3 || hdr.Count != 2 || len(got) != 2 || !bytes.Equal(got[1].Record, entries[1].Record) {
		t.Fatalf("journal: %+v %d %v", hdr, len(got), err)
	}
	if len(gotRecs) != 1 || gotRecs[0].ID != 4 || *gotRecs[0].NewKey != 7 || string(gotRecs[0].Changes[1]) != "c2" || !bytes.Equal(gotRecs[0].Remote, []byte{0, 1}) {
		t.Fatalf("journal conflicts: %+v", gotRecs)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)-10], 0o644)
	if _, _, _, err := readJournal(fsx.OS, path); !errors.Is(err, errTornJournal) {
		t.Fatalf("a truncated journal: %v", err)
	}
}

// A journal is rewritten in place: every mix of a rewrite's first bytes
// with the journal it overwrote (a crash or power loss in the middle, the
// file at either length) is torn, never the old or new journal nor another
// one; the old and new alone are whole. An earlier release's journal (no
// format, no size, no CRC) is read without those checks.
func TestJournalTornRewrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	write := func(gen int64, n int) []byte {
		t.Helper()
		var entries []journalEntry
		for i := range n {
			entries = append(entries, journalEntry{ID: int64(i + 1), Txn: 1, Record: bytes.Repeat([]byte{byte(gen)}, 3000)})
		}
		if err := writeJournal(fsx.OS, path, journalHeader{PullGen: gen, Revision: "r"}, entries, nil, false); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	check := func(data []byte) (journalHeader, error) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		hdr, err := readJournalHeader(fsx.OS, path)
		if err != nil {
			return hdr, err
		}
		hdr, _, _, err = readJournal(fsx.OS, path)
		return hdr, err
	}
	for _, sizes := range [][2]int{{3, 5}, {5, 3}, {4, 4}} {
		old, neu := write(1, sizes[0]), write(2, sizes[1])
		for _, d := range [][]byte{old, neu} {
			if _, err := check(d); err != nil {
				t.Fatalf("a whole journal: %v", err)
			}
		}
		for cut := 1; cut < len(neu); cut += 97 {
			for _, length := range []int{len(old), len(neu)} {
				mix := append(bytes.Clone(neu[:min(cut, length)]), old[min(cut, len(old)):]...)
				mix = append(mix, make([]byte, max(0, length-len(mix)))...)[:length]
				if bytes.Equal(mix, old) || bytes.Equal(mix, neu) {
					continue
				}
				if hdr, err := check(mix); !errors.Is(err, errTornJournal) {
					t.Fatalf("%d of %d new bytes over %d, %d long: %v (gen %d)", cut, len(neu), len(old), length, err, hdr.PullGen)
				}
			}
		}
	}
	// An earlier release's journal: the same framing, no format.
	h := []byte(`{"pull_gen":4,"revision":"r","count":1}`)
	data := appendFramed(nil, h)
	data = appendFramed(data, append(make([]byte, 16), 'x'))
	if hdr, err := check(data); err != nil || hdr.PullGen != 4 || hdr.Format != 0 {
		t.Fatalf("an earlier release's journal: %+v %v", hdr, err)
	}
}

// A journal file is hostile input: its checksums tell a torn write, but
// anyone can write valid ones. A header that claims a negative or huge
// number of changes, a change or a header longer than the file: each is
// an error (no panic), and reading it allocates about what the file holds,
// not what it claims.
func TestJournalHostile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	// format2 is a journal of this release's format with the body's true
	// size and CRC, and the header's other fields given.
	format2 := func(fields string, body []byte) []byte {
		h := fmt.Sprintf(`{"format":2,"size":%d,"crc":%d,"pull_gen":1,"revision":"r",%s}`, len(body), crc32.Checksum(body, crcTable), fields)
		return append(appendFramed(nil, []byte(h)), body...)
	}
	entry := appendFramed(nil, make([]byte, 17))
	huge := binary.BigEndian.AppendUint32(nil, 1<<30-1) // an entry of 1 GiB, in a few bytes
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"count -1", format2(`"count":-1`, nil)},
		{"conflicts -1", format2(`"count":1,"conflicts":-1`, entry)},
		{"count 2^62", format2(`"count":4611686018427387904`, entry)},
		{"count 2^24", format2(`"count":16777216`, entry)},
		{"entry of 1 GiB", format2(`"count":1`, append(huge, 0, 0, 0, 0, 0))},
		{"earlier release, entry of 1 GiB", append(appendFramed(nil, []byte(`{"pull_gen":1,"revision":"r","count":1}`)), append(huge, 0, 0, 0, 0, 0)...)},
		{"conflict of 1 GiB", format2(`"count":0,"conflicts":1`, append(huge, 0, 0, 0, 0, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			var err error
			alloc := allocated(func() { _, _, _, err = readJournal(fsx.OS, path) })
			if err == nil || alloc > 1<<20 {
				t.Fatalf("read %d bytes, allocating %d: %v", len(tc.data), alloc, err)
			}
		})
	}
	// A header longer than any journal's, in a file (sparse) that holds it.
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if _, err = f.Write(binary.BigEndian.AppendUint32(nil, size-8)); err == nil {
		err = f.Truncate(size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	alloc := allocated(func() { _, err = readJournalHeader(fsx.OS, path) })
	if !errors.Is(err, errTornJournal) || alloc > 1<<20 {
		t.Fatalf("a header of %d bytes: allocating %d: %v", size-8, alloc, err)
	}
}

// allocated is the number of bytes fn allocates on the heap.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestCheckStatement(t *testing.T) {
	for _, c := range []struct {
		sql  string
		inTx bool
		ok   bool
	}{
		{"INSERT INTO t VALUES(1)", false, true},
		{"BEGIN", false, false},
		{"commit", true, false},
		{"ROLLBACK", true, false},
		{"ROLLBACK TO sp", true, true},
		{"SAVEPOINT sp", false, false},
		{"SAVEPOINT sp", true, true},
		{"VACUUM", false, false},
		{"ATTACH 'x' AS y", false, false},
		{"PRAGMA journal_mode", false, true},
		{"PRAGMA journal_mode=DELETE", false, false},
		{"PRAGMA main.page_size = 8192", false, false},
		{"PRAGMA wal_checkpoint", false, false},
		{"PRAGMA foreign_keys = ON", false, true},
	} {
		err := checkStatement(c.sql, c.inTx)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrUnsupportedStatement)) {
			t.Errorf("%q (in tx %v): %v", c.sql, c.inTx, err)
		}
	}
	// SQLite takes a vertical tab after whitespace for whitespace: the
	// read pool runs the text as given, so these must be refused too.
	for _, q := range []string{" \vBEGIN", "SELECT 1; \vATTACH 'x' AS y", "-- c\n\vPRAGMA journal_mode = DELETE"} {
		if err := CheckRead(q); !errors.Is(err, ErrUnsupportedStatement) {
			t.Errorf("CheckRead(%q): %v, want ErrUnsupportedStatement", q, err)
		}
	}
}

// A newer format's header is errNewerJournal with the fields this release
// knows filled in; one that does not decode is errUndecodedHeader too
// (whether it records a pending pull is unknown).
func TestJournalNewerFormatHeader(t *testing.T) {
	var hdr journalHeader
	err := parseJournalHeader("j", []byte(`{"format":3,"pull_gen":4,"pull":{"revision":"r"},"x":[1]}`), &hdr)
	if !errors.Is(err, errNewerJournal) || errors.Is(err, errUndecodedHeader) || hdr.PullGen != 4 || hdr.Pull == nil || hdr.Pull.Revision != "r" {
		t.Fatalf("newer header: %+v %v", hdr, err)
	}
	hdr = journalHeader{}
	err = parseJournalHeader("j", []byte(`{"format":3,"pull_gen":"four","pull":{"revision":"r"}}`), &hdr)
	if !errors.Is(err, errNewerJournal) || !errors.Is(err, errUndecodedHeader) || hdr.Format != 3 || hdr.Pull != nil {
		t.Fatalf("undecodable newer header: %+v %v", hdr, err)
	}
	if err := parseJournalHeader("j", []byte(`{"format":2,"pull_gen":"four"}`), &hdr); err == nil || errors.Is(err, errNewerJournal) {
		t.Fatalf("undecodable header of this format: %v", err)
	}
}
