package shimvfs

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Recorder records, for crash simulation, every write, truncation and sync
// SQLite makes through the shim to files under a directory, so that
// PowerLoss can put the files back as a power loss would have left them.
//
// The model, per file (main database, WAL, rollback journal, ...):
//   - What survives is the file's content and size as of its last successful
//     xSync, or as of its first open under the Recorder if it has not been
//     synced since (so files must be opened only after Record, and their
//     content then is taken as durable).
//   - Every write and truncation after that is lost. A write past the synced
//     size is lost by truncating the file back to it; below it, the recorder
//     keeps the bytes the write overwrote (read through the file before the
//     write, once per byte between syncs) and puts them back.
//   - An xSync makes everything written so far durable, from any connection
//     (fsync applies to the file, not to a descriptor). modernc's unix VFS
//     ignores SQLITE_SYNC_DATAONLY and SQLITE_SYNC_FULL on Linux (both are a
//     plain fsync), so every xSync counts the same here. Its one-time fsync of
//     the directory, on the first xSync of a journal or WAL opened with
//     SQLITE_OPEN_CREATE, is not modelled.
//   - Directory entries are durable at once: a file created under the
//     Recorder and never synced comes back empty (not absent), and a file
//     deleted through xDelete stays deleted (unix's xDelete fsyncs the
//     directory only when SQLite asks, in synchronous=EXTRA).
//   - -shm files do not survive: PowerLoss removes the -shm of every recorded
//     main database file.
//
// Writes through a File (OpenFile: a Pages filling holes) go into the same
// record as SQLite's, and its Sync counts as an xSync. Writes through
// neither (another descriptor, unix's SQLITE_FCNTL_SIZE_HINT extension) are
// not recorded; extensions past the synced size are undone all the same.
//
// A simulated crash is: Crash, then close every connection (their closing
// checkpoints and deletions then fail instead of changing the files, as the
// process is dead), then PowerLoss. The Recorder then goes on recording.
type Recorder struct {
	dir string

	crashed, stopped atomic.Bool
	full             atomic.Pointer[func(path string) bool]      // see SetFull
	fault            atomic.Pointer[func(op, path string) error] // see SetFault
	afterSync        atomic.Pointer[func(path string)]           // see SetAfterSync

	mu    sync.Mutex // guards files and recFile.opens
	files map[string]*recFile

	writes, truncates, syncs atomic.Int64

	smu       sync.Mutex       // guards pathSyncs
	pathSyncs map[string]int64 // successful xSync calls per path, never reset (see SyncsOf)
}

// recFile is the record of one file path.
type recFile struct {
	r      *Recorder
	path   string
	mainDB bool
	opens  int // open handles, guarded by r.mu

	mu     sync.Mutex
	synced int64  // durable size
	saved  []span // durable bytes overwritten since, sorted, disjoint, in [0, synced)
}

type span struct {
	off  int64
	data []byte
}

func (s span) end() int64 { return s.off + int64(len(s.data)) }

// Stats counts what a Recorder recorded since Record.
type Stats struct {
	Files     int   // files currently recorded
	Writes    int64 // xWrite calls recorded
	Truncates int64 // xTruncate calls recorded
	Syncs     int64 // successful xSync calls
	Saved     int64 // bytes of pre-images currently held
}

var (
	recMu     sync.RWMutex
	recorders []*Recorder
)

