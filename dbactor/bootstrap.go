package dbactor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
)

// moveBootstrap carries out planMove's decision (messages.MoveBootstrap):
// the rename of PATH-bootstrap to PATH, then the directory's fsync, so
// that the metadata, written before, never outlives the rename on disk.
func moveBootstrap(fs fsx.FS, f layout.Files) error {
	_, err := fs.Stat(f.Bootstrap)
	download := err == nil
	db := false
	if download {
		_, err := fs.Stat(f.DB)
		db = err == nil
	}
	if move, err := planMove(f, download, db); !move {
		return err
	}
	if err := fs.Rename(f.Bootstrap, f.DB); err != nil {
		return err
	}
	return fs.SyncDir(filepath.Dir(f.DB))
}

// planMove decides the move from whether PATH-bootstrap and PATH exist:
// nothing without a download, a refusal when both exist (neither is known
// to be the replica's), else the rename.
func planMove(f layout.Files, download, db bool) (move bool, err error) {
	switch {
	case !download:
		return false, nil
	case db:
		return false, fmt.Errorf("both %s and %s exist", f.DB, f.Bootstrap)
	}
	return true, nil
}

// A bootstrap's download (PATH-bootstrap) is this actor's file too, from
// its creation to its rename: BeginBootstrap creates it and hands out a
// sink the response is streamed into on a netactor goroutine;
// FinishDownload runs the file steps before the metadata (cut, fsync,
// close, stamp). The syncing side keeps the decisions (syncactor's plan),
// the failpoints and the metadata, and never names the file.

// ErrBootstrapClosed is returned by a bootstrap's sink once the actor has
// closed it (the download was finished, or a newer attempt replaced it):
// a late write of an abandoned attempt changes nothing.
var ErrBootstrapClosed = errors.New("the bootstrap's download is closed")

// ErrBootstrapOpened refuses BeginBootstrap on an opened database: a
// bootstrap downloads a replica that does not exist yet, before its first
// open; on an opened one it would truncate PATH-bootstrap (a download
// that may be the replica's, moved at the next open) under it.
var ErrBootstrapOpened = errors.New("a bootstrap's download on an opened database")

// errNotBootstrap: FinishDownload was given a sink that is not the
// download this actor has open (finished already, or replaced).
var errNotBootstrap = errors.New("not the bootstrap download this database has open")

// errBadDownloadStep refuses a step FinishDownload should not be given:
// the zero step, a refusal without its error, an unknown op.
var errBadDownloadStep = errors.New("bootstrap download: invalid step")

// bootSink is the sink of PATH-bootstrap. mu serializes the streaming
// goroutine (and the syncing side's Flush) with the actor closing it.
type bootSink struct {
	mu     sync.Mutex
	f      fsx.File
	w      *runWriter // a full bootstrap's; nil: a partial one, written at offsets
	closed bool
}

var _ messages.BootstrapSink = (*bootSink)(nil)

func (s *bootSink) Cut(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrBootstrapClosed
	}
	if s.w != nil {
		if err := s.w.flush(); err != nil {
			return err
		}
	}
	return s.f.Truncate(size)
}

func (s *bootSink) Add(pgno uint32, page []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Never send: the runs' channel is closed.
		return ErrBootstrapClosed
	}
	if s.w == nil {
		_, err := s.f.WriteAt(page, int64(pgno-1)*PageSize)
		return err
	}
	return s.w.add(pgno, page)
}

func (s *bootSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrBootstrapClosed
	}
	if s.w == nil {
		return nil
	}
	return s.w.flush()
}

func (s *bootSink) Hashed(pages uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w != nil && s.w.hashes(pages)
}

// end refuses the sink's writes from now on and stops its run writer (a
// run in flight is written first; pages added since the last Flush are
// dropped, as a failed attempt's always were). The file stays open.
func (s *bootSink) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.w != nil {
		s.w.close()
	}
}

