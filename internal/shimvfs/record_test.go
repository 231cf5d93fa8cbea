package shimvfs

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/testutil"
)

func record(t *testing.T, dir string) *Recorder {
	t.Helper()
	r, err := Record(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// conn opens path through the shim with a single connection.
func conn(t *testing.T, path, params string) *sql.DB {
	t.Helper()
	db := openDB(t, path, true, params)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db
}

func insertRows(t *testing.T, db *sql.DB, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := db.Exec(`INSERT INTO t VALUES(?, printf('%0500d', ?))`, i, i); err != nil {
			t.Fatal(err)
		}
	}
}

// ids returns count(*) and max(id) of t, checking integrity first.
func ids(t *testing.T, path string) (n, max int) {
	t.Helper()
	db := openDB(t, path, false, "")
	defer db.Close()
	if got := queryString(t, db, `PRAGMA integrity_check`); got != "ok" {
		t.Fatalf("integrity_check: %s", got)
	}
	if err := db.QueryRow(`SELECT count(*), coalesce(max(id), 0) FROM t`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	return n, max
}

func TestPowerLoss(t *testing.T) {
	for _, mode := range []string{"WAL", "DELETE", "TRUNCATE"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			r := record(t, dir)
			path := filepath.Join(dir, "db.sqlite")

			// A database outside dir, written without syncs, must not be touched.
			other := filepath.Join(t.TempDir(), "other.sqlite")
			odb := conn(t, other, "_pragma=journal_mode("+mode+")&_pragma=synchronous(OFF)")
			testutil.MustExec(t, odb, `CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)`)
			insertRows(t, odb, 1, 30)

			db := conn(t, path, "_pragma=journal_mode("+mode+")&_pragma=synchronous(FULL)")
			testutil.MustExec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)`)
			insertRows(t, db, 1, 20)
			testutil.MustExec(t, db, `PRAGMA synchronous=OFF`)
			insertRows(t, db, 21, 40)
			if n, _ := ids(t, path); n != 40 {
				t.Fatalf("before the crash: %d rows", n)
			}
			if err := r.PowerLoss(); err == nil || !strings.Contains(err.Error(), "still open") {
				t.Fatalf("PowerLoss with open files: %v", err)
			}

			r.Crash()
			db.Close()
			odb.Close()
			st := r.Stats()
			t.Logf("stats before PowerLoss: %+v", st)
			if st.Writes == 0 || st.Syncs == 0 {
				t.Errorf("nothing recorded: %+v", st)
			}
			if err := r.PowerLoss(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path + "-shm"); !os.IsNotExist(err) {
				t.Errorf("-shm survived: %v", err)
			}
			n, max := ids(t, path)
			t.Logf("after power loss: %d rows, max id %d", n, max)
			if n < 20 || max < 20 {
				t.Errorf("synced commits lost: %d rows, max id %d", n, max)
			}
			if max >= 40 {
				t.Errorf("no unsynced commit was lost")
			}
			if n, _ := ids(t, other); n != 30 {
				t.Errorf("file outside dir: %d rows, want 30", n)
			}

			// The Recorder goes on: another cycle from the restored state.
			db = conn(t, path, "_pragma=synchronous(FULL)")
			insertRows(t, db, 100, 110)
			r.Crash()
			db.Close()
			if err := r.PowerLoss(); err != nil {
				t.Fatal(err)
			}
			if n2, max2 := ids(t, path); n2 != n+11 || max2 != 110 {
				t.Errorf("second cycle: %d rows, max id %d; want %d, 110", n2, max2, n+11)
			}
		})
	}
}

// TestPowerLossCheckpoint checkpoints without syncing the database file: a
// power loss must undo the checkpoint's writes, and the WAL still has it all.
func TestPowerLossCheckpoint(t *testing.T) {
	dir := t.TempDir()
	r := record(t, dir)
	path := filepath.Join(dir, "db.sqlite")
	db := conn(t, path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)")
	testutil.MustExec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)`)
	insertRows(t, db, 1, 50)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	testutil.MustExec(t, db, `PRAGMA synchronous=OFF`)
	var busy, log, ckpt int
	if err := db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &ckpt); err != nil || ckpt == 0 {
		t.Fatalf("checkpoint: %v, %d of %d frames", err, ckpt, log)
	}
	if after, _ := os.ReadFile(path); bytes.Equal(after, before) {
		t.Fatal("the checkpoint did not write the database file")
	}
	r.Crash()
	db.Close()
	if err := r.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("database file not restored: %d bytes, was %d", len(after), len(before))
	}
	if n, max := ids(t, path); n != 50 || max != 50 {
		t.Errorf("after power loss: %d rows, max id %d; want 50, 50", n, max)
	}
}

