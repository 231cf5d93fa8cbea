package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/testhooks"
)

var errInjected = errors.New("injected file-system fault")

// bootFaultFS fails one operation (op: "create", "write", "truncate",
// "sync", "close", "rename") on PATH-bootstrap, every time; a failed close
// still closes the file, as a close that reports a deferred write error
// does, and a failed write writes the first half of its bytes, as a write
// cut short by a full disk does.
type bootFaultFS struct {
	fsx.FS
	op string
}

func isBootstrap(name string) bool { return strings.HasSuffix(name, "-bootstrap") }

func (fs bootFaultFS) fail(op, name string) error {
	if op == fs.op && isBootstrap(name) {
		return errInjected
	}
	return nil
}

func (fs bootFaultFS) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	if flag&os.O_CREATE != 0 {
		if err := fs.fail("create", name); err != nil {
			return nil, err
		}
	}
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil || !isBootstrap(name) {
		return f, err
	}
	return faultFile{File: f, fs: fs, name: name}, nil
}

func (fs bootFaultFS) Rename(oldpath, newpath string) error {
	if err := fs.fail("rename", oldpath); err != nil {
		return err
	}
	return fs.FS.Rename(oldpath, newpath)
}

type faultFile struct {
	fsx.File
	fs   bootFaultFS
	name string
}

func (f faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.fail("write", f.name); err != nil {
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, err
	}
	return f.File.WriteAt(p, off)
}

func (f faultFile) Truncate(size int64) error {
	if err := f.fs.fail("truncate", f.name); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f faultFile) Sync() error {
	if err := f.fs.fail("sync", f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f faultFile) Close() error {
	return errors.Join(f.File.Close(), f.fs.fail("close", f.name))
}

// A file-system error at each of the bootstrap's file operations on
// PATH-bootstrap fails Open with that error and leaves no file of the
// replica (no PATH-info, PATH, PATH-bootstrap, even the rename's, after the
// metadata: a new replica that failed to open leaves nothing behind but
// PATH-lock, which it must not unlink: TestFailedOpenRemovesItsFilesUnderTheLock); the
// next Open, without the fault, starts over and has the server's rows. A
// write fault comes back through dbactor's sink: from its run writer's
// goroutine (a full bootstrap) or from the write at the page's offset (a
// partial one).
func TestBootstrapFileFaults(t *testing.T) {
	url := newServer(t)
	serverExec(t, url, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200) INSERT INTO t SELECT i, hex(zeroblob(100)) FROM n")
	type fault struct {
		op      string
		partial bool
		stale   bool // a PATH-bootstrap an earlier process left is there
	}
	var faults []fault
	for _, op := range []string{"create", "write", "truncate", "sync", "close", "rename"} {
		faults = append(faults, fault{op: op})
	}
	faults = append(faults, fault{op: "write", partial: true}, fault{op: "rename", stale: true})
	for _, c := range faults {
		name := c.op
		if c.partial {
			name = "partial-" + c.op
		}
		if c.stale {
			name = "stale-" + c.op
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a.db")
			cfg := syncdb.Config{Path: path, URL: url}
			if c.partial {
				cfg.Partial = &syncdb.PartialSync{PrefixBytes: 4 * 4096}
			}
			if c.stale {
				// Not a new file of this Open's (newReplicaFiles): the
				// failed Open removes it once its -info is gone.
				if err := os.WriteFile(path+"-bootstrap", []byte("an earlier download"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx := testhooks.With(context.Background(), testhooks.Hooks{FS: bootFaultFS{FS: fsx.OS, op: c.op}, OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
			db, err := syncdb.Open(ctx, cfg)
			if err == nil {
				db.Close()
				t.Fatalf("Open with a failing %s of PATH-bootstrap succeeded", name)
			}
			if !errors.Is(err, errInjected) {
				t.Errorf("Open: %v, want the injected fault", err)
			}
			// Even after the metadata (a failed rename): a new replica
			// that failed to open leaves nothing behind (newReplicaFiles).
			left, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range left {
				if e.Name() != "a.db-lock" {
					t.Errorf("after a failed %s: %s left", name, e.Name())
				}
			}
			b := open(t, cfg)
			integrity(t, b)
			if got := rows(t, b, "SELECT count(*) FROM t"); got != "200" {
				t.Fatalf("the next Open: %q rows, want 200", got)
			}
		})
	}
}
