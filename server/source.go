package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/server/history"
)

// pageSource gives the images of pages at one revision.
type pageSource interface {
	// pages calls fn with the image of every page of set, in order: raw,
	// or, when raw is false, as the source has it (compressed: a zstd
	// frame). data is only valid during fn.
	pages(ctx context.Context, set *roaring.Bitmap, raw bool, fn func(pgno uint32, data []byte, compressed bool) error) error
	close() error
}

// historySource reads pages from the page history: any retained revision.
type historySource struct {
	rd   history.View
	seq  int64
	done func() // gives back a bootstrap's history slot (historyBootstrap), or nil
}

func (h *historySource) pages(ctx context.Context, set *roaring.Bitmap, raw bool, fn func(uint32, []byte, bool) error) error {
	return scanPages(ctx, h.rd, h.seq, set, raw, fn)
}

func (h *historySource) close() error {
	err := h.rd.Close()
	if h.done != nil {
		h.done()
	}
	return err
}

// scanPages reads set from a history view in batches, decoding the stored
// zstd frames if raw.
func scanPages(ctx context.Context, rd history.View, seq int64, set *roaring.Bitmap, raw bool, fn func(uint32, []byte, bool) error) error {
	var buf []byte
	return rd.ScanPages(ctx, seq, set, func(pgno uint32, data []byte, compressed bool) error {
		if !raw || !compressed {
			return fn(pgno, data, compressed)
		}
		var err error
		if buf, err = history.DecodePage(buf[:0], data); err != nil {
			return fmt.Errorf("page %d at %d: %w", pgno, seq, err)
		}
		return fn(pgno, buf, false)
	})
}

// liveSource reads the latest revision straight from the database files:
// the database file in long sequential reads, with the pages that the WAL
// holds for this revision read from their frames. It is what makes a
// bootstrap cost about what copying the file costs.
//
// The files stay as the revision needs them meanwhile: only checkpoint()
// backfills frames into the database file or lets the WAL restart, and it
// does not run while a live source exists (liveReaders, counted under mu,
// which checkpoint takes). Frames the writer appends after the revision's
// own are never read. A read transaction on a reader connection pins the
// files too, as SQLite's own guard.
//
// A slow client must not keep the WAL from being checkpointed for long: when
// a checkpoint is due (database.ckptDue), the source lets go of the files
// at its next read and serves the rest of the revision from the history,
// which has every page of it.
type liveSource struct {
	d    *database
	ctx  context.Context
	conn *sql.Conn
	slot func() // gives conn's bootstrap slot back (readerConn)
	tx   *sql.Tx
	seq  int64        // the revision
	hv   history.View // set once the source handed over to the history

	db   *os.File
	wal  *os.File       // nil when the revision has no WAL frames
	idx  *walfile.Index // the WAL's frames up to upTo
	upTo int            // the revision's last frame
}

// live opens a source of the database's latest recorded revision and
// returns that revision. mu is held only while the revision and its WAL
// position are read (they change together, under mu) and the source is
// counted.
func (d *database) live(ctx context.Context) (*liveSource, history.Revision, error) {
	if d.ckptDue.Load() {
		return nil, history.Revision{}, errCheckpointDue
	}
	d.mu.Lock()
	readers := d.readers
	d.mu.Unlock()
	if readers == nil {
		return nil, history.Revision{}, errNoLocal
	}
	conn, slot, err := d.readerConn(ctx, readers, useBootstrap, bootstrapReaderWait)
	if err != nil {
		return nil, history.Revision{}, err
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		conn.Close()
		slot()
		return nil, history.Revision{}, err
	}
	d.mu.Lock()
	if d.opts.shared && (d.admin == nil || d.behind.Load() || d.localSeq != d.hist.Latest().Seq) {
		// Not this node's current copy (another node writes the database,
		// or this one has not caught up): the history serves it.
		d.mu.Unlock()
		tx.Rollback()
		conn.Close()
		slot()
		return nil, history.Revision{}, errNoLocal
	}
	// Record a commit whose recording failed, if any (see catchUp), so
	// that the bootstrap has every acknowledged commit. Commits of a
	// statement still running on the writer (which does not hold mu while
	// it runs) are recorded when it ends: the revision served is the
	// latest recorded one, read from the database file and the WAL up to
	// its own frame, whatever the writer appends after it.
	if d.behind.Load() {
		d.record(ctx)
	}
	var v int
	err = tx.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v) // starts the read transaction
	rev, pos := d.hist.Latest(), d.walPos
	if pos == d.backfilled {
		// The file has every page of the revision, and the next write may
		// restart the WAL, overwriting the frames it would read.
		pos = walfile.Position{}
	}
	// Counted under mu, so that a checkpoint, which takes it, never waits
	// for a reader it did not see.
	d.liveReaders.Add(1)
	d.mu.Unlock()
	l := &liveSource{d: d, ctx: ctx, conn: conn, slot: slot, tx: tx, seq: rev.Seq, upTo: pos.Frame}
	if err == nil {
		err = l.openFiles(pos)
	}
	if err != nil {
		l.release()
		return nil, rev, err
	}
	return l, rev, nil
}

