package metaactor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/syncdb/syncdb/internal/fsx"
)

// crashFS is an in-memory fsx.FS of one directory that models what a crash
// can lose, for proving crash-safety claims:
//
//   - file data written since the file's last Sync may be lost, kept, or
//     torn (a prefix of the new bytes over the old ones);
//   - directory changes (creations, renames, removals) since the last
//     SyncDir may be lost; those that survive are a prefix of them, in order
//     (as with a journaling file system).
//
// Every mutating call is logged and counted; with crashAt >= 0 the call of
// that index (0-based) and every call after it fail with errCrashed, as if
// the process had died just before it. reboot then gives the file system
// as it could be found after restarting. fail, if set, makes a call fail
// with an ordinary error instead (the process lives on).
type crashFS struct {
	mu      sync.Mutex
	dir     string
	entries map[string]*cinode // what the running program sees
	durable map[string]*cinode // the entries as of the last SyncDir
	pending []dirOp            // entry changes since the last SyncDir
	log     []string           // mutating calls that took effect
	crashAt int
	crashed bool
	fail    func(op string) error
}

type cinode struct {
	data   []byte // what reads see
	synced []byte // what survives a crash for sure
}

type dirOp struct {
	kind     string // "create", "rename", "remove"
	name, to string
	ino      *cinode
}

var errCrashed = errors.New("crashFS: simulated crash")

func newCrashFS(dir string) *crashFS {
	return &crashFS{dir: dir, entries: map[string]*cinode{}, durable: map[string]*cinode{}, crashAt: -1}
}

// put creates a durable file.
func (c *crashFS) put(name string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ino := &cinode{data: bytes.Clone(data), synced: bytes.Clone(data)}
	c.entries[name] = ino
	c.durable[name] = ino
}

// startCounting resets the log and arms a crash at the mutating call of
// index at (-1: none).
func (c *crashFS) startCounting(at int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = nil
	c.crashAt = at
}

func (c *crashFS) opLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// op admits one mutating call; c.mu is held.
func (c *crashFS) op(desc string) error {
	if c.crashed {
		return errCrashed
	}
	if len(c.log) == c.crashAt {
		c.crashed = true
		return errCrashed
	}
	if c.fail != nil {
		if err := c.fail(desc); err != nil {
			return err
		}
	}
	c.log = append(c.log, desc)
	return nil
}

func (c *crashFS) checkName(op, name string) error {
	if filepath.Dir(name) != c.dir {
		return &fs.PathError{Op: op, Path: name, Err: errors.New("crashFS: outside its directory")}
	}
	return nil
}

// dataMode says what happened to unsynced file data in a crash.
type dataMode int

const (
	dataLost dataMode = iota
	dataKept
	dataTorn
)

func (m dataMode) String() string { return [...]string{"data lost", "data kept", "data torn"}[m] }

// pendingDirOps is how many directory changes a crash now could lose.
func (c *crashFS) pendingDirOps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// reboot returns the file system as found after a crash now in which the
// first keep unsynced directory changes survived and unsynced data met
// mode. Everything in it is durable.
func (c *crashFS) reboot(keep int, mode dataMode) *crashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries := maps.Clone(c.durable)
	for _, op := range c.pending[:keep] {
		switch op.kind {
		case "create":
			entries[op.name] = op.ino
		case "rename":
			delete(entries, op.name)
			entries[op.to] = op.ino
		case "remove":
			delete(entries, op.name)
		}
	}
	out := newCrashFS(c.dir)
	fresh := map[*cinode]*cinode{}
	for name, ino := range entries {
		n := fresh[ino]
		if n == nil {
			data := survivor(ino, mode)
			n = &cinode{data: data, synced: bytes.Clone(data)}
			fresh[ino] = n
		}
		out.entries[name] = n
		out.durable[name] = n
	}
	return out
}

func survivor(ino *cinode, mode dataMode) []byte {
	switch {
	case bytes.Equal(ino.data, ino.synced) || mode == dataLost:
		return bytes.Clone(ino.synced)
	case mode == dataKept:
		return bytes.Clone(ino.data)
	default: // torn: the first half of the new bytes over the old ones
		n := len(ino.data) / 2
		out := bytes.Clone(ino.data[:n])
		if len(ino.synced) > n {
			out = append(out, ino.synced[n:]...)
		}
		return out
	}
}