// Record starts recording writes, truncations and syncs of every file under
// dir (an absolute directory; it is cleaned and its symlinks resolved) that
// SQLite opens through the shim from now on. Files already open are not
// recorded. The directories of two active Recorders may not overlap.
func Record(dir string) (*Recorder, error) {
	dir, err := CleanAbs(dir)
	if err != nil {
		return nil, err
	}
	recMu.Lock()
	defer recMu.Unlock()
	for _, o := range recorders {
		if under(dir, o.dir) || under(o.dir, dir) {
			return nil, fmt.Errorf("shimvfs: %s overlaps the recorded %s", dir, o.dir)
		}
	}
	r := &Recorder{dir: dir, files: map[string]*recFile{}, pathSyncs: map[string]int64{}}
	recorders = append(recorders, r)
	return r, nil
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

func recorderFor(path string) *Recorder {
	recMu.RLock()
	defer recMu.RUnlock()
	for _, r := range recorders {
		if under(path, r.dir) {
			return r
		}
	}
	return nil
}

// Stop stops recording: files opened later are not intercepted for it, and
// files already open are passed through. The files stay as they are, and
// PowerLoss can no longer be called.
func (r *Recorder) Stop() {
	r.stopped.Store(true)
	recMu.Lock()
	defer recMu.Unlock()
	recorders = slices.DeleteFunc(recorders, func(o *Recorder) bool { return o == r })
}

// Crash simulates the death of the process at this instant: from now on,
// every write, truncation, sync and delete of a recorded file fails with an
// I/O error and changes nothing, and recorded files cannot be opened. Close
// every connection, then call PowerLoss.
func (r *Recorder) Crash() { r.crashed.Store(true) }

// PowerLoss puts every recorded file back to its last-synced state (see
// Recorder) and removes the -shm file of every recorded main database file.
// Call it only after every connection on those files has been closed; it
// fails, changing nothing, if a recorded file is still open through the shim.
// Afterwards the Recorder is no longer crashed and goes on recording, taking
// the restored files as durable.
func (r *Recorder) PowerLoss() error {
	if r.stopped.Load() {
		return errors.New("shimvfs: PowerLoss after Stop")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for path, f := range r.files {
		if f.opens > 0 {
			return fmt.Errorf("shimvfs: PowerLoss with %s still open", path)
		}
	}
	var errs []error
	for path, f := range r.files {
		errs = append(errs, restore(path, f.synced, f.saved))
		if f.mainDB {
			if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	r.files = map[string]*recFile{}
	r.crashed.Store(false)
	return errors.Join(errs...)
}

// restore writes saved back into path and truncates it to size. A file that
// no longer exists (removed behind SQLite's back) is left alone.
func restore(path string, size int64, saved []span) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer f.Close()
	for _, s := range saved {
		if _, err := f.WriteAt(s.data, s.off); err != nil {
			return err
		}
	}
	// Leave a file the crash did not change alone, its times included: a
	// power loss does not touch files nobody wrote to.
	if st, err := f.Stat(); err != nil || st.Size() == size {
		return err
	}
	return f.Truncate(size)
}

// Stats returns counters for tests.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Files: len(r.files), Writes: r.writes.Load(), Truncates: r.truncates.Load(), Syncs: r.syncs.Load()}
	for _, f := range r.files {
		f.mu.Lock()
		for _, sp := range f.saved {
			s.Saved += int64(len(sp.data))
		}
		f.mu.Unlock()
	}
	return s
}

// SyncsOf counts the successful xSync calls of the file at path since
// Record, across deletions, reopenings and power losses. A write made before
// a count went up is durable: the simulator tells with it which commits of a
// synchronous=NORMAL replica a power loss takes back.
func (r *Recorder) SyncsOf(path string) int64 {
	if p, err := CleanAbs(path); err == nil {
		path = p
	}
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.pathSyncs[path]
}

// open returns the record of path, creating it with the current size as the
// durable one, and counts an open handle.
func (r *Recorder) open(path string, size int64, mainDB bool) *recFile {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.files[path]
	if f == nil {
		f = &recFile{r: r, path: path, mainDB: mainDB, synced: size}
		r.files[path] = f
	}
	f.mainDB = f.mainDB || mainDB
	f.opens++
	return f
}

func (r *Recorder) closed(f *recFile) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f.opens--
}

// deleted forgets path: the deletion is durable. A handle still open on it
// goes on recording into a record nobody restores.
func (r *Recorder) deleted(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.files, path)
}

