// Package shimvfs is a SQLite VFS, in pure Go over modernc.org/sqlite, that
// wraps modernc's "unix" VFS so that syncdb can intercept file I/O. It is used
// for two things:
//
//   - Partial replicas (Attach). The main database file of a partial replica
//     is full-size with holes: pages not downloaded yet. Before every read of
//     an attached main database file, the shim asks the path's Pages whether
//     each page the read covers is missing and, if so, has it fetched (see
//     Pages). Writes SQLite makes to the file (checkpoints, rollback-mode
//     commits) are reported to Pages.Wrote.
//   - Crash simulation (Record). For files under a directory it records the
//     pre-image of everything written or truncated since each file's last
//     xSync, so that Recorder.PowerLoss can put every file back to its
//     last-synced state, as a power loss would.
//
// Register installs the VFS; open databases through it with the vfs URI
// parameter, for example
//
//	name, err := shimvfs.Register()
//	db, err := sql.Open("sqlite", "file:"+path+"?vfs="+name+"&syncdb_tag=sync")
//
// # Which files are intercepted
//
// A file is intercepted if it is the main database file (SQLITE_OPEN_MAIN_DB;
// this includes ATTACHed databases) of an attached path, or if its path lies
// under the directory of an active Recorder. Both are decided once, when SQLite
// opens the file: Attach, Detach, Record and Stop affect only later opens.
// Every other file (and temporary files, which have no name) is opened by the
// unix VFS in the very sqlite3_file SQLite allocated, keeping unix's own
// io_methods, so the shim costs nothing for it. Pages is only consulted for
// main database files; WAL files, journals and -shm are never lazy. The path
// is the full pathname SQLite computes (absolute, symlinks resolved).
//
// With memory-mapped I/O (PRAGMA mmap_size), xFetch of a range that has a
// missing page returns no mapping, so SQLite falls back to xRead, which
// fetches; ranges with every page present are mapped as usual.
//
// # Lifetime
//
// The VFS, once registered, stays registered for the life of the process. An
// open file keeps the Pages and Recorder it was opened with until SQLite
// closes it, whatever Attach, Detach, Record or Stop do meanwhile.
//
// # Crash model
//
// See Recorder. In short: a file's content and size as of its last successful
// xSync (or as of its first open under the Recorder) survive; every later
// write and truncation is undone. Creating a file is durable at once (a file
// created and never synced comes back empty), and so is deleting one through
// SQLite's xDelete. Shared memory (-shm) does not survive.
//
// # Implementation rules
//
// The transpiled SQLite code calls Go functions through C function pointers,
// so the usual cgo-like rules apply even though there is no cgo:
//   - Only top-level functions are stored as C function pointers: their func
//     values are static. The vfs and io_methods structs are in C memory
//     (libc.Xmalloc), which never moves.
//   - No Go pointers are kept in C memory. An intercepted sqlite3_file is laid
//     out as [header{pMethods, index}][unix's sqlite3_file]; the index selects
//     the Go state in a table that is read with atomic loads.
//   - Every callback runs on the goroutine of the SQLite call, with the
//     *libc.TLS passed in; that TLS is used for every call back into SQLite
//     or libc (SQLite's mutexes are owned per TLS).
//   - Only C memory is handed to C code (buffers come from libc.Xmalloc).
//   - A panic must not unwind through transpiled frames (that would leave
//     SQLite's mutexes held), so every callback recovers panics, including
//     those of Pages methods, and returns an SQLITE_IOERR code instead; see
//     Panics.
//
// go vet reports "possible misuse of unsafe.Pointer" where C addresses held as
// uintptr are converted to pointers; that is expected, as in modernc itself.
package shimvfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// vfsName is the name Register registers the VFS under.
const vfsName = "syncdb"

