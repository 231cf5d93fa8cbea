package syncdb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/syncactor"
)

// ErrClientCloned is wrapped by Open, Push and Pull when this replica is a
// copy of another that uses the same client id, and syncdb could not tell
// when it was opened (a cloned machine, a file-system snapshot restored in
// place: copies it can tell take a new id by themselves). Its changes are
// kept; Config.Recover (syncdb recover PATH) gives it an id of its own.
var ErrClientCloned = dbactor.ErrClientCloned

// newReplicaFiles returns the files of a replica at path that do not exist
// yet, if there is no replica there (no -info): a failed Open of a new
// replica removes them, so that it leaves nothing behind but PATH-lock. For
// an existing replica it returns nil: its files are never removed. Call it
// with the lock held (before, another Open may make and close a replica
// there) and after finishSwap (a rebuilt replica it moves into place is
// not new), and remove the files before releasing the lock.
//
// PATH-lock is never among them (it exists once the lock is taken; the
// check keeps it out regardless): the flock is on the file's inode, so an
// unlinked lock file would let the next Open lock a new inode while an
// Open that took the old one still runs, two owners of one replica. A
// -lock left behind (holding the pid of its last holder) is harmless:
// flock.Lock truncates and reuses it.
func newReplicaFiles(path string) []string {
	files := layout.For(path)
	if _, err := os.Stat(files.Info); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var absent []string
	for _, name := range append([]string{path}, files.Companions()...) {
		if name == files.Lock {
			continue
		}
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			absent = append(absent, name)
		}
	}
	return absent
}

// removeNewReplica removes the files a failed Open of a new replica
// created (created, from newReplicaFiles) and a stale PATH-bootstrap. Call
// it with the lock held and no actor running.
//
// A process killed in the middle must not leave -info without PATH, which
// every later Open takes for an existing replica and fails on ("stat PATH:
// no such file or directory") until the user removes -info; nor PATH's
// companions without PATH (a -wal left beside a later bootstrap's PATH is
// not that database's). So -info (and its temporary file) goes first,
// made durable before the rest, then the companions, then PATH, then the
// stale bootstrap (removeStaleBootstrap: once -info is gone), and the
// directory is fsynced. A kill thus leaves either nothing but -lock (and a
// stale -bootstrap, which the next bootstrap truncates) or PATH without
// -info, which the next Open refuses naming both ("PATH exists but has no
// PATH-info"): the user removes the leftovers.
func removeNewReplica(fs fsx.FS, path string, created []string) {
	files := layout.For(path)
	info := func(n string) bool { return n == files.Info || n == files.InfoTmp }
	removed := false
	for _, n := range created {
		if info(n) && fs.Remove(n) == nil {
			removed = true
		}
	}
	if removed {
		fs.SyncDir(filepath.Dir(path))
	}
	for _, n := range created {
		if !info(n) && n != path {
			fs.Remove(n)
		}
	}
	if slices.Contains(created, path) {
		fs.Remove(path)
	}
	removeStaleBootstrap(fs, path)
	fs.SyncDir(filepath.Dir(path))
}

// removeStaleBootstrap removes the PATH-bootstrap of a replica without
// metadata: a download that never got as far as PATH-info, which no Open
// resumes (a bootstrap truncates it), even one an earlier process left. With
// PATH-info, the next Open moves it into place (dbactor's MoveBootstrap).
// Call it with the lock held and no actor running: the facade is then the
// file's only user.
func removeStaleBootstrap(fs fsx.FS, path string) {
	files := layout.For(path)
	if _, err := fs.Stat(files.Info); errors.Is(err, os.ErrNotExist) {
		fs.Remove(files.Bootstrap)
	}
}

// absPath makes a replica's path absolute: SQLite's VFS shim and the
// lock need one, and the process may change directory later.
func absPath(p string) (string, error) {
	return filepath.Abs(p)
}

// ErrWrongDatabase is wrapped by Open when Config.URL serves another
// database than the one the replica came from; nothing is saved.
var ErrWrongDatabase = syncactor.ErrWrongDatabase

// saveURL makes url the replica's server URL, once it is checked to serve
// the database the replica came from (at old; "" if the replica had none:
// its first pull brings that server's database).
func (d *DB) saveURL(ctx context.Context, old, url string) error {
	if old != "" {
		a, aerr := netactor.NormalizeURL(old)
		b, berr := netactor.NormalizeURL(url)
		if aerr != nil || berr != nil || a != b {
			if err := closedErr(d.sync.CheckRemote(ctx, old)); err != nil {
				return err
			}
		}
	}
	_, err := closed(d.meta.Update(ctx, func(m *messages.Meta) error {
		if m.SavedConfiguration == nil {
			m.SavedConfiguration = &messages.SavedConfig{}
		}
		m.SavedConfiguration.RemoteURL = &url
		return nil
	}))
	return err
}