func (c *crashFS) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkName("open", name); err != nil {
		return nil, err
	}
	writes := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0
	if c.crashed {
		return nil, errCrashed
	}
	ino, ok := c.entries[name]
	if !ok && flag&os.O_CREATE == 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	}
	if writes {
		if err := c.op("open " + filepath.Base(name)); err != nil {
			return nil, err
		}
	}
	if !ok {
		ino = &cinode{}
		c.entries[name] = ino
		c.pending = append(c.pending, dirOp{kind: "create", name: name, ino: ino})
	}
	if flag&os.O_TRUNC != 0 {
		ino.data = nil
	}
	return &cfile{fs: c, name: name, ino: ino, flag: flag}, nil
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkName("rename", oldpath); err != nil {
		return err
	}
	if err := c.checkName("rename", newpath); err != nil {
		return err
	}
	ino, ok := c.entries[oldpath]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	if err := c.op("rename " + filepath.Base(oldpath) + " " + filepath.Base(newpath)); err != nil {
		return err
	}
	delete(c.entries, oldpath)
	c.entries[newpath] = ino
	c.pending = append(c.pending, dirOp{kind: "rename", name: oldpath, to: newpath, ino: ino})
	return nil
}

func (c *crashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkName("remove", name); err != nil {
		return err
	}
	if _, ok := c.entries[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if err := c.op("remove " + filepath.Base(name)); err != nil {
		return err
	}
	delete(c.entries, name)
	c.pending = append(c.pending, dirOp{kind: "remove", name: name})
	return nil
}

func (c *crashFS) Stat(name string) (os.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return nil, errCrashed
	}
	ino, ok := c.entries[name]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return cinfo{name: filepath.Base(name), size: int64(len(ino.data))}, nil
}

func (c *crashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dir != c.dir {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: errors.New("crashFS: not its directory")}
	}
	if err := c.op("syncdir"); err != nil {
		return err
	}
	c.durable = maps.Clone(c.entries)
	c.pending = nil
	return nil
}

type cfile struct {
	fs     *crashFS
	name   string
	ino    *cinode
	flag   int
	off    int64
	closed bool
}

func (f *cfile) usable() error {
	if f.fs.crashed {
		return errCrashed
	}
	if f.closed {
		return fs.ErrClosed
	}
	return nil
}

func (f *cfile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.readAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *cfile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.readAt(p, off)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

func (f *cfile) readAt(p []byte, off int64) (int, error) {
	if err := f.usable(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	return copy(p, f.ino.data[off:]), nil
}

func (f *cfile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.writeAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *cfile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.writeAt(p, off)
}

func (f *cfile) writeAt(p []byte, off int64) (int, error) {
	if err := f.usable(); err != nil {
		return 0, err
	}
	if f.flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: errors.New("file not open for writing")}
	}
	if err := f.fs.op("write " + filepath.Base(f.name)); err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	if end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[off:], p)
	return len(p), nil
}

func (f *cfile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	if err := f.fs.op("sync " + filepath.Base(f.name)); err != nil {
		return err
	}
	f.ino.synced = bytes.Clone(f.ino.data)
	return nil
}

func (f *cfile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	if err := f.fs.op("truncate " + filepath.Base(f.name)); err != nil {
		return err
	}
	if size < int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *cfile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	f.closed = true
	if f.flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		return f.fs.op("close " + filepath.Base(f.name))
	}
	return nil
}

func (f *cfile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usable(); err != nil {
		return nil, err
	}
	return cinfo{name: filepath.Base(f.name), size: int64(len(f.ino.data))}, nil
}

type cinfo struct {
	name string
	size int64
}

func (i cinfo) Name() string       { return i.name }
func (i cinfo) Size() int64        { return i.size }
func (i cinfo) Mode() os.FileMode  { return 0o644 }
func (i cinfo) ModTime() time.Time { return time.Time{} }
func (i cinfo) IsDir() bool        { return false }
func (i cinfo) Sys() any           { return nil }

var _ fsx.FS = (*crashFS)(nil)

// String shows the file system's state, for failure messages.
func (c *crashFS) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(c.entries)) {
		fmt.Fprintf(&b, "%s: %q\n", filepath.Base(name), c.entries[name].data)
	}
	return b.String()
}