// Signatures of the C function pointers the shim calls or provides.
type (
	xOpenFn    = func(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32
	xDeleteFn  = func(tls *libc.TLS, pVfs, zName uintptr, syncDir int32) int32
	xFileFn    = func(tls *libc.TLS, pFile uintptr) int32                          // xClose, xSectorSize, xDeviceCharacteristics
	xFileIntFn = func(tls *libc.TLS, pFile uintptr, arg int32) int32               // xSync, xLock, xUnlock, xShmUnmap
	xFilePtrFn = func(tls *libc.TLS, pFile, p uintptr) int32                       // xFileSize, xCheckReservedLock
	xRWFn      = func(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32 // xRead, xWrite
	xTruncFn   = func(tls *libc.TLS, pFile uintptr, size int64) int32
	xFcntlFn   = func(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32
	xShmMapFn  = func(tls *libc.TLS, pFile uintptr, iPg, pgsz, extend int32, pp uintptr) int32
	xShmLockFn = func(tls *libc.TLS, pFile uintptr, off, n, flags int32) int32
	xBarrierFn = func(tls *libc.TLS, pFile uintptr)
	xFetchFn   = func(tls *libc.TLS, pFile uintptr, off int64, n int32, pp uintptr) int32
	xUnfetchFn = func(tls *libc.TLS, pFile uintptr, off int64, p uintptr) int32
)

// cFunc turns a top-level Go func into a C function pointer.
func cFunc[F any](f F) uintptr { return *(*uintptr)(unsafe.Pointer(&f)) }

// goFunc turns a C function pointer back into a callable Go func of type F.
func goFunc[F any](p uintptr) F { return *(*F)(unsafe.Pointer(&p)) }

// cptr views C memory at p as a *T.
func cptr[T any](p uintptr) *T { return (*T)(unsafe.Pointer(p)) }

// cbytes views the n bytes of C memory at p as a slice.
func cbytes(p uintptr, n int) []byte { return unsafe.Slice(cptr[byte](p), n) }

var (
	regOnce sync.Once
	regErr  error

	unixVfs uintptr              // sqlite3_vfs* of "unix"
	unixT   sqlite3.Tsqlite3_vfs // a copy of it, for its method pointers
	ioM     uintptr              // our sqlite3_io_methods (C memory)
	zTag    uintptr              // C string "syncdb_tag"
)

// Register installs the shim VFS (once per process; later calls return the
// same result) and returns its name, to be used as the vfs URI parameter. It
// is not made the default VFS.
func Register() (name string, err error) {
	regOnce.Do(func() { regErr = register() })
	return vfsName, regErr
}

func register() error {
	tls := libc.NewTLS() // outside any callback: a TLS of our own
	defer tls.Close()

	zUnix, err := libc.CString("unix")
	if err != nil {
		return err
	}
	defer libc.Xfree(tls, zUnix)
	if unixVfs = sqlite3.Xsqlite3_vfs_find(tls, zUnix); unixVfs == 0 {
		return errors.New("shimvfs: SQLite has no unix VFS")
	}
	unixT = *cptr[sqlite3.Tsqlite3_vfs](unixVfs)

	zName, err := libc.CString(vfsName)
	if err != nil {
		return err
	}
	if zTag, err = libc.CString("syncdb_tag"); err != nil {
		return err
	}

	// The methods other than xOpen and xDelete are unix's own; they all
	// ignore their pVfs argument (checked in the transpiled source).
	pv := libc.Xmalloc(tls, libc.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	im := libc.Xmalloc(tls, libc.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
	if pv == 0 || im == 0 {
		return errors.New("shimvfs: out of memory")
	}
	v := cptr[sqlite3.Tsqlite3_vfs](pv)
	*v = unixT
	v.FpNext = 0
	v.FzName = zName
	v.FszOsFile = unixT.FszOsFile + int32(hdrSize)
	v.FxOpen = cFunc[xOpenFn](vfsOpen)
	v.FxDelete = cFunc[xDeleteFn](vfsDelete)

	m := cptr[sqlite3.Tsqlite3_io_methods](im)
	*m = sqlite3.Tsqlite3_io_methods{
		FiVersion:               3, // xShm* (WAL) and xFetch/xUnfetch (mmap)
		FxClose:                 cFunc[xFileFn](ioClose),
		FxRead:                  cFunc[xRWFn](ioRead),
		FxWrite:                 cFunc[xRWFn](ioWrite),
		FxTruncate:              cFunc[xTruncFn](ioTruncate),
		FxSync:                  cFunc[xFileIntFn](ioSync),
		FxFileSize:              cFunc[xFilePtrFn](ioFileSize),
		FxLock:                  cFunc[xFileIntFn](ioLock),
		FxUnlock:                cFunc[xFileIntFn](ioUnlock),
		FxCheckReservedLock:     cFunc[xFilePtrFn](ioCheckReservedLock),
		FxFileControl:           cFunc[xFcntlFn](ioFileControl),
		FxSectorSize:            cFunc[xFileFn](ioSectorSize),
		FxDeviceCharacteristics: cFunc[xFileFn](ioDeviceCharacteristics),
		FxShmMap:                cFunc[xShmMapFn](ioShmMap),
		FxShmLock:               cFunc[xShmLockFn](ioShmLock),
		FxShmBarrier:            cFunc[xBarrierFn](ioShmBarrier),
		FxShmUnmap:              cFunc[xFileIntFn](ioShmUnmap),
		FxFetch:                 cFunc[xFetchFn](ioFetch),
		FxUnfetch:               cFunc[xUnfetchFn](ioUnfetch),
	}
	ioM = im

	if rc := sqlite3.Xsqlite3_vfs_register(tls, pv, 0); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("shimvfs: sqlite3_vfs_register: rc=%d", rc)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Intercepted files: [header][unix sqlite3_file], and their Go state.

type header struct {
	base sqlite3.Tsqlite3_file // pMethods: ioM, or 0 if the open failed
	idx  uintptr               // index of the file's state in the table
}

const hdrSize = unsafe.Sizeof(header{}) // 16: keeps the inner file 8-aligned

// file is the Go state of one intercepted open file.
type file struct {
	pages    Pages      // attached main database file, else nil
	will     WillWriter // pages as a WillWriter, if it is one
	tag      string     // the syncdb_tag URI parameter
	pageSize atomic.Int32
	rec      *recFile // recorded file, else nil
}

// inner returns the unix sqlite3_file inside an intercepted one.
func inner(pFile uintptr) uintptr { return pFile + hdrSize }

// methods returns the unix io_methods of an intercepted file.
func methods(pFile uintptr) *sqlite3.Tsqlite3_io_methods {
	return cptr[sqlite3.Tsqlite3_io_methods](cptr[sqlite3.Tsqlite3_file](inner(pFile)).FpMethods)
}

// The table of open intercepted files: fixed chunks allocated on demand, so
// that a lookup is two atomic loads and never races with growth.
const chunkSize = 256

var (
	chunks  [4096]atomic.Pointer[[chunkSize]atomic.Pointer[file]]
	tableMu sync.Mutex
	freeIdx []uintptr
	nextIdx uintptr
)

func fileOf(pFile uintptr) *file {
	i := cptr[header](pFile).idx
	return chunks[i/chunkSize].Load()[i%chunkSize].Load()
}

func addFile(f *file) (uintptr, error) {
	tableMu.Lock()
	defer tableMu.Unlock()
	var i uintptr
	if n := len(freeIdx); n > 0 {
		i, freeIdx = freeIdx[n-1], freeIdx[:n-1]
	} else {
		if nextIdx == uintptr(len(chunks))*chunkSize {
			return 0, errors.New("shimvfs: too many open files")
		}
		i = nextIdx
		nextIdx++
		if i%chunkSize == 0 {
			chunks[i/chunkSize].Store(new([chunkSize]atomic.Pointer[file]))
		}
	}
	chunks[i/chunkSize].Load()[i%chunkSize].Store(f)
	return i, nil
}

func removeFile(i uintptr) {
	tableMu.Lock()
	defer tableMu.Unlock()
	chunks[i/chunkSize].Load()[i%chunkSize].Store(nil)
	freeIdx = append(freeIdx, i)
}

// ---------------------------------------------------------------------------
// Panics

var (
	panicCount atomic.Int64
	lastPanic  atomic.Value // string
)

// catch, deferred by every callback, turns a panic into the error code code.
func catch(rc *int32, code int32) {
	if v := recover(); v != nil {
		panicCount.Add(1)
		lastPanic.Store(fmt.Sprintf("%v\n%s", v, debug.Stack()))
		*rc = code
	}
}

// Panics reports how many panics the shim's callbacks recovered (each turned
// into an SQLITE_IOERR code for SQLite) and the last one with its stack.
func Panics() (n int64, last string) {
	s, _ := lastPanic.Load().(string)
	return panicCount.Load(), s
}

// ---------------------------------------------------------------------------
// VFS methods

func vfsOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_CANTOPEN)
	var a *attachment
	var r *Recorder
	var path string
	if zName != 0 && flags&sqlite3.SQLITE_OPEN_DELETEONCLOSE == 0 {
		path = libc.GoString(zName)
		if flags&sqlite3.SQLITE_OPEN_MAIN_DB != 0 {
			a = attachmentFor(path)
		}
		r = recorderFor(path)
	}
	if a == nil && r == nil {
		// Not ours: unix uses the whole buffer and keeps its io_methods.
		return goFunc[xOpenFn](unixT.FxOpen)(tls, unixVfs, zName, pFile, flags, pOutFlags)
	}
	h := cptr[header](pFile)
	h.base.FpMethods = 0 // SQLite calls no method (not even xClose) if this stays 0
	if r != nil && r.crashed.Load() {
		return sqlite3.SQLITE_CANTOPEN // the simulated process is dead
	}
	if rc = goFunc[xOpenFn](unixT.FxOpen)(tls, unixVfs, zName, inner(pFile), flags, pOutFlags); rc != sqlite3.SQLITE_OK {
		return rc
	}
	f := &file{}
	if a != nil {
		f.pages = a.p
		f.will, _ = a.p.(WillWriter)
		if z := sqlite3.Xsqlite3_uri_parameter(tls, zName, zTag); z != 0 {
			f.tag = libc.GoString(z)
		}
	}
	if r != nil {
		var size int64
		if size, rc = fileSize(tls, pFile); rc != sqlite3.SQLITE_OK {
			goFunc[xFileFn](methods(pFile).FxClose)(tls, inner(pFile))
			return rc
		}
		f.rec = r.open(path, size, flags&sqlite3.SQLITE_OPEN_MAIN_DB != 0)
	}
	idx, err := addFile(f)
	if err != nil {
		if f.rec != nil {
			f.rec.r.closed(f.rec)
		}
		goFunc[xFileFn](methods(pFile).FxClose)(tls, inner(pFile))
		return sqlite3.SQLITE_CANTOPEN
	}
	h.idx = idx
	h.base.FpMethods = ioM
	return sqlite3.SQLITE_OK
}

func vfsDelete(tls *libc.TLS, pVfs, zName uintptr, syncDir int32) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_DELETE)
	var r *Recorder
	var path string
	if zName != 0 {
		path = libc.GoString(zName)
		r = recorderFor(path)
	}
	if r != nil && r.crashed.Load() {
		return sqlite3.SQLITE_IOERR_DELETE
	}
	rc = goFunc[xDeleteFn](unixT.FxDelete)(tls, unixVfs, zName, syncDir)
	if r != nil && rc == sqlite3.SQLITE_OK {
		r.deleted(path)
	}
	return rc
}

// ---------------------------------------------------------------------------
// io methods, installed on intercepted files only. Each delegates to the unix
// file at inner(pFile); xRead, xWrite, xTruncate, xSync and xFetch add the
// Pages and recording logic (pages.go, record.go).

func ioClose(tls *libc.TLS, pFile uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_CLOSE)
	f := fileOf(pFile)
	rc = goFunc[xFileFn](methods(pFile).FxClose)(tls, inner(pFile))
	if f.rec != nil {
		f.rec.r.closed(f.rec)
	}
	removeFile(cptr[header](pFile).idx)
	return rc
}

func ioRead(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_READ)
	if f := fileOf(pFile); f.pages != nil {
		return f.read(tls, pFile, buf, n, off)
	}
	return goFunc[xRWFn](methods(pFile).FxRead)(tls, inner(pFile), buf, n, off)
}