// beginBootstrap answers BeginBootstrap: the download still open (an
// earlier attempt's) is closed, then PATH-bootstrap is created empty.
// An opened database refuses (ErrBootstrapOpened).
func (a *dbActor) beginBootstrap(partial bool) (messages.BootstrapSink, error) {
	if a.opened {
		return nil, ErrBootstrapOpened
	}
	a.dropBootstrap()
	f, err := a.cfg.FS.OpenFile(a.files.Bootstrap, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	s := &bootSink{f: f}
	if !partial {
		s.w = newRunWriter(f)
	}
	a.boot = s
	return s, nil
}

// dropBootstrap closes the download this actor handed out, if any,
// leaving the file: it is the facade's to remove after a failed Open
// (removeStaleBootstrap), and a crash leaves it anyway.
func (a *dbActor) dropBootstrap() {
	if a.boot == nil {
		return
	}
	a.boot.end()
	a.boot.f.Close()
	a.boot = nil
}

// finishDownload answers FinishDownload: sink must be the open download,
// which it ends, then it runs steps on the file, closing it in the end if
// no step did (or one failed before).
func (a *dbActor) finishDownload(sink messages.BootstrapSink, steps []messages.DownloadStep) (*messages.FileStamp, error) {
	s, ok := sink.(*bootSink)
	if !ok || s == nil || s != a.boot {
		return nil, errNotBootstrap
	}
	a.boot = nil
	s.end()
	open := true
	defer func() {
		if open {
			s.f.Close()
		}
	}()
	var stamp *messages.FileStamp
	for _, st := range steps {
		var err error
		switch st.Op {
		case messages.DownloadTruncate:
			err = s.f.Truncate(st.Size)
		case messages.DownloadSync:
			err = s.f.Sync()
		case messages.DownloadClose:
			open = false
			err = s.f.Close()
		case messages.DownloadSyncClose:
			open = false
			err = errors.Join(s.f.Sync(), s.f.Close())
		case messages.DownloadRefuse:
			// A refusal without its reason must still stop the steps.
			err = st.Err
			if err == nil {
				err = fmt.Errorf("%w: a refusal without its error", errBadDownloadStep)
			}
		case messages.DownloadStamp:
			stamp, err = a.stampDownload(s, st.Hashed)
		default:
			err = fmt.Errorf("%w: op %d", errBadDownloadStep, st.Op)
		}
		if err != nil {
			return nil, err
		}
	}
	return stamp, nil
}

// stampDownload stamps PATH-bootstrap: with the hash of the runs the sink
// wrote if hashed (the caller had the sink's word for it: Hashed) and the
// runs are indeed the file's pages as it is now (after a cut), else by
// reading the file back, which is always right.
func (a *dbActor) stampDownload(s *bootSink, hashed bool) (*messages.FileStamp, error) {
	if hashed && s.w != nil {
		// The writer goroutine has ended (end): its hash is final.
		st, err := StampWithHash(a.files.Bootstrap, s.w.hash)
		if err != nil || st.Size%PageSize == 0 && s.w.hashes(uint64(st.Size/PageSize)) {
			return st, err
		}
	}
	return StampOf(a.files.Bootstrap)
}

// runWriter writes pages that arrive in page order as runs of up to 1 MiB,
// one write per run. A run is written by a goroutine of its own while the
// next one fills, so that reading the network and writing the disk overlap.
// Two buffers take turns: the one being filled and at most one being
// written. Its caller (bootSink, under its lock) calls one method at a
// time and none after close.
//
// The writer goroutine also hashes each run it wrote (RunHash), so that
// the bootstrap's file stamp needs no second read of the whole file.
type runWriter struct {
	f     fsx.File
	buf   []byte
	first uint32 // page number of buf's first page
	next  uint32 // the page that follows those added, from page 1 on; 0 once one came out of that order
	free  chan []byte
	runs  chan pageRun
	done  chan struct{}

	hash uint64 // of the runs written; the writer goroutine's until flush returns

	mu  sync.Mutex
	err error // the first write error
}

type pageRun struct {
	first uint32
	data  []byte
}

const runBytes = 1 << 20

func newRunWriter(f fsx.File) *runWriter {
	w := &runWriter{f: f, next: 1, free: make(chan []byte, 1), runs: make(chan pageRun, 1), done: make(chan struct{})}
	w.buf = make([]byte, 0, runBytes)
	w.free <- make([]byte, 0, runBytes)
	go w.write()
	return w
}

func (w *runWriter) write() {
	defer close(w.done)
	for r := range w.runs {
		if w.failed() == nil {
			if _, err := w.f.WriteAt(r.data, int64(r.first-1)*PageSize); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			} else {
				w.hash ^= RunHash(r.first, r.data)
			}
		}
		w.free <- r.data[:0]
	}
}

func (w *runWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *runWriter) add(pgno uint32, data []byte) error {
	if len(w.buf) > 0 && (pgno != w.first+uint32(len(w.buf)/PageSize) || len(w.buf)+len(data) > runBytes) {
		if err := w.send(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.first = pgno
	}
	if pgno == w.next {
		w.next++
	} else {
		w.next = 0
	}
	w.buf = append(w.buf, data...)
	return nil
}

// hashes reports, after a successful flush, whether what was added is
// exactly the pages 1 to pages of the file, each once and in order, so
// that the runs' hash is the file's content hash; otherwise (a page sent
// twice would cancel its own share, one never sent is not zero in the
// hash) the file must be read back.
func (w *runWriter) hashes(pages uint64) bool {
	// Pages added but never sent (no flush) are not in the hash.
	return w.next != 0 && uint64(w.next-1) == pages && len(w.buf) == 0 && w.failed() == nil
}

// send hands the filled buffer to the writer and takes the other one back
// (waiting for its write to finish).
func (w *runWriter) send() error {
	w.runs <- pageRun{first: w.first, data: w.buf}
	w.buf = <-w.free
	return w.failed()
}

// flush returns once every page added so far is written.
func (w *runWriter) flush() error {
	if len(w.buf) > 0 {
		w.send()
	}
	b := <-w.free // the other buffer is back: no write in flight
	w.free <- b
	return w.failed()
}

// close waits for the run in flight, then ends the writer goroutine.
func (w *runWriter) close() {
	close(w.runs)
	<-w.done
}
