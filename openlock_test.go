package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/flock"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// inode is the inode number of the file at path (0 if there is none).
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no inode numbers on this platform")
	}
	return uint64(st.Ino)
}

// A failed first Open removes the files it created while it still holds
// PATH-lock, and never PATH-lock itself. The hook runs right after the
// failed Open releases the lock, where another Open can first take it: a
// second Open made there keeps its files, and its lock (the same inode as
// before) still keeps a third holder out. Removing the files after the
// unlock unlinked the second Open's PATH, -info and -lock, and a third
// holder could lock a new -lock inode beside it.
func TestFailedOpenRemovesItsFilesUnderTheLock(t *testing.T) {
	if !flockWorks() {
		t.Skip("no flock on this platform")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	files := layout.For(path)
	var second *syncdb.DB
	var lockInode uint64
	hooks := testhooks.Hooks{AfterUnlock: func() {
		if second != nil {
			return
		}
		lockInode = inode(t, files.Lock)
		db, err := syncdb.Open(ctx, syncdb.Config{Path: path}) // a replica without a server
		if err != nil {
			t.Errorf("a second Open once the failed one released the lock: %v", err)
			return
		}
		second = db
	}}
	_, err := syncdb.Open(testhooks.With(ctx, hooks), syncdb.Config{Path: path, URL: "http://no-such-host.invalid", MaxRetryTime: time.Second})
	if !errors.Is(err, syncdb.ErrUnreachable) {
		t.Fatalf("Open of an unknown host: %v, want ErrUnreachable", err)
	}
	if second == nil {
		t.Fatal("the failed Open never released the lock, or the second Open failed")
	}
	defer second.Close()
	if lockInode == 0 {
		t.Fatal("no PATH-lock when the failed Open released it")
	}
	// (b) The second Open's files are there.
	for _, f := range []string{path, files.Info} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the second Open's %s after the failed Open returned: %v", filepath.Base(f), err)
		}
	}
	if _, err := second.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Errorf("the second Open's replica: %v", err)
	}
	// (a) PATH-lock is the file the second Open locked, and it still
	// excludes everyone else.
	if got := inode(t, files.Lock); got != lockInode {
		t.Errorf("PATH-lock's inode after the failed Open: %d, want %d (unchanged)", got, lockInode)
	}
	if release, _, err := flock.Lock(files.Lock); !errors.Is(err, flock.ErrLocked) {
		if err == nil {
			release()
		}
		t.Errorf("a third holder locking PATH-lock while the second Open has it: %v, want flock.ErrLocked", err)
	}
	if third, err := syncdb.Open(ctx, syncdb.Config{Path: path}); !errors.Is(err, syncdb.ErrInUse) {
		if err == nil {
			third.Close()
		}
		t.Errorf("a third Open while the second has the replica: %v, want ErrInUse", err)
	}
}

// A replica that another Open made and closed just before a failing Open
// took the lock is not the failing Open's new replica: its files stay.
// (The failing Open listed the missing files before it took the lock,
// and removed that replica's database and metadata.)
func TestFailedOpenKeepsAReplicaMadeBeforeItsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	files := layout.For(path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	made := false
	hooks := testhooks.Hooks{BeforeLock: func() {
		if made {
			return
		}
		made = true
		db, err := syncdb.Open(context.Background(), syncdb.Config{Path: path})
		if err != nil {
			t.Errorf("the other Open: %v", err)
			return
		}
		if _, err := db.Exec(context.Background(), "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('kept')"); err != nil {
			t.Errorf("the other Open's write: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("the other Open's Close: %v", err)
		}
		cancel() // the failing Open fails once it has the lock
	}}
	if db, err := syncdb.Open(testhooks.With(ctx, hooks), syncdb.Config{Path: path}); err == nil {
		db.Close()
		t.Fatal("Open with a canceled context succeeded")
	}
	if !made {
		t.Fatal("the hook did not run")
	}
	for _, f := range []string{path, files.Info} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the other Open's %s after the failed Open: %v", filepath.Base(f), err)
		}
	}
	db, err := syncdb.Open(context.Background(), syncdb.Config{Path: path})
	if err != nil {
		t.Fatalf("reopening the other Open's replica: %v", err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(context.Background(), "SELECT x FROM t").Scan(&v); err != nil || v != "kept" {
		t.Errorf("the other Open's row: %q, %v", v, err)
	}
}

// flockWorks tells whether internal/flock locks on this platform (its
// stub elsewhere lets every holder in).
func flockWorks() bool {
	dir, err := os.MkdirTemp("", "flock")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	release, _, err := flock.Lock(filepath.Join(dir, "l"))
	if err != nil {
		return false
	}
	defer release()
	r2, _, err := flock.Lock(filepath.Join(dir, "l"))
	if err == nil {
		r2()
		return false
	}
	return true
}

// A failed Open keeps the rebuilt replica that its finishSwap moved into
// place: it was no new replica of the failed Open's. (The failing Open
// listed PATH and -info as its own before finishSwap, when a crash in the
// middle of the swap had left neither, and removed them.)
func TestFailedOpenKeepsAReplicaItsFinishSwapMoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	fresh := filepath.Join(dir, "a.db.recover", "a.db")
	backup := filepath.Join(dir, "a.db.before-recover-x")
	if err := os.Mkdir(filepath.Dir(fresh), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "-info"} {
		os.WriteFile(path+s, []byte("old"+s), 0o644)
		os.WriteFile(fresh+s, []byte("new"+s), 0o644) // not a replica: Open fails on it
	}
	if err := os.WriteFile(layout.For(path).Recovering, []byte(`{"fresh":"`+fresh+`","backup":"`+backup+`","files":[""]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A crash after the swap's first two renames: neither PATH nor -info.
	os.Mkdir(backup, 0o755)
	for _, s := range []string{"-info", ""} {
		if err := os.Rename(path+s, filepath.Join(backup, "a.db"+s)); err != nil {
			t.Fatal(err)
		}
	}
	if db, err := syncdb.Open(context.Background(), syncdb.Config{Path: path}); err == nil {
		db.Close()
		t.Fatal("Open of a replica whose -info is not JSON succeeded")
	}
	for _, s := range []string{"", "-info"} {
		if b, err := os.ReadFile(path + s); string(b) != "new"+s {
			t.Errorf("after the failed Open, a.db%s: %q, %v; want the rebuilt replica's", s, b, err)
		}
		if b, _ := os.ReadFile(filepath.Join(backup, "a.db"+s)); string(b) != "old"+s {
			t.Errorf("after the failed Open, the backup of a.db%s: %q", s, b)
		}
	}
}
