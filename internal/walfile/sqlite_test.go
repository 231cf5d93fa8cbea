package walfile

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

const testPageSize = 4096

// testDB is a WAL-mode database with automatic checkpoints off and a single
// connection, so the WAL only changes when the test says so.
type testDB struct {
	t    testing.TB
	db   *sql.DB
	path string
}

func openTestDB(t testing.TB, pragmas ...string) *testDB {
	t.Helper()
	return openTestDBAt(t, filepath.Join(t.TempDir(), "test.db"), pragmas...)
}

// openTestDBAt opens (creating if needed) the database at path. The driver
// runs _pragma values in lexicographic order, so journal_mode(WAL) runs
// before, for example, page_size: create the file first to get another
// page size.
func openTestDBAt(t testing.TB, path string, pragmas ...string) *testDB {
	t.Helper()
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)"
	for _, p := range pragmas {
		dsn += "&_pragma=" + p
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	d := &testDB{t: t, db: db, path: path}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	return d
}

func (d *testDB) wal() string { return d.path + "-wal" }

func (d *testDB) exec(q string, args ...any) {
	d.t.Helper()
	if _, err := d.db.Exec(q, args...); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
}

func (d *testDB) pageCount() uint32 {
	d.t.Helper()
	var n uint32
	if err := d.db.QueryRow("PRAGMA page_count").Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n
}

// snapshot returns every page of the database as SQLite currently sees it.
func (d *testDB) snapshot() map[uint32][]byte {
	d.t.Helper()
	rows, err := d.db.Query("SELECT pgno, data FROM sqlite_dbpage")
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	pages := make(map[uint32][]byte)
	for rows.Next() {
		var pgno uint32
		var data []byte
		if err := rows.Scan(&pgno, &data); err != nil {
			d.t.Fatal(err)
		}
		pages[pgno] = data
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	if len(pages) != int(d.pageCount()) {
		d.t.Fatalf("sqlite_dbpage has %d pages, page_count %d", len(pages), d.pageCount())
	}
	return pages
}

// checkpoint runs PRAGMA wal_checkpoint(mode) and requires it to complete.
func (d *testDB) checkpoint(mode string) {
	d.t.Helper()
	var busy, log, done int
	if err := d.db.QueryRow("PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &log, &done); err != nil {
		d.t.Fatal(err)
	}
	if busy != 0 || log != done {
		d.t.Fatalf("checkpoint %s: busy=%d log=%d checkpointed=%d", mode, busy, log, done)
	}
}

// scanFile reads all transactions of a WAL file after from.
func scanFile(t testing.TB, path string, from Position) ([][]Frame, *Scanner) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return scanBytes(t, b, from)
}

