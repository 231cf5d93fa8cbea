package shimvfs

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	_ "modernc.org/sqlite"
)

const nRows = 20000

// key is the indexed key of row id: 7919 is prime to nRows, so keys are unique.
func key(id int) string { return fmt.Sprintf("key-%06d", id*7919%nRows) }
func val(id int) int    { return id * 31 % 1000 }

var (
	tmpDir   string // removed by TestMain
	srcOnce  sync.Once
	srcPath  string
	srcErr   error
	srcPS    int64
	srcPages uint32
)

func TestMain(m *testing.M) {
	var err error
	if tmpDir, err = os.MkdirTemp("", "shimvfs-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmpDir)
	os.Exit(code)
}

// source returns a complete database file (no WAL) holding table t (nRows
// rows), index t_k, and a freelist, built once with plain modernc.
func source(tb testing.TB) string {
	tb.Helper()
	srcOnce.Do(func() { srcErr = buildSource(filepath.Join(tmpDir, "src.db")) })
	if srcErr != nil {
		tb.Fatal(srcErr)
	}
	return srcPath
}

func buildSource(path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if _, err := tx.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, pad TEXT)`); err != nil {
		return err
	}
	for id := 1; id <= nRows; id++ {
		if _, err := tx.Exec(`INSERT INTO t VALUES(?, ?, ?, printf('%0100d', ?))`, id, key(id), val(id), id); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, q := range []string{
		`CREATE INDEX t_k ON t(k)`,
		`CREATE TABLE junk AS SELECT pad || pad AS x FROM t LIMIT 4000`, // leaves a freelist
		`DROP TABLE junk`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	} {
		if _, err := db.Exec(q); err != nil {
			return err
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var h [100]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return err
	}
	srcPS = int64(binary.BigEndian.Uint16(h[16:]))
	srcPages = binary.BigEndian.Uint32(h[28:])
	srcPath = path
	return nil
}

// copyFile copies src to a new file in dir and returns its absolute path;
// if sparse, only page 1 is copied and the file is extended to full size.
func copyFile(tb testing.TB, src, dir string, sparse bool) string {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(dir, "db.sqlite")
	if sparse {
		b = b[:srcPS]
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	if sparse {
		if err := os.Truncate(dst, srcPS*int64(srcPages)); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

// testPages is a Pages for a sparse copy of the source: it fetches aligned
// segments of seg pages from the source file and writes the pages still
// missing through a descriptor of its own, kept open until the test ends.
type testPages struct {
	src, dst *os.File
	seg      uint32
	zeroTag  string // Fetch returns ErrZeroFill for this tag
	fail     atomic.Bool
	failWill atomic.Bool   // WillWrite fails (and marks nothing)
	panicOn  atomic.Uint32 // Missing panics for this page

	mu      sync.Mutex // serialises writes of fetched pages with WillWrite
	missing []atomic.Bool

	fetches, fetched, wrote, wroteMissing, willFailed atomic.Int64
}

func newTestPages(tb testing.TB, dst string, seg uint32, sparse bool) *testPages {
	tb.Helper()
	s, err := os.Open(source(tb))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	// Registered before any db is opened, so it runs after they are closed.
	tb.Cleanup(func() { s.Close(); d.Close() })
	p := &testPages{src: s, dst: d, seg: seg, missing: make([]atomic.Bool, srcPages)}
	if sparse {
		for i := 1; i < len(p.missing); i++ { // page 1 is present
			p.missing[i].Store(true)
		}
	}
	return p
}

func (p *testPages) Missing(pg uint32) bool {
	if pg == p.panicOn.Load() {
		panic(fmt.Sprintf("test panic on page %d", pg))
	}
	return pg >= 1 && int(pg) <= len(p.missing) && p.missing[pg-1].Load()
}

func (p *testPages) Fetch(pg uint32, tag string) error {
	if p.zeroTag != "" && tag == p.zeroTag {
		return ErrZeroFill
	}
	if p.fail.Load() {
		return errors.New("remote down")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetches.Add(1)
	first := (pg-1)/p.seg*p.seg + 1
	for q := first; q < first+p.seg && int(q) <= len(p.missing); q++ {
		if err := p.copyPage(q); err != nil {
			return err
		}
	}
	return nil
}

// copyPage copies page q from the source if it is still missing; p.mu is held.
func (p *testPages) copyPage(q uint32) error {
	if !p.missing[q-1].Load() {
		return nil // present: SQLite's copy wins
	}
	b := make([]byte, srcPS)
	if _, err := p.src.ReadAt(b, int64(q-1)*srcPS); err != nil {
		return err
	}
	if _, err := p.dst.WriteAt(b, int64(q-1)*srcPS); err != nil {
		return err
	}
	p.missing[q-1].Store(false)
	p.fetched.Add(1)
	return nil
}

func (p *testPages) WillWrite(first, last uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failWill.Load() {
		p.willFailed.Add(1)
		return errors.New("cannot record the pages present")
	}
	for q := first; q <= last && int(q) <= len(p.missing); q++ {
		if p.missing[q-1].Swap(false) {
			p.wroteMissing.Add(1)
		}
	}
	return nil
}

func (p *testPages) Wrote(first, last uint32) { p.wrote.Add(int64(last - first + 1)) }

// hydrate fetches every page still missing.
func (p *testPages) hydrate(tb testing.TB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for q := uint32(1); int(q) <= len(p.missing); q++ {
		if err := p.copyPage(q); err != nil {
			tb.Fatal(err)
		}
	}
}

func (p *testPages) nMissing() (n int) {
	for i := range p.missing {
		if p.missing[i].Load() {
			n++
		}
	}
	return n
}

// vfs registers the shim and returns its name.
func vfs(tb testing.TB) string {
	tb.Helper()
	name, err := Register()
	if err != nil {
		tb.Fatal(err)
	}
	return name
}

// openDB opens path through the shim (or plain unix if shim is false) with
// the extra URI parameters params, and closes it at cleanup.
func openDB(tb testing.TB, path string, shim bool, params string) *sql.DB {
	tb.Helper()
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)"
	if shim {
		dsn += "&vfs=" + vfs(tb)
	}
	if params != "" {
		dsn += "&" + params
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func queryString(tb testing.TB, db interface {
	QueryRow(string, ...any) *sql.Row
}, q string, args ...any) string {
	tb.Helper()
	var s string
	if err := db.QueryRow(q, args...).Scan(&s); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	return s
}
