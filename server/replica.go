package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

// In a cluster the page history lives in the shared store and the local
// database file is a copy of it. On the writer it is the working copy,
// open in SQLite. On every other node that serves the database it is a warm
// copy (warmCopy): a plain file that follows the store's latest revision a
// moment behind, so that taking the lease over costs the pages written
// since, not the whole database. It is dropped when the store fenced this
// node and never trusted after a restart. Readers on any node serve pulls
// from the store.

// openShared opens a database of the shared store, creating it there if it
// does not exist yet.
func (d *database) openShared(ctx context.Context) error {
	d.removeLocal() // a cache from an earlier run: never trusted
	var err error
	if d.hist, err = d.opts.openHistory(ctx, d.name, d.dir); err != nil {
		return err
	}
	if d.hist.Initialized() {
		return nil
	}
	// A new database: its base revision is an empty SQLite file.
	if err := d.openLocal(ctx); err != nil {
		return err
	}
	err = d.initHistory(ctx)
	d.closeLocal()
	d.removeLocal()
	if errors.Is(err, history.ErrExists) {
		return nil // another node created it meanwhile: that one it is
	}
	return err
}

// localFiles are the local database file and SQLite's companions.
func (d *database) localFiles() []string {
	path := filepath.Join(d.dir, mainFile)
	return []string{path, path + "-wal", path + "-shm"}
}

// removeLocal deletes the local database files (the caller closed them).
func (d *database) removeLocal() {
	d.warm.mu.Lock()
	for _, p := range d.localFiles() {
		os.Remove(p)
	}
	d.warm.seq, d.warm.size, d.warm.working = 0, 0, false
	d.warm.mu.Unlock()
	d.snapshots.removeAll()
	d.localEpoch, d.localSeq, d.walPos = 0, 0, walfile.Position{}
	d.behind.Store(false)
}

// materialize makes the local file the store's latest revision and opens
// it as the working copy. The caller holds mu and the lease, so no other
// node appends meanwhile. A warm copy only needs the pages written since
// its revision.
func (d *database) materialize(ctx context.Context) error {
	d.closeLocal()
	rev := d.hist.Latest()
	w := &d.warm
	w.mu.Lock()
	if w.working {
		// This node's working copy of an earlier lease: its WAL may hold
		// commits the store never recorded. Build it again.
		for _, p := range d.localFiles() {
			os.Remove(p)
		}
		w.seq, w.size, w.working = 0, 0, false
	}
	from := w.seq
	err := w.update(ctx, d.hist, rev)
	if err == nil {
		w.working = true
	}
	w.mu.Unlock()
	if err != nil {
		d.removeLocal()
		return fmt.Errorf("build the local copy of revision %d: %w", rev.Seq, err)
	}
	if err := d.openLocal(ctx); err != nil {
		d.closeLocal()
		d.removeLocal()
		return err
	}
	d.localSeq = rev.Seq
	d.log.Info("opened the local copy as the writer", "revision", rev.Seq, "pages", rev.DBSize, "warm_from", from)
	return nil
}

// warmCopy is the local database file of a cluster node while it is not
// the database's working copy: a plain file holding revision seq, brought
// up to date by follow. Its fields are guarded by mu.
type warmCopy struct {
	path   string
	onCopy func(full bool, pages int) // counts the pages written

	mu      sync.Mutex
	seq     int64  // the revision the file holds; 0: none (no file, or half written)
	size    uint32 // its size in pages
	working bool   // the file is the writer's working copy, open in SQLite
}

// catchUp brings the warm copy to the history's latest revision, unless
// the file is the working copy.
func (w *warmCopy) catchUp(ctx context.Context, h history.Backend) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.working || failpoint.Skip("server.warm-copy", "") {
		return nil
	}
	return w.update(ctx, h, h.Latest())
}