// write serves xWrite of a recorded file.
func (f *recFile) write(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32 {
	if f.r.stopped.Load() {
		return goFunc[xRWFn](methods(pFile).FxWrite)(tls, inner(pFile), buf, n, off)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.r.crashed.Load() {
		return sqlite3.SQLITE_IOERR_WRITE
	}
	if full := f.r.full.Load(); full != nil && (*full)(f.path) {
		return sqlite3.SQLITE_FULL
	}
	if f.r.injected("write", f.path) != nil {
		return sqlite3.SQLITE_IOERR_WRITE
	}
	if rc := f.save(tls, pFile, off, off+int64(n)); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f.r.writes.Add(1)
	return goFunc[xRWFn](methods(pFile).FxWrite)(tls, inner(pFile), buf, n, off)
}

// truncate serves xTruncate of a recorded file.
func (f *recFile) truncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	if f.r.stopped.Load() {
		return goFunc[xTruncFn](methods(pFile).FxTruncate)(tls, inner(pFile), size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.r.crashed.Load() {
		return sqlite3.SQLITE_IOERR_TRUNCATE
	}
	// Whatever lies in [synced size, current size) was saved when it went.
	if rc := f.save(tls, pFile, size, f.synced); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f.r.truncates.Add(1)
	return goFunc[xTruncFn](methods(pFile).FxTruncate)(tls, inner(pFile), size)
}

// sync serves xSync of a recorded file: on success, everything is durable.
func (f *recFile) sync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	if f.r.stopped.Load() {
		return goFunc[xFileIntFn](methods(pFile).FxSync)(tls, inner(pFile), flags)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.r.crashed.Load() {
		return sqlite3.SQLITE_IOERR_FSYNC
	}
	if f.r.injected("sync", f.path) != nil {
		return sqlite3.SQLITE_IOERR_FSYNC
	}
	rc := goFunc[xFileIntFn](methods(pFile).FxSync)(tls, inner(pFile), flags)
	if rc != sqlite3.SQLITE_OK {
		return rc
	}
	size, rc := fileSize(tls, pFile)
	if rc != sqlite3.SQLITE_OK {
		return rc
	}
	f.synced = size
	f.durable()
	return sqlite3.SQLITE_OK
}

// durable records a successful sync at size f.synced: everything written
// is durable. f.mu is held.
func (f *recFile) durable() {
	f.saved = nil
	f.r.syncs.Add(1)
	f.r.smu.Lock()
	f.r.pathSyncs[f.path]++
	f.r.smu.Unlock()
	if after := f.r.afterSync.Load(); after != nil {
		(*after)(f.path)
	}
}

// save keeps the current bytes of [from, to) ∩ [0, synced) that are not kept
// yet. f.mu is held.
func (f *recFile) save(tls *libc.TLS, pFile uintptr, from, to int64) int32 {
	return f.saveWith(from, to, func(off, n int64) ([]byte, int32) { return readInner(tls, pFile, off, n) })
}

// saveWith is save reading the file with read. f.mu is held.
func (f *recFile) saveWith(from, to int64, read func(off, n int64) ([]byte, int32)) int32 {
	to = min(to, f.synced)
	if from >= to {
		return sqlite3.SQLITE_OK
	}
	i := sort.Search(len(f.saved), func(i int) bool { return f.saved[i].end() > from })
	var added []span
	for pos := from; pos < to; {
		if i < len(f.saved) && f.saved[i].off <= pos {
			pos = max(pos, f.saved[i].end())
			i++
			continue
		}
		gap := min(to, pos+1<<20) // at most 1 MiB per read
		if i < len(f.saved) {
			gap = min(gap, f.saved[i].off)
		}
		data, rc := read(pos, gap-pos)
		if rc != sqlite3.SQLITE_OK {
			return rc
		}
		added = append(added, span{pos, data})
		pos = gap
	}
	if len(added) > 0 {
		f.saved = append(f.saved, added...)
		slices.SortFunc(f.saved, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	}
	return sqlite3.SQLITE_OK
}

// readInner reads n bytes at off through the unix file (past its end: zeros).
func readInner(tls *libc.TLS, pFile uintptr, off, n int64) ([]byte, int32) {
	buf := libc.Xmalloc(tls, libc.Tsize_t(n))
	if buf == 0 {
		return nil, sqlite3.SQLITE_IOERR_NOMEM
	}
	defer libc.Xfree(tls, buf)
	rc := goFunc[xRWFn](methods(pFile).FxRead)(tls, inner(pFile), buf, int32(n), off)
	if rc != sqlite3.SQLITE_OK && rc != sqlite3.SQLITE_IOERR_SHORT_READ {
		return nil, rc
	}
	return append([]byte(nil), cbytes(buf, int(n))...), sqlite3.SQLITE_OK
}

// Resume ends a crash without a power loss (the process died, the machine
// did not): the files stay as they are, and what was not synced stays at
// risk of a later PowerLoss. Call it after every connection of the dead
// process was closed.
func (r *Recorder) Resume() { r.crashed.Store(false) }

// SetAfterSync calls after with the path of each recorded file right after
// a successful xSync of it, before SQLite goes on (a test crashes there,
// just after a commit became durable). SetAfterSync(nil) ends it.
func (r *Recorder) SetAfterSync(after func(path string)) {
	if after == nil {
		r.afterSync.Store(nil)
		return
	}
	r.afterSync.Store(&after)
}

// SetFull simulates a full disk: from now on every write to a recorded file
// whose path full reports true fails and changes nothing: SQLite's with
// SQLITE_FULL, a File's WriteAt with ENOSPC (as os.File's would).
// SetFull(nil) ends it.
func (r *Recorder) SetFull(full func(path string) bool) {
	if full == nil {
		r.full.Store(nil)
		return
	}
	r.full.Store(&full)
}

// SetFault injects I/O errors the process survives, as fsx.CrashFS.SetFault
// does for the files syncdb writes through fsx: fault is asked before every
// write and sync of a recorded file (op "write" or "sync", path the file's
// recorded path), from SQLite or through a File, and a non-nil error fails
// that call and changes nothing: the write is not made, the sync makes
// nothing durable (a later PowerLoss takes back what it would have kept).
// SQLite sees SQLITE_IOERR_WRITE or SQLITE_IOERR_FSYNC, a File's caller the
// error itself. It is for the writes Recorder sees and fsx does not: a
// partial replica's page writes into the database file (pageactor's own
// File). SetFault(nil) ends it.
func (r *Recorder) SetFault(fault func(op, path string) error) {
	if fault == nil {
		r.fault.Store(nil)
		return
	}
	r.fault.Store(&fault)
}

// injected asks the SetFault function, if any, about op on path.
func (r *Recorder) injected(op, path string) error {
	if fault := r.fault.Load(); fault != nil {
		return (*fault)(op, path)
	}
	return nil
}
