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

// bootFaultFS fails one operation (op: "create", "truncate", "sync",
// "close", "rename") on PATH-bootstrap, every time; a failed close still
// closes the file, as a close that reports a deferred write error does.
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
// PATH-bootstrap fails Open with that error and leaves no PATH-info, no
// PATH and no PATH-bootstrap, even the rename's, after the metadata (a new
// replica that failed to open leaves nothing behind); the next Open,
// without the fault, starts over and has the server's rows.
func TestBootstrapFileFaults(t *testing.T) {
	url := newServer(t)
	serverExec(t, url, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200) INSERT INTO t SELECT i, hex(zeroblob(100)) FROM n")
	for _, op := range []string{"create", "truncate", "sync", "close", "rename"} {
		t.Run(op, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.db")
			cfg := syncdb.Config{Path: path, URL: url}
			ctx := testhooks.With(context.Background(), testhooks.Hooks{FS: bootFaultFS{FS: fsx.OS, op: op}, OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
			db, err := syncdb.Open(ctx, cfg)
			if err == nil {
				db.Close()
				t.Fatalf("Open with a failing %s of PATH-bootstrap succeeded", op)
			}
			if !errors.Is(err, errInjected) {
				t.Errorf("Open: %v, want the injected fault", err)
			}
			// Even after the metadata (a failed rename): a new replica
			// that failed to open leaves nothing behind (newReplicaFiles).
			for _, name := range []string{path + "-info", path, path + "-bootstrap"} {
				if _, err := os.Stat(name); err == nil {
					t.Errorf("after a failed %s: %s left", op, filepath.Base(name))
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
