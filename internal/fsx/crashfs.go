package fsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// ErrFrozen is returned by every mutation of a frozen CrashFS: the process
// it belongs to has (in the simulation) died.
var ErrFrozen = errors.New("fsx: file system frozen by a simulated crash")

// CrashFS is an FS over real files that can simulate crashes, for tests
// and the simulator:
//
//   - Freeze models the death of the process: nothing written afterwards
//     reaches the files.
//   - PowerLoss models a power failure: every file goes back to its content
//     as of its last Sync, and every directory change (create, rename,
//     remove) not followed by a SyncDir of its directory is undone.
//
// The model is conservative, as pebble's crashable file system is: the OS
// would usually have kept more. It keeps a copy of a file's last durable
// content whenever the file is first changed after a Sync, so it suits
// small test databases only.
type CrashFS struct {
	mu     sync.Mutex
	frozen bool
	fault  func(op, path string) error // see SetFault
	files  map[string]*durable         // by clean path
	dirOps []dirOp                     // directory changes not yet made durable, oldest first
}

// durable is what a file holds durably: its content at the last Sync (nil
// while the file has no unsynced changes).
type durable struct {
	saved   []byte
	existed bool // the file existed durably (false: created since)
}

type dirOp struct {
	kind     string // "create", "rename", "remove"
	dir      string
	from, to string
	content  []byte // remove: the removed file; rename: what "to" held before
	had      bool   // rename: "to" existed before
}

// NewCrashFS returns a CrashFS over the operating system's files.
func NewCrashFS() *CrashFS { return &CrashFS{files: map[string]*durable{}} }

// Freeze makes every later mutation fail with ErrFrozen (reads still work).
func (c *CrashFS) Freeze() {
	c.mu.Lock()
	c.frozen = true
	c.mu.Unlock()
}

// Thaw undoes Freeze (after the simulated restart).
func (c *CrashFS) Thaw() {
	c.mu.Lock()
	c.frozen = false
	c.mu.Unlock()
}

// PowerLoss undoes what was not made durable. Call it while no file is in
// use.
func (c *CrashFS) PowerLoss() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Directory changes first, newest first, then file contents.
	for i := len(c.dirOps) - 1; i >= 0; i-- {
		op := c.dirOps[i]
		var err error
		switch op.kind {
		case "create":
			err = os.Remove(op.to)
			delete(c.files, op.to)
		case "rename":
			if err = os.Rename(op.to, op.from); err == nil && op.had {
				err = os.WriteFile(op.to, op.content, 0o644)
			}
			if st, ok := c.files[op.to]; ok {
				c.files[op.from] = st
				delete(c.files, op.to)
			}
		case "remove":
			err = os.WriteFile(op.to, op.content, 0o644)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("power loss: undo %s %s: %w", op.kind, op.to, err)
		}
	}
	c.dirOps = nil
	for path, st := range c.files {
		if st.saved == nil {
			continue
		}
		var err error
		if st.existed {
			err = os.WriteFile(path, st.saved, 0o644)
		} else {
			err = os.Remove(path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("power loss: restore %s: %w", path, err)
		}
	}
	c.files = map[string]*durable{}
	return nil
}

func (c *CrashFS) check() error {
	if c.frozen {
		return ErrFrozen
	}
	return nil
}

// SetFault injects I/O errors the process survives: fn is asked before
// every write, truncate, sync and rename (op "write", "sync", "rename"; path
// the file, for a rename its old path) and a non-nil error fails that call
// without any effect. nil removes it.
func (c *CrashFS) SetFault(fn func(op, path string) error) {
	c.mu.Lock()
	c.fault = fn
	c.mu.Unlock()
}

// injected asks the fault function about op on path. The caller holds mu.
func (c *CrashFS) injected(op, path string) error {
	if c.fault == nil {
		return nil
	}
	return c.fault(op, path)
}

// touch records the durable content of path before its first change since
// the last Sync. The caller holds mu.
func (c *CrashFS) touch(path string) error {
	st := c.files[path]
	if st == nil {
		st = &durable{}
		c.files[path] = st
	}
	if st.saved != nil {
		return nil
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.saved, st.existed = []byte{}, false
	case err != nil:
		return err
	default:
		st.saved, st.existed = data, true
	}
	return nil
}

func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	path := filepath.Clean(name)
	writes := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0
	if writes {
		c.mu.Lock()
		err := c.check()
		if err == nil {
			if _, statErr := os.Stat(path); errors.Is(statErr, os.ErrNotExist) && flag&os.O_CREATE != 0 {
				c.dirOps = append(c.dirOps, dirOp{kind: "create", dir: filepath.Dir(path), to: path})
			}
			if flag&os.O_TRUNC != 0 {
				err = c.touch(path)
			}
		}
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c, path: path}, nil
}

func (c *CrashFS) Rename(oldpath, newpath string) error {
	from, to := filepath.Clean(oldpath), filepath.Clean(newpath)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	if err := c.injected("rename", from); err != nil {
		return err
	}
	op := dirOp{kind: "rename", dir: filepath.Dir(to), from: from, to: to}
	if data, err := os.ReadFile(to); err == nil {
		op.content, op.had = data, true
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	c.dirOps = append(c.dirOps, op)
	if st, ok := c.files[from]; ok {
		c.files[to] = st
		delete(c.files, from)
	}
	return nil
}

func (c *CrashFS) Remove(name string) error {
	path := filepath.Clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	c.dirOps = append(c.dirOps, dirOp{kind: "remove", dir: filepath.Dir(path), to: path, content: data})
	return nil
}

func (c *CrashFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

// SyncDir makes the directory changes in dir durable.
func (c *CrashFS) SyncDir(dir string) error {
	dir = filepath.Clean(dir)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	c.dirOps = slices.DeleteFunc(c.dirOps, func(op dirOp) bool { return op.dir == dir })
	return nil
}

type crashFile struct {
	*os.File
	fs   *CrashFS
	path string
}

func (f *crashFile) mutate(fn func() error) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check(); err != nil {
		return err
	}
	if err := f.fs.injected("write", f.path); err != nil {
		return err
	}
	if err := f.fs.touch(f.path); err != nil {
		return err
	}
	return fn()
}

func (f *crashFile) Write(p []byte) (n int, err error) {
	err = f.mutate(func() error { n, err = f.File.Write(p); return err })
	return n, err
}

func (f *crashFile) WriteAt(p []byte, off int64) (n int, err error) {
	err = f.mutate(func() error { n, err = f.File.WriteAt(p, off); return err })
	return n, err
}

func (f *crashFile) Truncate(size int64) error {
	return f.mutate(func() error { return f.File.Truncate(size) })
}

// Sync makes the file's content durable (its directory entry is a separate
// matter: SyncDir).
func (f *crashFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check(); err != nil {
		return err
	}
	if err := f.fs.injected("sync", f.path); err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	if st := f.fs.files[f.path]; st != nil {
		st.saved = nil
	}
	return nil
}