func ioWrite(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_WRITE)
	f := fileOf(pFile)
	var first, last uint32
	if f.pages != nil {
		first, last = f.pageRange(off, n)
		if f.will != nil && f.will.WillWrite(first, last) != nil {
			return sqlite3.SQLITE_IOERR_WRITE // nothing written: see WillWriter
		}
	}
	if f.rec != nil {
		rc = f.rec.write(tls, pFile, buf, n, off)
	} else {
		rc = goFunc[xRWFn](methods(pFile).FxWrite)(tls, inner(pFile), buf, n, off)
	}
	if rc == sqlite3.SQLITE_OK && f.pages != nil {
		f.pages.Wrote(first, last)
	}
	return rc
}

func ioTruncate(tls *libc.TLS, pFile uintptr, size int64) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_TRUNCATE)
	if f := fileOf(pFile); f.rec != nil {
		return f.rec.truncate(tls, pFile, size)
	}
	return goFunc[xTruncFn](methods(pFile).FxTruncate)(tls, inner(pFile), size)
}

func ioSync(tls *libc.TLS, pFile uintptr, flags int32) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_FSYNC)
	if f := fileOf(pFile); f.rec != nil {
		return f.rec.sync(tls, pFile, flags)
	}
	return goFunc[xFileIntFn](methods(pFile).FxSync)(tls, inner(pFile), flags)
}

