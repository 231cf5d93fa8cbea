package shimvfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
