package shimvfs

import (
	"errors"
	"sync"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Pages is what the shim asks about the main database file of an attached
// path. Page numbers are 1-based. Its methods are called from SQLite's I/O
// callbacks, on the goroutine of the query, while SQLite holds the
// connection's mutex: they must not use that connection. They are called
// concurrently by every connection that has the file open. A panic in them is
// recovered and fails the I/O (see Panics).
type Pages interface {
	// Missing reports whether page pgno must be made present before SQLite
	// reads it. It is called for every page of every read of the main file,
	// so it must be cheap (an atomic bitmap, say) and must never block.
	Missing(pgno uint32) bool
	// Fetch makes page pgno present in the file (it may fetch a whole
	// segment) and blocks until it is; the read then proceeds from the file.
	// tag is the connection's syncdb_tag URI parameter ("" if none), so that
	// the owner can treat its own connections specially. Returning
	// ErrZeroFill (or an error wrapping it) makes this read return zeros
	// without touching the file; any other error fails the read with
	// SQLITE_IOERR_READ, which fails the statement and can be retried.
	//
	// Fetch must write the page through a file descriptor of its own that
	// stays open for as long as SQLite may have the file open: closing any
	// descriptor of the file drops every POSIX lock the process holds on it.
	// It must never overwrite a page that is no longer missing (SQLite's copy
	// is authoritative), and SQLite itself may write missing pages (for
	// example free pages reused without being read): see WillWriter.
	//
	// SQLite cannot interrupt a read, so Fetch needs a timeout of its own.
	Fetch(pgno uint32, tag string) error
	// Wrote reports that SQLite wrote pages [first, last] of the main file;
	// it is called after the write succeeded.
	Wrote(first, last uint32)
}

// WillWriter may be implemented by a Pages. Wrote comes after the write, so
// a segment fetch running meanwhile could still see a page as missing and
// overwrite what SQLite just wrote with the remote image. If the Pages is a
// WillWriter, WillWrite(first, last) is called before every write of the main
// file: once it returns, pages [first, last] must be treated as present and
// never be written by a fetch (a fetch writing them must have finished). If
// the write then fails, their content does not matter: SQLite still has the
// data (in the WAL, or in its cache and the rollback journal) and writes the
// pages again before it relies on the file's copy.
//
// An error from WillWrite (it could not record the pages as present) fails
// the write with SQLITE_IOERR_WRITE before anything is written: the pages
// are the Pages' again, still missing, so that nothing SQLite wrote lies in
// a page the Pages would fetch over.
type WillWriter interface {
	WillWrite(first, last uint32) error
}

// ErrZeroFill, returned by Pages.Fetch, makes the read return zeros without
// touching the file: for pages the caller is about to overwrite.
var ErrZeroFill = errors.New("shimvfs: zero-fill page")

type attachment struct{ p Pages }

var (
	attachMu sync.RWMutex
	attached = map[string]*attachment{}
)

// Attach routes the main database file at path (absolute; it is cleaned and
// its symlinks resolved) through p, for files opened from now on; those
// already open are unaffected. detach stops routing for new opens (open files
// keep using p until closed); it may be called more than once. One path has at
// most one Pages at a time.
func Attach(path string, p Pages) (detach func(), err error) {
	if p == nil {
		return nil, errors.New("shimvfs: nil Pages")
	}
	if path, err = CleanAbs(path); err != nil {
		return nil, err
	}
	a := &attachment{p}
	attachMu.Lock()
	defer attachMu.Unlock()
	if attached[path] != nil {
		return nil, errors.New("shimvfs: " + path + " is already attached")
	}
	attached[path] = a
	var once sync.Once
	return func() {
		once.Do(func() {
			attachMu.Lock()
			defer attachMu.Unlock()
			if attached[path] == a {
				delete(attached, path)
			}
		})
	}, nil
}

func attachmentFor(path string) *attachment {
	attachMu.RLock()
	defer attachMu.RUnlock()
	return attached[path]
}

// pageRange returns the pages that n bytes at off cover. SQLite reads and
// writes the main file in whole, aligned pages, which tells the page size;
// the only other accesses are of the header (the first 100 bytes, in page 1),
// and for those the last page size seen (or 512, the smallest) is used.
func (f *file) pageRange(off int64, n int32) (first, last uint32) {
	ps := f.pageSize.Load()
	if n >= 512 && n <= 65536 && n&(n-1) == 0 && off%int64(n) == 0 {
		if ps != n {
			f.pageSize.Store(n)
		}
		p := uint32(off/int64(n)) + 1
		return p, p
	}
	if ps == 0 {
		ps = 512
	}
	return uint32(off/int64(ps)) + 1, uint32((off+int64(max(n, 1))-1)/int64(ps)) + 1
}

func (f *file) anyMissing(off int64, n int32) bool {
	first, last := f.pageRange(off, n)
	for pg := first; pg <= last; pg++ {
		if f.pages.Missing(pg) {
			return true
		}
	}
	return false
}

// read serves xRead of an attached main file.
func (f *file) read(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32 {
	first, last := f.pageRange(off, n)
	if first == last {
		return f.readPage(tls, pFile, first, buf, n, off)
	}
	// Several pages (never seen in practice): page by page.
	ps := int64(f.pageSize.Load())
	if ps == 0 {
		ps = 512
	}
	rc, end := int32(sqlite3.SQLITE_OK), off+int64(n)
	for pg := first; pg <= last; pg++ {
		a, b := max(off, int64(pg-1)*ps), min(end, int64(pg)*ps)
		switch r := f.readPage(tls, pFile, pg, buf+uintptr(a-off), int32(b-a), a); r {
		case sqlite3.SQLITE_OK:
		case sqlite3.SQLITE_IOERR_SHORT_READ:
			rc = r
		default:
			return r
		}
	}
	return rc
}

// readPage reads n bytes at off, all in page pg, into buf.
func (f *file) readPage(tls *libc.TLS, pFile uintptr, pg uint32, buf uintptr, n int32, off int64) int32 {
	if f.pages.Missing(pg) {
		if err := f.pages.Fetch(pg, f.tag); errors.Is(err, ErrZeroFill) {
			clear(cbytes(buf, int(n)))
			return sqlite3.SQLITE_OK
		} else if err != nil || f.pages.Missing(pg) {
			return sqlite3.SQLITE_IOERR_READ // never read a hole as data
		}
	}
	return goFunc[xRWFn](methods(pFile).FxRead)(tls, inner(pFile), buf, n, off)
}
