package shimvfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/syncdb/syncdb/internal/testutil"
)

// sparseDB makes a sparse copy of the source, attaches it and opens it
// through the shim.
func sparseDB(t *testing.T, seg uint32) (*testPages, string, func()) {
	t.Helper()
	path := copyFile(t, source(t), t.TempDir(), true)
	p := newTestPages(t, path, seg, true)
	detach, err := Attach(path, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(detach)
	return p, path, detach
}

var readQueries = []struct{ name, q string }{
	{"rowid", `SELECT k || ' ' || v FROM t WHERE id = 13579`},
	{"index", `SELECT id || ' ' || v FROM t WHERE k = 'key-012345'`},
	{"count", `SELECT count(*) FROM t`},
	{"scan", `SELECT sum(v) || ' ' || sum(length(pad)) FROM t`},
	{"schema", `SELECT group_concat(name) FROM sqlite_schema`},
}

func TestLazyReads(t *testing.T) {
	src := openDB(t, source(t), false, "mode=ro")
	for _, seg := range []uint32{1, 32} {
		for _, q := range readQueries {
			t.Run(fmt.Sprintf("seg%d/%s", seg, q.name), func(t *testing.T) {
				want := queryString(t, src, q.q)
				p, path, _ := sparseDB(t, seg)
				db := openDB(t, path, true, "")
				if err := db.Ping(); err != nil {
					t.Fatal(err)
				}
				if n := p.fetches.Load(); n != 0 {
					t.Errorf("opening fetched %d times", n)
				}
				if got := queryString(t, db, q.q); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
				f, n := p.fetches.Load(), p.fetched.Load()
				t.Logf("%d fetches, %d pages of %d", f, n, srcPages)
				switch q.name {
				case "schema":
					if f != 0 {
						t.Errorf("schema query fetched %d times", f)
					}
				case "rowid", "index":
					if f == 0 || f > 6 {
						t.Errorf("point lookup: %d fetches", f)
					}
				case "scan":
					if n < int64(srcPages)/2 {
						t.Errorf("full scan fetched only %d pages", n)
					}
				}
				if f > 0 && int64(p.nMissing()) != int64(srcPages)-1-n {
					t.Errorf("missing %d, want %d", p.nMissing(), int64(srcPages)-1-n)
				}
				// Everything the query needs is present now: no more fetches.
				queryString(t, db, q.q)
				if p.fetches.Load() != f {
					t.Errorf("second run fetched again")
				}
			})
		}
	}
}

func TestLazyMmap(t *testing.T) {
	src := openDB(t, source(t), false, "mode=ro")
	p, path, _ := sparseDB(t, 8)
	db := openDB(t, path, true, "_pragma=mmap_size(268435456)")
	db.SetMaxOpenConns(1)
	for _, q := range readQueries {
		if got, want := queryString(t, db, q.q), queryString(t, src, q.q); got != want {
			t.Errorf("%s: got %q, want %q", q.name, got, want)
		}
	}
	if got := queryString(t, db, `PRAGMA integrity_check`); got != "ok" {
		t.Errorf("integrity_check: %s", got)
	}
	t.Logf("%d fetches, %d pages, %d missing", p.fetches.Load(), p.fetched.Load(), p.nMissing())
}

func TestLazyConcurrent(t *testing.T) {
	p, path, _ := sparseDB(t, 1)
	db := openDB(t, path, true, "")
	db.SetMaxOpenConns(8)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := db.Conn(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 500 {
				id := 1 + r.IntN(nRows)
				var k string
				var v int
				if err := c.QueryRowContext(ctx, `SELECT k, v FROM t WHERE id = ?`, id).Scan(&k, &v); err != nil {
					errs <- err
					return
				}
				var id2 int
				if err := c.QueryRowContext(ctx, `SELECT id FROM t WHERE k = ?`, k).Scan(&id2); err != nil {
					errs <- err
					return
				}
				if k != key(id) || v != val(id) || id2 != id {
					errs <- fmt.Errorf("id %d: got %q %d %d", id, k, v, id2)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d fetches, %d pages, %d missing", p.fetches.Load(), p.fetched.Load(), p.nMissing())
}

func TestFetchFailure(t *testing.T) {
	p, path, _ := sparseDB(t, 4)
	db := openDB(t, path, true, "")
	const q = `SELECT k FROM t WHERE id = 4321`
	p.fail.Store(true)
	var k string
	err := db.QueryRow(q).Scan(&k)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_IOERR_READ {
		t.Fatalf("got %v, want SQLITE_IOERR_READ", err)
	}
	p.fail.Store(false)
	if err := db.QueryRow(q).Scan(&k); err != nil || k != key(4321) {
		t.Fatalf("retry: %q, %v", k, err)
	}
	if got := queryString(t, db, `PRAGMA quick_check`); got != "ok" {
		t.Errorf("quick_check: %s", got)
	}
}

func TestZeroFill(t *testing.T) {
	p, path, _ := sparseDB(t, 4)
	p.zeroTag = "apply"
	tagged := openDB(t, path, true, "syncdb_tag=apply")
	plain := openDB(t, path, true, "")
	pg := srcPages / 2
	const q = `SELECT data FROM sqlite_dbpage WHERE pgno = ?`

	var b []byte
	if err := tagged.QueryRow(q, pg).Scan(&b); err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != srcPS || !bytes.Equal(b, make([]byte, srcPS)) {
		t.Errorf("tagged read of missing page %d: %d bytes, not all zero", pg, len(b))
	}
	if p.fetches.Load() != 0 || !p.missing[pg-1].Load() {
		t.Errorf("zero-fill fetched or made the page present")
	}

	if err := plain.QueryRow(q, pg).Scan(&b); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, srcPS)
	if _, err := p.src.ReadAt(want, int64(pg-1)*srcPS); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) || p.missing[pg-1].Load() {
		t.Errorf("untagged read of page %d: not the source page", pg)
	}
}

func TestPanicInPages(t *testing.T) {
	p, path, _ := sparseDB(t, 4)
	db := openDB(t, path, true, "")
	db.SetMaxOpenConns(1)
	n0, _ := Panics()
	p.panicOn.Store(5)
	_, err := db.Exec(`SELECT data FROM sqlite_dbpage WHERE pgno = 5`)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_IOERR_READ {
		t.Fatalf("got %v, want SQLITE_IOERR_READ", err)
	}
	n, last := Panics()
	if n != n0+1 || !strings.Contains(last, "test panic on page 5") {
		t.Errorf("Panics() = %d, %q", n, last)
	}
	p.panicOn.Store(0)
	if got := queryString(t, db, `SELECT k FROM t WHERE id = 77`); got != key(77) {
		t.Errorf("after panic: %q", got)
	}
}

// TestLazyWrites writes to a sparse replica in WAL mode, checkpoints, and
// checks the result against the same statements run on a full copy.
func TestLazyWrites(t *testing.T) {
	p, path, detach := sparseDB(t, 32)
	full := openDB(t, copyFile(t, source(t), t.TempDir(), false), false, "")
	db := openDB(t, path, true, "_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	db.SetMaxOpenConns(2)
	stmts := []string{
		`INSERT INTO t SELECT id + 100000, 'new-' || id, v + 1, pad FROM t WHERE id % 20 = 0`,
		`UPDATE t SET v = v * 2 WHERE id % 400 = 7`,
		`DELETE FROM t WHERE id BETWEEN 5000 AND 5100`,
		`INSERT INTO t(id, k, v, pad) SELECT id + 200000, 'x' || id, 1, printf('%0300d', id) FROM t WHERE id % 50 = 1`,
	}
	for _, s := range stmts {
		testutil.MustExec(t, db, s)
		testutil.MustExec(t, full, s)
	}
	const agg = `SELECT count(*) || ' ' || sum(v) || ' ' || total(id * v) || ' ' || sum(length(k) + length(pad)) FROM t`
	want := queryString(t, full, agg)
	if got := queryString(t, db, agg); got != want {
		t.Fatalf("before checkpoint: got %s, want %s", got, want)
	}
	if p.wrote.Load() != 0 {
		t.Errorf("main file written before the checkpoint")
	}
	var busy, log, ckpt int
	if err := db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &ckpt); err != nil || busy != 0 || ckpt != log {
		t.Fatalf("checkpoint: %v busy=%d, %d of %d frames", err, busy, ckpt, log)
	}
	testutil.MustExec(t, db, `PRAGMA wal_checkpoint(TRUNCATE)`)
	t.Logf("checkpoint: %d frames; Wrote %d pages, of which %d were never fetched; %d fetches, %d pages; %d missing",
		ckpt, p.wrote.Load(), p.wroteMissing.Load(), p.fetches.Load(), p.fetched.Load(), p.nMissing())
	if p.wrote.Load() == 0 {
		t.Errorf("Wrote not called")
	}
	if got := queryString(t, db, agg); got != want {
		t.Errorf("after checkpoint: got %s, want %s", got, want)
	}
	if got := queryString(t, db, `PRAGMA integrity_check`); got != "ok" {
		t.Errorf("integrity_check through the shim: %s", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Fetch what is still missing (free pages), then check with plain unix.
	p.hydrate(t)
	detach()
	plain := openDB(t, path, false, "")
	if got := queryString(t, plain, `PRAGMA integrity_check`); got != "ok" {
		t.Errorf("integrity_check through unix: %s", got)
	}
	if got := queryString(t, plain, agg); got != want {
		t.Errorf("through unix: got %s, want %s", got, want)
	}
}

func TestAttachErrors(t *testing.T) {
	p := &testPages{}
	if _, err := Attach("relative/db", p); err == nil {
		t.Error("relative path accepted")
	}
	path := t.TempDir() + "/x.db"
	d1, err := Attach(path, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Attach(path, p); err == nil {
		t.Error("second Attach of a path accepted")
	}
	d1()
	d1()
	d2, err := Attach(path, p)
	if err != nil {
		t.Fatal(err)
	}
	d1() // an old detach must not remove the new attachment
	if attachmentFor(path) == nil {
		t.Error("old detach removed the new attachment")
	}
	d2()
}

// TestLazyReadOnly: Pages writes through its own descriptor, so read-only
// connections can read a sparse replica too.
func TestLazyReadOnly(t *testing.T) {
	p, path, _ := sparseDB(t, 4)
	db := openDB(t, path, true, "mode=ro")
	if got := queryString(t, db, `SELECT k FROM t WHERE id = 999`); got != key(999) {
		t.Errorf("got %q", got)
	}
	if p.fetches.Load() == 0 {
		t.Error("nothing fetched")
	}
}

// A WillWrite that fails (its Pages cannot record the pages present) fails
// SQLite's write of the main file before anything is written: the
// checkpoint fails with SQLITE_IOERR_WRITE, the file is as it was, Wrote
// is not called; the next checkpoint, WillWrite working again, copies all.
func TestWillWriteFailure(t *testing.T) {
	p, path, _ := sparseDB(t, 32)
	db := openDB(t, path, true, "_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	db.SetMaxOpenConns(1)
	testutil.MustExec(t, db, `UPDATE t SET v = v + 1 WHERE id % 100 = 3`)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p.failWill.Store(true)
	_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	p.failWill.Store(false)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_IOERR_WRITE {
		t.Fatalf("checkpoint with WillWrite failing: %v, want SQLITE_IOERR_WRITE", err)
	}
	if p.willFailed.Load() == 0 {
		t.Fatal("WillWrite was not called")
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("the main file changed after a write whose WillWrite failed (%v)", err)
	}
	if n := p.wrote.Load(); n != 0 {
		t.Fatalf("Wrote reported %d pages of a write whose WillWrite failed", n)
	}
	testutil.MustExec(t, db, `PRAGMA wal_checkpoint(TRUNCATE)`)
	if p.wrote.Load() == 0 {
		t.Fatal("the second checkpoint wrote nothing")
	}
	if got := queryString(t, db, `SELECT count(*) FROM t WHERE id % 100 = 3 AND v <> id * 31 % 1000 + 1`); got != "0" {
		t.Fatalf("%s rows lost the update", got)
	}
	if got := queryString(t, db, `PRAGMA integrity_check`); got != "ok" {
		t.Errorf("integrity_check: %s", got)
	}
}
