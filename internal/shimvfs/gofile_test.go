package shimvfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/syncdb/syncdb/internal/testutil"
)

func page(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }

func goFile(t *testing.T, path string) *File {
	t.Helper()
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func wantContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, want %d; equal prefix pages: %d", path, len(got), len(want), eqPages(got, want))
	}
}

func eqPages(a, b []byte) int {
	n := 0
	for ; (n+1)*4096 <= min(len(a), len(b)) && bytes.Equal(a[n*4096:(n+1)*4096], b[n*4096:(n+1)*4096]); n++ {
	}
	return n
}

// TestGoFilePowerLoss: writes through a File are recorded like SQLite's: a
// power loss takes back what was written after the last sync of the file
// (from any handle) and keeps what was synced.
func TestGoFilePowerLoss(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	orig := append(append(page('a'), page('a')...), page('a')...)
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	r := record(t, dir)

	f := goFile(t, path)
	if _, err := f.WriteAt(page('b'), 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(page('c'), 3*4096); err != nil { // past the end
		t.Fatal(err)
	}
	if err := r.PowerLoss(); err == nil {
		t.Fatal("PowerLoss with a File open: nil error")
	}
	f.Close()
	if err := r.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, orig) // nothing was synced

	f, g := goFile(t, path), goFile(t, path)
	if _, err := f.WriteAt(page('b'), 4096); err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); err != nil { // fsync is per file: f's write is durable
		t.Fatal(err)
	}
	if _, err := f.WriteAt(page('d'), 0); err != nil {
		t.Fatal(err)
	}
	if got := r.SyncsOf(path); got != 1 {
		t.Errorf("SyncsOf = %d, want 1", got)
	}
	r.Crash()
	if _, err := f.WriteAt(page('e'), 2*4096); !errors.Is(err, ErrCrashed) {
		t.Errorf("WriteAt after Crash: %v, want ErrCrashed", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrCrashed) {
		t.Errorf("Sync after Crash: %v, want ErrCrashed", err)
	}
	if _, err := OpenFile(path); !errors.Is(err, ErrCrashed) {
		t.Errorf("OpenFile after Crash: %v, want ErrCrashed", err)
	}
	f.Close()
	g.Close()
	if err := r.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, append(append(page('a'), page('b')...), page('a')...))
}

// TestGoFileSharesSQLitesRecord: a File on a database SQLite has open
// through the shim uses SQLite's record of it, not a second one.
func TestGoFileSharesSQLitesRecord(t *testing.T) {
	dir := t.TempDir()
	r := record(t, dir)
	path := filepath.Join(dir, "db")
	db := conn(t, path, "")
	if _, err := db.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	before := r.Stats().Files
	f := goFile(t, path)
	defer f.Close()
	if got := r.Stats().Files; got != before {
		t.Fatalf("recorded files: %d with a File open, %d before", got, before)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := r.SyncsOf(path); got < 2 {
		t.Errorf("SyncsOf(%s) = %d after SQLite's commit and a File's Sync, want at least 2", path, got)
	}
}

// TestGoFileFaults: under SetFault a File's WriteAt fails with the injected
// error and writes nothing, and its Sync fails and makes nothing durable
// (a power loss takes the write back); under SetFull WriteAt fails with
// ENOSPC and writes nothing.
func TestGoFileFaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	orig := append(page('a'), page('a')...)
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	r := record(t, dir)
	f := goFile(t, path)
	defer f.Close()

	errEIO := errors.New("injected EIO")
	var op string
	r.SetFault(func(o, p string) error {
		if o == op {
			return errEIO
		}
		return nil
	})
	op = "write"
	if _, err := f.WriteAt(page('b'), 4096); !errors.Is(err, errEIO) {
		t.Fatalf("WriteAt under SetFault: %v, want the injected error", err)
	}
	wantContent(t, path, orig)

	op = "sync"
	if _, err := f.WriteAt(page('c'), 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, errEIO) {
		t.Fatalf("Sync under SetFault: %v, want the injected error", err)
	}
	if got := r.SyncsOf(path); got != 0 {
		t.Fatalf("SyncsOf = %d after a failed Sync, want 0", got)
	}
	r.SetFault(nil)

	r.SetFull(func(p string) bool { return p == r.dir+"/db" })
	_, err := f.WriteAt(page('d'), 0)
	r.SetFull(nil)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt under SetFull: %v, want ENOSPC", err)
	}
	f.Close()
	if err := r.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, orig) // the write of 'c' was never synced
}

// TestRecorderFaultSQLite: SetFault fails SQLite's writes and syncs of a
// recorded file too: a commit fails with SQLITE_IOERR_WRITE, or
// SQLITE_IOERR_FSYNC, and a power loss keeps the rows of the commits
// before.
func TestRecorderFaultSQLite(t *testing.T) {
	for _, op := range []string{"write", "sync"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			r := record(t, dir)
			path := filepath.Join(dir, "db")
			db := conn(t, path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)")
			testutil.MustExec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
			insertRows(t, db, 1, 10)
			r.SetFault(func(o, p string) error {
				if o == op && p == r.dir+"/db-wal" {
					return errors.New("injected EIO")
				}
				return nil
			})
			_, err := db.Exec(`INSERT INTO t VALUES(11, 'x')`)
			r.SetFault(nil)
			want := map[string]int{"write": sqlite3.SQLITE_IOERR_WRITE, "sync": sqlite3.SQLITE_IOERR_FSYNC}[op]
			var se *sqlite.Error
			if !errors.As(err, &se) || se.Code() != want {
				t.Fatalf("commit under SetFault(%s): %v, want code %d", op, err, want)
			}
			r.Crash()
			db.Close()
			if err := r.PowerLoss(); err != nil {
				t.Fatal(err)
			}
			if n, max := ids(t, path); n != 10 || max != 10 {
				t.Fatalf("after the power loss: %d rows, max id %d; want 10, 10", n, max)
			}
		})
	}
}