// TestPowerLossLazy records an attached sparse replica: pre-images of pages
// never fetched are the holes' zeros, and the Pages sees the writes as usual.
func TestPowerLossLazy(t *testing.T) {
	dir := t.TempDir()
	path := copyFile(t, source(t), dir, true)
	p := newTestPages(t, path, 32, true)
	detach, err := Attach(path, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(detach)
	r := record(t, dir)
	db := conn(t, path, "_pragma=synchronous(OFF)&_pragma=wal_autocheckpoint(0)")
	testutil.MustExec(t, db, `INSERT INTO t SELECT id + 100000, k || 'x', v, pad FROM t WHERE id % 10 = 0`)
	testutil.MustExec(t, db, `PRAGMA wal_checkpoint(PASSIVE)`)
	if p.wrote.Load() == 0 {
		t.Fatal("no write reported")
	}
	r.Crash()
	db.Close()
	if err := r.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	// The WAL was never synced: the database is back to the source image
	// (wherever it was present; holes stay zero).
	got, _ := os.ReadFile(path)
	want, _ := os.ReadFile(source(t))
	if len(got) != len(want) {
		t.Fatalf("size %d, want %d", len(got), len(want))
	}
	for pg := int64(0); pg < int64(len(got))/srcPS; pg++ {
		g := got[pg*srcPS : (pg+1)*srcPS]
		if !bytes.Equal(g, want[pg*srcPS:(pg+1)*srcPS]) && !bytes.Equal(g, make([]byte, srcPS)) {
			t.Fatalf("page %d is neither the source page nor a hole", pg+1)
		}
	}
}

func TestRecordErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Record("rel"); err == nil {
		t.Error("relative dir accepted")
	}
	r := record(t, dir)
	if _, err := Record(filepath.Join(dir, "sub")); err == nil {
		t.Error("overlapping Record accepted")
	}
	r.Stop()
	r2, err := Record(filepath.Join(dir, "sub"))
	if err != nil {
		t.Fatal(err)
	}
	r2.Stop()
}

// TestSyncsOf: a synchronous=NORMAL commit in WAL mode does not sync the
// WAL, a checkpoint does (the simulator's oracle of which commits a power
// loss takes back rests on both).
func TestSyncsOf(t *testing.T) {
	dir := t.TempDir()
	r := record(t, dir)
	path := filepath.Join(dir, "db.sqlite")
	db := conn(t, path, "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)")
	defer db.Close()
	testutil.MustExec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)`)
	insertRows(t, db, 1, 2)
	before := r.SyncsOf(path + "-wal")
	insertRows(t, db, 3, 10)
	if n := r.SyncsOf(path + "-wal"); n != before {
		t.Fatalf("NORMAL commits synced the WAL: %d syncs, %d before", n, before)
	}
	testutil.MustExec(t, db, `PRAGMA wal_checkpoint(TRUNCATE)`)
	if n := r.SyncsOf(path + "-wal"); n <= before {
		t.Fatalf("a checkpoint did not sync the WAL: %d syncs, %d before", n, before)
	}
	if r.SyncsOf(path) == 0 {
		t.Fatal("a checkpoint did not sync the database file")
	}
}
