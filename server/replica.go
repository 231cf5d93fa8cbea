package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

// In a cluster the page history lives in the shared store and the local
// database file is only the writer's working copy: built from the store
// when this node takes the lease (materialize), dropped when the store
// fenced it or the node stops, and never trusted after a restart. Readers
// on any node serve pulls from the store.

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

// removeLocal deletes the local database files (the caller closed them).
func (d *database) removeLocal() {
	path := filepath.Join(d.dir, mainFile)
	for _, p := range []string{path, path + "-wal", path + "-shm", path + ".building"} {
		os.Remove(p)
	}
	d.snapshots.removeAll()
	d.localEpoch, d.localSeq, d.walPos = 0, 0, walfile.Position{}
	d.behind.Store(false)
}

// materialize rebuilds the local file as the store's latest revision. The
// caller holds mu and the lease, so no other node appends meanwhile.
func (d *database) materialize(ctx context.Context) error {
	d.closeLocal()
	d.removeLocal()
	rev := d.hist.Latest()
	path := filepath.Join(d.dir, mainFile)
	if err := d.writeImage(ctx, path+".building", rev); err != nil {
		os.Remove(path + ".building")
		return fmt.Errorf("build the local copy of revision %d: %w", rev.Seq, err)
	}
	if err := os.Rename(path+".building", path); err != nil {
		return err
	}
	if err := d.openLocal(ctx); err != nil {
		d.closeLocal()
		d.removeLocal()
		return err
	}
	d.localSeq = rev.Seq
	d.log.Info("built the local copy from the store", "revision", rev.Seq, "pages", rev.DBSize)
	return nil
}

// writeImage writes the database file of revision rev from the history.
func (d *database) writeImage(ctx context.Context, path string, rev history.Revision) error {
	rd, err := d.hist.Reader(ctx)
	if err != nil {
		return err
	}
	defer rd.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var buf []byte
	for pg := uint32(1); pg <= rev.DBSize; pg++ {
		if buf, err = rd.PageAt(buf[:0], pg, rev.Seq); err != nil {
			return err
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Close()
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
		if err := d.materialize(ctx); err != nil {
			return err
		}
		d.localEpoch = lease.Epoch()
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
