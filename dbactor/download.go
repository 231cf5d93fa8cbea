package dbactor

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/syncdb/syncdb/messages"
)

// A pull's download (PATH-changes) is this actor's file, like every file
// of the replica but -info: the actor creates it (Download), hands out a
// sink the response is streamed into on a netactor goroutine, and closes
// and removes it itself (ApplyPull, DropDownload, the next Download, open,
// stop). The syncing side never names the file.

// ErrDownloadClosed is returned by a download's sink once the actor has
// closed it (the pull was applied or dropped, or a newer download replaced
// it): a late write of an abandoned request changes nothing.
var ErrDownloadClosed = errors.New("the pull's download is closed")

// errNotDownload: ApplyPull was given a sink that is not the download this
// actor has open.
var errNotDownload = errors.New("not the pull download this database has open")

// download is the sink of PATH-changes. It need not be durable: it is read
// only before the pull's first transaction commits, and a crash before that
// abandons the pull. The lock serializes the streaming goroutine with the
// actor closing it; nothing else shares it.
type download struct {
	mu     sync.Mutex
	s      *pageStore
	closed bool
}

var _ messages.PageSink = (*download)(nil)

// Add records one page; a later image of a page replaces the earlier.
func (d *download) Add(pgno uint32, page []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		// Never append: pageStore.append would create the file again.
		return ErrDownloadClosed
	}
	return d.s.append(pgno, page)
}

// Pages is the number of distinct pages written.
func (d *download) Pages() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.s.len()
}

// close ends the sink's writes and closes the file.
func (d *download) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.s.close()
}

// startDownload answers Download: a download still open (an attempt whose
// caller stopped waiting) is dropped, file and all (its space goes back
// even if the new one cannot be created), and PATH-changes starts empty.
func (a *dbActor) startDownload() (messages.PageSink, error) {
	a.dropDownload()
	path := a.files.Changes
	f, err := a.cfg.FS.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	a.download = &download{s: &pageStore{fs: a.cfg.FS, path: path, f: f, index: map[uint32]int64{}}}
	return a.download, nil
}

// takeDownload is ApplyPull's start: sink must be the open download, which
// it closes, so that the pages applyPull reads from the file are the ones
// the caller saw written. The caller removes the file (dropDownload) when
// the pull is done.
func (a *dbActor) takeDownload(sink messages.PageSink) error {
	d, ok := sink.(*download)
	if !ok || d == nil || d != a.download {
		return errNotDownload
	}
	if err := d.close(); err != nil {
		return fmt.Errorf("close %s: %w", a.files.Changes, err)
	}
	return nil
}

// dropDownload closes the download this actor handed out, if any, and
// removes PATH-changes: its space goes back at once.
func (a *dbActor) dropDownload() {
	if a.download == nil {
		return
	}
	a.download.close()
	a.download = nil
	a.cfg.FS.Remove(a.files.Changes)
}

// dropIfCurrent answers DropDownload: a sink this actor no longer has open
// (applied, or replaced) leaves the current download alone.
func (a *dbActor) dropIfCurrent(sink messages.PageSink) {
	if d, ok := sink.(*download); ok && d != nil && d == a.download {
		a.dropDownload()
	}
}