func ioFileSize(tls *libc.TLS, pFile, pSize uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_FSTAT)
	return goFunc[xFilePtrFn](methods(pFile).FxFileSize)(tls, inner(pFile), pSize)
}

func ioLock(tls *libc.TLS, pFile uintptr, level int32) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_LOCK)
	return goFunc[xFileIntFn](methods(pFile).FxLock)(tls, inner(pFile), level)
}

func ioUnlock(tls *libc.TLS, pFile uintptr, level int32) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_UNLOCK)
	return goFunc[xFileIntFn](methods(pFile).FxUnlock)(tls, inner(pFile), level)
}

func ioCheckReservedLock(tls *libc.TLS, pFile, pResOut uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_CHECKRESERVEDLOCK)
	return goFunc[xFilePtrFn](methods(pFile).FxCheckReservedLock)(tls, inner(pFile), pResOut)
}

func ioFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR)
	return goFunc[xFcntlFn](methods(pFile).FxFileControl)(tls, inner(pFile), op, pArg)
}

func ioSectorSize(tls *libc.TLS, pFile uintptr) (n int32) {
	defer catch(&n, 4096)
	return goFunc[xFileFn](methods(pFile).FxSectorSize)(tls, inner(pFile))
}

func ioDeviceCharacteristics(tls *libc.TLS, pFile uintptr) (flags int32) {
	defer catch(&flags, 0)
	return goFunc[xFileFn](methods(pFile).FxDeviceCharacteristics)(tls, inner(pFile))
}