// update writes revision target into the file: the pages written since the
// revision it holds (and any it grew by), or every page if it holds none.
// The caller holds mu.
func (w *warmCopy) update(ctx context.Context, h history.Backend, target history.Revision) error {
	if target.Seq == 0 || target.Seq == w.seq {
		return nil
	}
	rd, err := h.Reader(ctx)
	if err != nil {
		return err
	}
	defer rd.Close()
	full := w.seq == 0 || w.seq > target.Seq || w.seq < h.Horizon()
	var pages *roaring.Bitmap
	if full {
		pages = history.AllPages(target.DBSize)
	} else {
		if pages, err = rd.ChangedBetween(ctx, w.seq, target.Seq); err != nil {
			return err
		}
		// A page in the file's growth reads as of target, written since
		// or not: exactly what a full copy would hold.
		if target.DBSize > w.size {
			pages.AddRange(uint64(w.size)+1, uint64(target.DBSize)+1)
		}
		pages.RemoveRange(uint64(target.DBSize)+1, uint64(maxPgno)+1)
		pages.Remove(0)
	}
	flags := os.O_RDWR | os.O_CREATE
	if full {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(w.path, flags, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	w.seq = 0 // half written until it is done
	out := &runWriter{f: f}
	err = scanPages(ctx, rd, target.Seq, pages, true, func(pgno uint32, data []byte, _ bool) error {
		return out.page(pgno, data)
	})
	if err == nil {
		err = out.flush()
	}
	if err == nil {
		err = f.Truncate(int64(target.DBSize) * history.PageSize)
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return err
	}
	// Never synced: the file is a cache, and none survives a restart.
	w.seq, w.size = target.Seq, target.DBSize
	if w.onCopy != nil {
		w.onCopy(full, int(pages.GetCardinality()))
	}
	return nil
}

// runWriter writes pages to a file, consecutive ones in one write.
type runWriter struct {
	f     *os.File
	buf   []byte
	first uint32
}

func (r *runWriter) page(pgno uint32, data []byte) error {
	n := uint32(len(r.buf) / history.PageSize)
	if len(r.buf) > 0 && (pgno != r.first+n || n == runPages) {
		if err := r.flush(); err != nil {
			return err
		}
	}
	if len(r.buf) == 0 {
		r.first = pgno
	}
	r.buf = append(r.buf, data...)
	return nil
}

func (r *runWriter) flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.f.WriteAt(r.buf, int64(r.first-1)*history.PageSize)
	r.buf = r.buf[:0]
	return err
}

// followEvery is how often at most a warm copy catches up.
const followEvery = 500 * time.Millisecond

// follow keeps the warm copy up to date while the database is open: after
// each new revision, at most every followEvery.
func (d *database) follow() {
	defer d.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	failing := false
	for {
		changed := d.opts.coord.Changed(d.name)
		if err := d.warm.catchUp(ctx, d.hist); err != nil && ctx.Err() == nil {
			if !failing {
				d.log.Warn("the warm copy cannot catch up with the store (retrying)", "err", err)
			}
			failing = true
		} else {
			failing = false
		}
		select {
		case <-d.stopped:
			return
		case <-changed:
		case <-time.After(10 * followEvery): // a retry after a failure, or a lost wake-up
		}
		select {
		case <-d.stopped:
			return
		case <-time.After(followEvery):
		}
	}
}

// settle makes the local copy fit to run a request under lease: built
// from the store under this lease's epoch (a new lease; or one taken again
// while a commit's fate was unknown: the store is the truth), and with no
// commit whose recording failed (recorded now, or dropped with the copy if
// the store fenced it). The caller holds mu.
func (d *database) settle(ctx context.Context, lease coord.Lease) error {
	again := d.behind.Load() && lease != d.lease
	d.fence, d.lease = history.Fence{Epoch: lease.Epoch()}, lease
	if d.admin == nil || d.localEpoch != lease.Epoch() || again {
		failpoint.Hit("server.lease-taken", d.name) // the lease is this node's, the local copy not open yet
		if err := d.materialize(ctx); err != nil {
			return err
		}
		d.localEpoch = lease.Epoch()
		failpoint.Hit("server.materialized", d.name)
	}
	if d.behind.Load() {
		// A client must not read a commit that may yet be dropped.
		if _, err := d.recordCommits(context.WithoutCancel(ctx)); err != nil {
			return d.recordFailed(err)
		}
		d.behind.Store(false)
	}
	return nil
}

// errNoLocal: this node has no current local copy to serve a bootstrap
// from; the history serves it.
var errNoLocal = errors.New("no current local copy of the database")

// recordFailed handles a failed recording of commits. Fenced: another node
// writes the database now, so what the store did not record is dropped with
// the local copy and the lease is given up; the client's retry applies it
// on the new writer. Otherwise the commit's fate is unknown until the next
// write settles it (pending).
func (d *database) recordFailed(err error) error {
	if errors.Is(err, history.ErrFenced) && d.opts.shared {
		d.log.Warn("fenced: dropping the local copy and its unrecorded commits", "err", err)
		d.closeLocal()
		d.removeLocal()
		if d.lease != nil {
			d.lease.Release()
			d.lease = nil
		}
		return err
	}
	d.behind.Store(true)
	return err
}