func readFramePage(t testing.TB, path string, f Frame) []byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	p, err := ReadPage(fh, f, testPageSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkTxn verifies that one scanned transaction is well formed, that its
// commit size is the page count and that it carries exactly the pages that
// changed between the snapshots before and after it, with their new content.
func checkTxn(t testing.TB, d *testDB, txn []Frame, before, after map[uint32][]byte) {
	t.Helper()
	if len(txn) == 0 {
		t.Fatal("empty transaction")
	}
	for i, f := range txn {
		if f.IsCommit() != (i == len(txn)-1) {
			t.Fatalf("frame %d of %d: commit=%v", i+1, len(txn), f.IsCommit())
		}
		if i > 0 && f.Index != txn[i-1].Index+1 {
			t.Fatalf("frames not contiguous: %d after %d", f.Index, txn[i-1].Index)
		}
	}
	commit := txn[len(txn)-1]
	if pc := uint32(len(after)); commit.DBSize != pc {
		t.Fatalf("commit DBSize %d, page_count %d", commit.DBSize, pc)
	}
	written := make(map[uint32]bool)
	for _, f := range LatestPerPage(txn) {
		written[f.Pgno] = true
		if f.Pgno > commit.DBSize {
			continue
		}
		if got := readFramePage(t, d.wal(), f); !bytes.Equal(got, after[f.Pgno]) {
			t.Fatalf("page %d (frame %d) differs from sqlite_dbpage", f.Pgno, f.Index)
		}
	}
	for pgno, data := range after {
		if !bytes.Equal(before[pgno], data) && !written[pgno] {
			t.Fatalf("page %d changed but is not in the transaction", pgno)
		}
	}
}

func blob(n int, seed int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// mutation makes the k-th of a varied sequence of single-statement commits.
func mutation(d *testDB, k int) {
	switch k % 6 {
	case 0:
		d.exec("INSERT INTO t(v) VALUES(?)", blob(100+k, k))
	case 1:
		d.exec("INSERT INTO t(v) VALUES(?)", blob(3*testPageSize+k, k)) // overflow pages
	case 2:
		d.exec("UPDATE t SET v = ? WHERE id = (SELECT min(id) FROM t)", blob(500, k))
	case 3:
		d.exec("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 50) INSERT INTO u(a, b) SELECT ? * 100 + i, ? FROM s", k, strings.Repeat("x", 40))
	case 4:
		d.exec("DELETE FROM t WHERE id = (SELECT max(id) FROM t)")
	case 5:
		d.exec(fmt.Sprintf("CREATE TABLE extra%d(x)", k))
	}
}

func setupSchema(d *testDB) {
	d.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	d.exec("CREATE TABLE u(a, b)")
	d.exec("CREATE INDEX u_a ON u(a)")
}

func TestScanEachCommit(t *testing.T) {
	d := openTestDB(t)
	// Switching a new database to WAL mode writes nothing to the WAL: the
	// first transaction in it is the first CREATE TABLE.
	if st, err := os.Stat(d.wal()); err == nil && st.Size() != 0 {
		t.Fatalf("fresh database has a %d-byte WAL", st.Size())
	}
	if _, frames, err := ReadAll(d.wal()); err != nil || len(frames) != 0 {
		t.Fatalf("fresh database: %d frames, %v", len(frames), err)
	}

	// Each statement, including each schema change, is one commit.
	var pos Position
	prev := map[uint32][]byte{}
	var all [][]Frame
	step := func(name string, do func()) {
		t.Helper()
		do()
		after := d.snapshot()
		txns, s := scanFile(t, d.wal(), pos)
		if len(txns) != 1 || s.Restarted() {
			t.Fatalf("%s: %d transactions (restarted=%v), want 1", name, len(txns), s.Restarted())
		}
		checkTxn(t, d, txns[0], prev, after)
		if txns[0][0].Index != pos.Frame+1 {
			t.Fatalf("%s: first frame %d, want %d", name, txns[0][0].Index, pos.Frame+1)
		}
		pos, prev = s.Position(), after
		all = append(all, txns[0])
	}
	step("create t", func() { d.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)") })
	step("create u", func() { d.exec("CREATE TABLE u(a, b)") })
	step("create index", func() { d.exec("CREATE INDEX u_a ON u(a)") })
	for k := range 30 {
		step(fmt.Sprintf("mutation %d", k), func() { mutation(d, k) })
	}
	step("multi-statement transaction", func() {
		tx, err := d.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if _, err := tx.Exec("INSERT INTO t(v) VALUES(?)", blob(1000, i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	})
	step("delete all", func() { d.exec("DELETE FROM t") })
	step("vacuum", func() { d.exec("VACUUM") }) // rewrites and shrinks the database
	if n := all[len(all)-1][len(all[len(all)-1])-1].DBSize; n >= all[len(all)-2][len(all[len(all)-2])-1].DBSize {
		t.Fatalf("VACUUM did not shrink the database (%d pages)", n)
	}

	h, frames, err := ReadAll(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	if h.Magic != MagicLittleEndian && h.Magic != MagicBigEndian || h.PageSize != testPageSize {
		t.Fatalf("header %+v", h)
	}
	// SQLite writes checksums in native byte order.
	if le := runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64"; le && h.BigEndianChecksum() {
		t.Errorf("little-endian %s wrote magic %#x", runtime.GOARCH, h.Magic)
	}
	if !slices.Equal(frames, slices.Concat(all...)) {
		t.Fatalf("ReadAll: %d frames, incremental scans: %d", len(frames), len(slices.Concat(all...)))
	}
	if frames[len(frames)-1].Index != pos.Frame {
		t.Fatalf("last frame %d, position %d", frames[len(frames)-1].Index, pos.Frame)
	}
}

func TestResumeAfterMoreCommits(t *testing.T) {
	d := openTestDB(t)
	setupSchema(d)
	for k := range 10 {
		mutation(d, k)
	}
	first, s := scanFile(t, d.wal(), Position{})
	pos := s.Position()
	for k := 10; k < 17; k++ {
		mutation(d, k)
	}
	all, _ := scanFile(t, d.wal(), Position{})
	resumed, s2 := scanFile(t, d.wal(), pos)
	if s2.Restarted() {
		t.Fatal("resume reported a restart")
	}
	if len(resumed) != 7 || len(all) != len(first)+7 {
		t.Fatalf("resumed %d, all %d, first %d", len(resumed), len(all), len(first))
	}
	for i, txn := range resumed {
		if !slices.Equal(txn, all[len(first)+i]) {
			t.Fatalf("resumed transaction %d differs", i)
		}
	}
	// Resuming at the end yields nothing and keeps the position.
	again, s3 := scanFile(t, d.wal(), s2.Position())
	if len(again) != 0 || s3.Position() != s2.Position() {
		t.Fatalf("at end: %d transactions, %+v vs %+v", len(again), s3.Position(), s2.Position())
	}
}

func TestRestartedWAL(t *testing.T) {
	for _, mode := range []string{"TRUNCATE", "RESTART", "PASSIVE"} {
		t.Run(mode, func(t *testing.T) {
			d := openTestDB(t)
			setupSchema(d)
			for k := range 20 {
				mutation(d, k)
			}
			old, s := scanFile(t, d.wal(), Position{})
			oldPos, oldHdr := s.Position(), s.Header()
			st, err := os.Stat(d.wal())
			if err != nil {
				t.Fatal(err)
			}
			oldSize := st.Size()

			d.checkpoint(mode)
			txns, s := scanFile(t, d.wal(), oldPos)
			switch mode {
			case "TRUNCATE":
				// The WAL is empty until the next write.
				if !s.Restarted() || len(txns) != 0 || !s.Position().IsZero() {
					t.Fatalf("after TRUNCATE: restarted=%v, %d txns, %+v", s.Restarted(), len(txns), s.Position())
				}
			default:
				// The old generation is still in the file and still valid
				// until a writer restarts the log.
				if s.Restarted() || len(txns) != 0 || s.Position() != oldPos {
					t.Fatalf("after %s: restarted=%v, %d txns", mode, s.Restarted(), len(txns))
				}
			}

			before := d.snapshot()
			d.exec("INSERT INTO t(v) VALUES(?)", blob(50, 1))
			mid := d.snapshot()
			d.exec("INSERT INTO u(a, b) VALUES(1, 2)")
			after := d.snapshot()

			txns, s = scanFile(t, d.wal(), oldPos)
			if !s.Restarted() {
				t.Fatal("restart not reported")
			}
			h := s.Header()
			if h.Salt1 != oldHdr.Salt1+1 || h.Salt2 == oldHdr.Salt2 || h.CheckpointSeq == oldHdr.CheckpointSeq {
				t.Errorf("new header %+v, old %+v", h, oldHdr)
			}
			if len(txns) != 2 || txns[0][0].Index != 1 {
				t.Fatalf("got %d transactions after restart", len(txns))
			}
			checkTxn(t, d, txns[0], before, mid)
			checkTxn(t, d, txns[1], mid, after)
			if _, frames, err := ReadAll(d.wal()); err != nil || !slices.Equal(frames, slices.Concat(txns...)) {
				t.Fatalf("ReadAll: %d frames, %v", len(frames), err)
			}

			st, err = os.Stat(d.wal())
			if err != nil {
				t.Fatal(err)
			}
			newEnd := h.FrameOffset(s.Position().Frame + 1)
			if mode == "TRUNCATE" {
				if st.Size() != newEnd {
					t.Errorf("WAL size %d, want %d", st.Size(), newEnd)
				}
				return
			}
			// The file was reused: frames of the old generation follow the
			// new ones. Make sure they are there, well formed and stale.
			if st.Size() != oldSize || newEnd >= oldSize {
				t.Fatalf("WAL size %d (old %d), new generation ends at %d", st.Size(), oldSize, newEnd)
			}
			b, err := os.ReadFile(d.wal())
			if err != nil {
				t.Fatal(err)
			}
			fh := parseFrameHeader(b[newEnd:])
			if fh.salt1 != oldHdr.Salt1 || fh.salt2 != oldHdr.Salt2 {
				t.Fatalf("frame after the new generation has salts %d,%d; old %d,%d", fh.salt1, fh.salt2, oldHdr.Salt1, oldHdr.Salt2)
			}
			if got := len(slices.Concat(old...)); int64(got) != (oldSize-HeaderSize)/h.FrameSize() {
				t.Fatalf("old generation had %d frames in %d bytes", got, oldSize)
			}
			// Resuming from the new position sees nothing more.
			more, s2 := scanFile(t, d.wal(), s.Position())
			if len(more) != 0 || s2.Restarted() {
				t.Fatalf("stale frames returned: %d", len(more))
			}
		})
	}
}

// buildMultiCommitWAL returns a WAL image with several transactions, the
// last of which has many frames.
func buildMultiCommitWAL(t *testing.T) ([]byte, [][]Frame) {
	d := openTestDB(t)
	setupSchema(d)
	for k := range 8 {
		mutation(d, k)
	}
	d.exec("INSERT INTO t(v) VALUES(?)", blob(10*testPageSize, 99))
	b, err := os.ReadFile(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	txns, _ := scanBytes(t, b, Position{})
	if last := txns[len(txns)-1]; len(last) < 10 {
		t.Fatalf("last transaction has only %d frames", len(last))
	}
	return b, txns
}

func TestTornAndCorrupt(t *testing.T) {
	b, txns := buildMultiCommitWAL(t)
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	fs := int(h.FrameSize())
	last := txns[len(txns)-1]
	lastCommit := last[len(last)-1]
	firstOfLast := last[0]
	mid := txns[len(txns)/2][0]

	check := func(name string, img []byte, wantTxns int) {
		t.Helper()
		got, s := scanBytes(t, img, Position{})
		if len(got) != wantTxns {
			t.Errorf("%s: %d transactions, want %d", name, len(got), wantTxns)
			return
		}
		if !slices.EqualFunc(got, txns[:wantTxns], slices.Equal) {
			t.Errorf("%s: transactions differ from the prefix", name)
		}
		if wantTxns > 0 && s.Position().Frame != txns[wantTxns-1][len(txns[wantTxns-1])-1].Index {
			t.Errorf("%s: position %+v", name, s.Position())
		}
		// ReadAll on a file agrees.
		p := filepath.Join(t.TempDir(), "x-wal")
		if err := os.WriteFile(p, img, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, frames, err := ReadAll(p); err != nil || !slices.Equal(frames, slices.Concat(txns[:wantTxns]...)) {
			t.Errorf("%s: ReadAll %d frames, %v", name, len(frames), err)
		}
	}
	n := len(txns)
	check("intact", b, n)
	// Torn writes: the file ends inside the last transaction.
	check("torn commit page", b[:len(b)-fs/2], n-1)
	check("torn commit header", b[:int(lastCommit.Offset)-10], n-1)
	check("missing commit frame", b[:int(lastCommit.Offset)-FrameHeaderSize], n-1)
	check("torn first frame of last", b[:int(firstOfLast.Offset)+100], n-1)
	// Torn with garbage beyond (file extended, frames zero-filled).
	check("zero tail", append(slices.Clone(b[:int(firstOfLast.Offset)+100]), make([]byte, 5*fs)...), n-1)

	flip := func(off int64) []byte {
		c := slices.Clone(b)
		c[off] ^= 0x40
		return c
	}
	check("corrupt commit page", flip(lastCommit.Offset+int64(fs)/3), n-1)
	check("corrupt commit checksum", flip(lastCommit.Offset-FrameHeaderSize+18), n-1)
	check("corrupt commit size", flip(lastCommit.Offset-FrameHeaderSize+7), n-1)
	check("corrupt commit salt", flip(lastCommit.Offset-FrameHeaderSize+9), n-1)
	check("corrupt first page of last", flip(firstOfLast.Offset), n-1)
	check("corrupt middle", flip(mid.Offset+5), len(txns)/2)
	check("corrupt first frame", flip(HeaderSize+FrameHeaderSize+1), 0)

	// A corrupted header invalidates the whole log.
	if _, err := NewScanner(bytes.NewReader(flip(13)), int64(len(b)), Position{}); err == nil {
		t.Error("corrupted header accepted")
	}
}

func TestUncommittedSpill(t *testing.T) {
	// A tiny page cache makes a large transaction spill dirty pages into
	// the WAL before it commits.
	d := openTestDB(t, "cache_size(10)")
	setupSchema(d)
	mutation(d, 0)
	before := d.snapshot()
	committed, s := scanFile(t, d.wal(), Position{})
	pos := s.Position()
	st, err := os.Stat(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	sizeBefore := st.Size()

	tx, err := d.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := tx.Exec("INSERT INTO u(a, b) VALUES(?, ?)", i, blob(300, i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 { // rewrite pages already spilled
			if _, err := tx.Exec("UPDATE u SET b = ? WHERE a < ?", blob(300, -i), i/2); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err = os.Stat(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	spilled := (st.Size() - sizeBefore) / (FrameHeaderSize + testPageSize)
	if spilled < 5 {
		t.Fatalf("transaction did not spill (%d frames)", spilled)
	}
	t.Logf("%d frames spilled before commit", spilled)

	// Not committed: nothing new, from the position or from scratch.
	txns, s2 := scanFile(t, d.wal(), pos)
	if len(txns) != 0 || s2.Position() != pos {
		t.Fatalf("uncommitted transaction returned: %d", len(txns))
	}
	if all, _ := scanFile(t, d.wal(), Position{}); !slices.EqualFunc(all, committed, slices.Equal) {
		t.Fatal("full scan changed while the transaction was open")
	}

	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	after := d.snapshot()
	txns, _ = scanFile(t, d.wal(), pos)
	if len(txns) != 1 {
		t.Fatalf("after commit: %d transactions", len(txns))
	}
	checkTxn(t, d, txns[0], before, after)
	if int64(len(txns[0])) < spilled {
		t.Errorf("commit has %d frames, %d were spilled", len(txns[0]), spilled)
	}
}

func TestIndexAgainstSnapshots(t *testing.T) {
	d := openTestDB(t)
	var states []map[uint32][]byte
	commit := func(q string, args ...any) {
		d.exec(q, args...)
		states = append(states, d.snapshot())
	}
	// Put a base state into the database file, so that pages not in the
	// WAL must be read from there.
	setupSchema(d)
	for k := range 12 {
		mutation(d, k)
	}
	d.checkpoint("TRUNCATE")
	commit("CREATE TABLE t2(x)")
	for k := 12; k < 36; k++ {
		mutation(d, k)
		states = append(states, d.snapshot())
	}
	commit("DELETE FROM t WHERE id % 2 = 0")
	commit("VACUUM")
	commit("INSERT INTO t(v) VALUES(?)", blob(2*testPageSize, 7))

	txns, _ := scanFile(t, d.wal(), Position{})
	if len(txns) != len(states) {
		t.Fatalf("%d transactions, %d commits", len(txns), len(states))
	}
	_, frames, err := ReadAll(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	x := BuildIndex(frames)
	var inc Index
	for _, txn := range txns {
		if err := inc.Add(txn...); err != nil {
			t.Fatal(err)
		}
	}

	dbFile, err := os.ReadFile(d.path)
	if err != nil {
		t.Fatal(err)
	}
	wal, err := os.Open(d.wal())
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()

	watermarks := make([]int, len(txns))
	for i, txn := range txns {
		watermarks[i] = txn[len(txn)-1].Index
	}
	buf := make([]byte, testPageSize)
	fromWAL, fromDB := 0, 0
	defer func() { t.Logf("pages checked: %d from WAL frames, %d from the database file", fromWAL, fromDB) }()
	for k, w := range watermarks {
		want := states[k]
		for _, ix := range []*Index{x, &inc} {
			if n, ok := ix.DBSize(w); !ok || n != uint32(len(want)) {
				t.Fatalf("commit %d: DBSize %d, page_count %d", k, n, len(want))
			}
			if _, ok := ix.DBSize(w - 1); k == 0 && ok {
				t.Fatal("DBSize before the first commit")
			}
		}
		for pgno := uint32(1); pgno <= uint32(len(want)); pgno++ {
			var got []byte
			f, ok := x.Lookup(pgno, w)
			if f2, ok2 := inc.Lookup(pgno, w); f2 != f || ok2 != ok {
				t.Fatalf("incremental index differs for page %d at %d", pgno, w)
			}
			if ok {
				if f.Index > w || f.Pgno != pgno {
					t.Fatalf("Lookup(%d, %d) = %+v", pgno, w, f)
				}
				got, err = ReadPage(wal, f, testPageSize, buf)
				if err != nil {
					t.Fatal(err)
				}
				fromWAL++
			} else {
				fromDB++
				off := int(pgno-1) * testPageSize
				if off+testPageSize > len(dbFile) {
					t.Fatalf("commit %d: page %d in neither WAL nor database file", k, pgno)
				}
				got = dbFile[off : off+testPageSize]
			}
			if !bytes.Equal(got, want[pgno]) {
				t.Fatalf("commit %d (frame %d): page %d as of watermark differs from sqlite_dbpage", k, w, pgno)
			}
		}
	}

	// ChangedAfter(W_j): exactly the pages of the later transactions, and
	// at least every page whose content differs from the final state.
	final := states[len(states)-1]
	for j, w := range watermarks {
		got := x.ChangedAfter(w)
		if !slices.Equal(got, inc.ChangedAfter(w)) {
			t.Fatalf("incremental ChangedAfter differs at %d", w)
		}
		set := make(map[uint32]bool)
		for _, txn := range txns[j+1:] {
			for _, f := range txn {
				set[f.Pgno] = true
			}
		}
		want := slices.Sorted(func(yield func(uint32) bool) {
			for p := range set {
				if !yield(p) {
					return
				}
			}
		})
		if !slices.Equal(got, want) {
			t.Fatalf("ChangedAfter(%d) = %v, want %v", w, got, want)
		}
		for pgno, data := range final {
			if !bytes.Equal(states[j][pgno], data) && !set[pgno] {
				t.Fatalf("ChangedAfter(%d) misses page %d", w, pgno)
			}
		}
	}
	if got := x.ChangedAfter(watermarks[len(watermarks)-1]); len(got) != 0 {
		t.Fatalf("ChangedAfter(last) = %v", got)
	}
}
