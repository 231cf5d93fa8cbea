package shimvfs

import (
	"errors"
	"io"
	"os"
	"syscall"

	sqlite3 "modernc.org/sqlite/lib"
)

// ErrCrashed is returned by a File's writes and syncs, and by OpenFile,
// while the Recorder covering the file is crashed (the simulated process
// is dead).
var ErrCrashed = errors.New("shimvfs: recorder crashed")

// File is a database file written from Go, beside SQLite's own
// descriptor (pageactor filling a partial replica's holes). Under a
// Recorder its writes and syncs go into the same record as SQLite's: one
// durable image per file, and a sync from either side makes every write
// durable, as fsync does.
type File struct {
	f   *os.File
	rec *recFile // nil: not recorded
}

// OpenFile opens the existing file at path for reading and writing,
// recorded by the Recorder whose directory holds it, if any.
func OpenFile(path string) (*File, error) {
	var r *Recorder
	key := path
	if p, err := CleanAbs(path); err == nil {
		key = p
		r = recorderFor(key)
	}
	if r != nil && r.crashed.Load() {
		return nil, ErrCrashed
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return &File{f: f}, nil
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &File{f: f, rec: r.open(key, st.Size(), false)}, nil
}

// WriteAt writes p at off, saving the durable bytes it overwrites. Under a
// Recorder's SetFull or SetFault it fails without writing.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	rec := f.rec
	if rec == nil || rec.r.stopped.Load() {
		return f.f.WriteAt(p, off)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.r.crashed.Load() {
		return 0, ErrCrashed
	}
	if full := rec.r.full.Load(); full != nil && (*full)(rec.path) {
		return 0, &os.PathError{Op: "write", Path: rec.path, Err: syscall.ENOSPC}
	}
	if err := rec.r.injected("write", rec.path); err != nil {
		return 0, err
	}
	if rc := rec.saveWith(off, off+int64(len(p)), f.readZeros); rc != sqlite3.SQLITE_OK {
		return 0, errors.New("shimvfs: save the bytes a write overwrites")
	}
	rec.r.writes.Add(1)
	return f.f.WriteAt(p, off)
}

// readZeros reads n bytes at off (past the end: zeros).
func (f *File) readZeros(off, n int64) ([]byte, int32) {
	buf := make([]byte, n)
	if _, err := f.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, sqlite3.SQLITE_IOERR_READ
	}
	return buf, sqlite3.SQLITE_OK
}

// Sync fsyncs the file; under a Recorder it counts as an xSync, and a
// SetFault error fails it without making anything durable.
func (f *File) Sync() error {
	rec := f.rec
	if rec == nil || rec.r.stopped.Load() {
		return f.f.Sync()
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.r.crashed.Load() {
		return ErrCrashed
	}
	if err := rec.r.injected("sync", rec.path); err != nil {
		return err // nothing made durable: the writes stay at risk of a PowerLoss
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	st, err := f.f.Stat()
	if err != nil {
		return err
	}
	rec.synced = st.Size()
	rec.durable()
	return nil
}

// Close closes the file.
func (f *File) Close() error {
	if f.rec != nil {
		f.rec.r.closed(f.rec)
		f.rec = nil
	}
	return f.f.Close()
}