func ioShmMap(tls *libc.TLS, pFile uintptr, iPg, pgsz, extend int32, pp uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_SHMMAP)
	return goFunc[xShmMapFn](methods(pFile).FxShmMap)(tls, inner(pFile), iPg, pgsz, extend, pp)
}

func ioShmLock(tls *libc.TLS, pFile uintptr, off, n, flags int32) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_SHMLOCK)
	return goFunc[xShmLockFn](methods(pFile).FxShmLock)(tls, inner(pFile), off, n, flags)
}

func ioShmBarrier(tls *libc.TLS, pFile uintptr) {
	var rc int32
	defer catch(&rc, 0)
	goFunc[xBarrierFn](methods(pFile).FxShmBarrier)(tls, inner(pFile))
}

func ioShmUnmap(tls *libc.TLS, pFile uintptr, deleteFlag int32) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_SHMMAP)
	return goFunc[xFileIntFn](methods(pFile).FxShmUnmap)(tls, inner(pFile), deleteFlag)
}

func ioFetch(tls *libc.TLS, pFile uintptr, off int64, n int32, pp uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_MMAP)
	if f := fileOf(pFile); f.pages != nil && f.anyMissing(off, n) {
		*cptr[uintptr](pp) = 0 // no mapping: SQLite falls back to xRead
		return sqlite3.SQLITE_OK
	}
	return goFunc[xFetchFn](methods(pFile).FxFetch)(tls, inner(pFile), off, n, pp)
}

func ioUnfetch(tls *libc.TLS, pFile uintptr, off int64, p uintptr) (rc int32) {
	defer catch(&rc, sqlite3.SQLITE_IOERR_MMAP)
	return goFunc[xUnfetchFn](methods(pFile).FxUnfetch)(tls, inner(pFile), off, p)
}

// fileSize returns the size of the unix file inside pFile.
func fileSize(tls *libc.TLS, pFile uintptr) (int64, int32) {
	p := tls.Alloc(8)
	defer tls.Free(8)
	rc := goFunc[xFilePtrFn](methods(pFile).FxFileSize)(tls, inner(pFile), p)
	return *cptr[int64](p), rc
}

// CleanAbs checks that path is absolute and returns it cleaned, with
// symlinks resolved as far as they exist (SQLite's unix VFS resolves them
// when it computes the full pathname of a file): the one name of a file
// that the shim keys its attachments and records by, and pageactor its
// claim of the presence log.
func CleanAbs(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("shimvfs: path %q is not absolute", path)
	}
	path = filepath.Clean(path)
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p, nil
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		return filepath.Join(d, filepath.Base(path)), nil
	}
	return path, nil
}