// errCheckpointDue: bootstraps read the history until the due checkpoint
// is done.
var errCheckpointDue = errors.New("a checkpoint is due")

// release lets go of the files and the read transaction.
func (l *liveSource) release() error {
	if l.tx == nil {
		return nil
	}
	// The files first: the read transaction is what keeps them right.
	l.closeFiles()
	err := l.tx.Rollback()
	l.conn.Close()
	l.slot()
	l.tx = nil
	l.d.liveReaders.Add(-1)
	return err
}

// handOver switches to the history for the rest of the revision.
func (l *liveSource) handOver() error {
	hv, err := l.d.hist.Reader(l.ctx)
	if err != nil {
		return err
	}
	l.hv = hv
	return l.release()
}

// openFiles opens the database file and indexes the WAL's frames up to pos,
// which must end exactly there.
func (l *liveSource) openFiles(pos walfile.Position) error {
	path := filepath.Join(l.d.dir, mainFile)
	var err error
	if l.db, err = os.Open(path); err != nil {
		return err
	}
	if pos.Frame == 0 {
		return nil
	}
	if l.wal, err = os.Open(path + "-wal"); err != nil {
		return err
	}
	frameSize := int64(walfile.FrameHeaderSize + history.PageSize)
	l.idx = walfile.BuildIndex(nil)
	// Unlike recordCommits, a log that ends early (a bad frame before pos)
	// is an error: the revision's frames are not all there.
	end, err := walfile.Scan(l.wal, walfile.HeaderSize+int64(pos.Frame)*frameSize, walfile.Position{}, func(frames []walfile.Frame) error {
		return l.idx.Add(frames...)
	})
	if err != nil {
		return fmt.Errorf("index the WAL: %w", err)
	}
	if end != pos {
		return fmt.Errorf("index the WAL: it ends at frame %d, the revision at frame %d", end.Frame, pos.Frame)
	}
	return nil
}

// runPages is how many pages pages reads from the database file at once.
const runPages = 256

// pages reads runs of consecutive pages of set with one read each; the
// images are raw whatever raw asks.
func (l *liveSource) pages(ctx context.Context, set *roaring.Bitmap, _ bool, fn func(uint32, []byte, bool) error) error {
	// The source is open and reads nothing yet: a checkpoint here must
	// leave the files as the revision needs them.
	failpoint.Hit("server.live-read", l.d.name)
	buf := make([]byte, runPages*history.PageSize)
	var first, count uint32
	flush := func() error {
		if count == 0 {
			return nil
		}
		b := buf[:int(count)*history.PageSize]
		if err := l.read(ctx, b, first, count); err != nil {
			return err
		}
		for i := range count {
			if err := fn(first+i, b[int(i)*history.PageSize:int(i+1)*history.PageSize], false); err != nil {
				return err
			}
		}
		count = 0
		return nil
	}
	it := set.Iterator()
	for it.HasNext() {
		pg := it.Next()
		if count > 0 && (pg != first+count || count == runPages) {
			if err := flush(); err != nil {
				return err
			}
		}
		if count == 0 {
			first = pg
		}
		count++
	}
	return flush()
}

// read fills b with count pages from first on, as of the revision. Pages
// past the end of the database file read as zeros, as SQLite reads them.
func (l *liveSource) read(ctx context.Context, b []byte, first, count uint32) error {
	if l.hv == nil && l.d.ckptDue.Load() {
		if err := l.handOver(); err != nil {
			return err
		}
	}
	if l.hv != nil {
		run := roaring.New()
		run.AddRange(uint64(first), uint64(first+count))
		return scanPages(ctx, l.hv, l.seq, run, true, func(pgno uint32, data []byte, _ bool) error {
			copy(b[int(pgno-first)*history.PageSize:], data)
			return nil
		})
	}
	n, err := l.db.ReadAt(b, int64(first-1)*history.PageSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read pages %d-%d: %w", first, first+count-1, err)
	}
	clear(b[n:])
	if l.idx == nil {
		return nil
	}
	for i := range count {
		f, ok := l.idx.Lookup(first+i, l.upTo)
		if !ok {
			continue
		}
		p := b[int(i)*history.PageSize : int(i)*history.PageSize]
		if _, err := walfile.ReadPage(l.wal, f, history.PageSize, p); err != nil {
			return fmt.Errorf("read page %d from the WAL: %w", first+i, err)
		}
	}
	return nil
}

func (l *liveSource) closeFiles() {
	if l.db != nil {
		l.db.Close()
	}
	if l.wal != nil {
		l.wal.Close()
	}
}

func (l *liveSource) close() error {
	err := l.release()
	if l.hv != nil {
		err = errors.Join(err, l.hv.Close())
	}
	return err
}
