package fsx

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/internal/failpoint"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A power loss keeps exactly what was synced.
func TestCrashFSPowerLoss(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS()
	p := filepath.Join(dir, "f")
	f, err := c.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("durable"))
	f.Sync()
	c.SyncDir(dir)
	f.WriteAt([]byte("LOST"), 0)
	f.Close()
	q := filepath.Join(dir, "new")
	g, _ := c.OpenFile(q, os.O_RDWR|os.O_CREATE, 0o644)
	g.Write([]byte("synced but not its directory entry"))
	g.Sync()
	g.Close()
	if err := c.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, p); got != "durable" {
		t.Fatalf("f: %q", got)
	}
	if got := read(t, q); got != "<missing>" {
		t.Fatalf("new: %q", got)
	}
}

// WriteFileAtomic, crashed at every step and then losing power, leaves the
// old or the new content; Freeze stops all writes.
func TestCrashFSAtomicWrite(t *testing.T) {
	for _, at := range []string{"fsx.written", "fsx.synced", "fsx.renamed", "end"} {
		t.Run(at, func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "meta")
			c := NewCrashFS()
			if err := WriteFileAtomic(c, name, []byte("old")); err != nil {
				t.Fatal(err)
			}
			failpoint.Set(func(fp, owner string) {
				if fp == at && owner == name {
					c.Freeze()
					panic(failpoint.Crash{Name: fp, Owner: owner})
				}
			})
			func() {
				defer func() { recover() }()
				WriteFileAtomic(c, name, []byte("new"))
			}()
			failpoint.Set(nil)
			if err := WriteFileAtomic(c, name, []byte("after freeze")); at != "end" && !errors.Is(err, ErrFrozen) {
				t.Fatalf("write after freeze: %v", err)
			}
			if err := c.PowerLoss(); err != nil {
				t.Fatal(err)
			}
			got := read(t, name)
			want := "old"
			if at == "end" {
				want = "after freeze" // nothing froze: the last write was durable
			}
			if got != want {
				t.Fatalf("after a crash at %s and a power loss: %q, want %q", at, got, want)
			}
		})
	}
}

// An injected fault fails the one call it names, with no effect, and the
// file system goes on working: WriteFileAtomic leaves the old content.
func TestCrashFSInjectedFault(t *testing.T) {
	dir := t.TempDir()
	c := NewCrashFS()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(c, p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	for _, op := range []string{"write", "sync", "rename"} {
		c.SetFault(func(o, path string) error {
			if o == op {
				return boom
			}
			return nil
		})
		if err := WriteFileAtomic(c, p, []byte("new")); !errors.Is(err, boom) {
			t.Fatalf("%s fault: %v", op, err)
		}
		if got := read(t, p); got != "old" {
			t.Fatalf("after a %s fault the file holds %q", op, got)
		}
	}
	c.SetFault(nil)
	if err := WriteFileAtomic(c, p, []byte("new")); err != nil || read(t, p) != "new" {
		t.Fatalf("after the faults: %v %q", err, read(t, p))
	}
}
