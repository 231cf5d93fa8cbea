package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/server/history"
)

// pageSource gives the images of pages at one revision.
type pageSource interface {
	// page appends the image of pgno to dst. compressed reports a zstd
	// frame of the page (only when raw is false and the source has one).
	page(dst []byte, pgno uint32, raw bool) (out []byte, compressed bool, err error)
	// each calls fn for pages 1..n in order, raw.
	each(n uint32, fn func(pgno uint32, data []byte) error) error
	close() error
}

// historySource reads pages from the page history: any retained revision.
type historySource struct {
	rd  history.View
	seq int64
}

func (h *historySource) page(dst []byte, pgno uint32, raw bool) ([]byte, bool, error) {
	if !raw {
		return h.rd.StoredPageAt(dst, pgno, h.seq)
	}
	out, err := h.rd.PageAt(dst, pgno, h.seq)
	return out, false, err
}

func (h *historySource) each(n uint32, fn func(uint32, []byte) error) error {
	var buf []byte
	var err error
	for pg := uint32(1); pg <= n; pg++ {
		if buf, err = h.rd.PageAt(buf[:0], pg, h.seq); err != nil {
			return err
		}
		if err := fn(pg, buf); err != nil {
			return err
		}
	}
	return nil
}

func (h *historySource) close() error { return h.rd.Close() }

// liveSource reads the latest revision straight from the database files:
// the database file in long sequential reads, with the pages that the WAL
// holds for this revision read from their frames. It is what makes a
// bootstrap cost about what copying the file costs.
//
// A read transaction on a reader connection pins the files meanwhile:
// SQLite neither restarts the WAL nor backfills a frame into the database
// file while a reader may still need what it would overwrite, and every
// frame a checkpoint can backfill under it is one this revision reads from
// the WAL anyway.
//
// A slow client must not keep the WAL from being checkpointed for long: when
// a checkpoint is due (database.ckptDue), the source lets go of the files
// at its next read and serves the rest of the revision from the history,
// which has every page of it.
type liveSource struct {
	d    *database
	ctx  context.Context
	conn *sql.Conn
	tx   *sql.Tx
	seq  int64        // the revision
	hv   history.View // set once the source handed over to the history

	db   *os.File
	wal  *os.File       // nil when the revision has no WAL frames
	idx  *walfile.Index // the WAL's frames up to upTo
	upTo int            // the revision's last frame
}

// live opens a read transaction on the database at its latest revision and
// returns that revision. The writer lock is held only while the snapshot
// is taken, so that the revision, the WAL position and the snapshot agree.
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
	conn, err := readers.Conn(ctx)
	if err != nil {
		return nil, history.Revision{}, err
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		conn.Close()
		return nil, history.Revision{}, err
	}
	d.mu.Lock()
	if d.opts.shared && (d.admin == nil || d.behind.Load() || d.localSeq != d.hist.Latest().Seq) {
		// Not this node's current copy (another node writes the database,
		// or this one has not caught up): the history serves it.
		d.mu.Unlock()
		tx.Rollback()
		conn.Close()
		return nil, history.Revision{}, errNoLocal
	}
	// Record any commit not recorded yet (a history write that failed
	// after its commit), so that the revision covers every frame the read
	// transaction sees: a checkpoint may backfill those frames into the
	// database file while this reads it.
	_, err = d.recordCommits(ctx)
	var v int
	if err == nil {
		err = tx.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v) // starts the read transaction
	}
	rev, pos := d.hist.Latest(), d.walPos
	// Counted while the writer lock is held, so that a checkpoint, which
	// takes it, never waits for a reader it did not see.
	d.liveReaders.Add(1)
	d.mu.Unlock()
	l := &liveSource{d: d, ctx: ctx, conn: conn, tx: tx, seq: rev.Seq, upTo: pos.Frame}
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
	sc, err := walfile.NewScanner(l.wal, walfile.HeaderSize+int64(pos.Frame)*frameSize, walfile.Position{})
	if err != nil {
		return fmt.Errorf("index the WAL: %w", err)
	}
	l.idx = walfile.BuildIndex(nil)
	for {
		frames, err := sc.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("index the WAL: %w", err)
		}
		if err := l.idx.Add(frames...); err != nil {
			return fmt.Errorf("index the WAL: %w", err)
		}
	}
	if sc.Position() != pos {
		return fmt.Errorf("index the WAL: it ends at frame %d, the revision at frame %d", sc.Position().Frame, pos.Frame)
	}
	return nil
}

func (l *liveSource) page(dst []byte, pgno uint32, raw bool) ([]byte, bool, error) {
	start := len(dst)
	dst = append(dst, make([]byte, history.PageSize)...)
	if err := l.read(dst[start:], pgno, 1); err != nil {
		return dst[:start], false, err
	}
	return dst, false, nil
}

// runPages is how many pages each reads from the database file at once.
const runPages = 256

func (l *liveSource) each(n uint32, fn func(uint32, []byte) error) error {
	buf := make([]byte, runPages*history.PageSize)
	for first := uint32(1); first <= n; first += runPages {
		count := min(runPages, n-first+1)
		b := buf[:int(count)*history.PageSize]
		if err := l.read(b, first, count); err != nil {
			return err
		}
		for i := range count {
			if err := fn(first+i, b[int(i)*history.PageSize:int(i+1)*history.PageSize]); err != nil {
				return err
			}
		}
	}
	return nil
}

// read fills b with count pages from first on, as of the revision. Pages
// past the end of the database file read as zeros, as SQLite reads them.
func (l *liveSource) read(b []byte, first, count uint32) error {
	if l.hv == nil && l.d.ckptDue.Load() {
		if err := l.handOver(); err != nil {
			return err
		}
	}
	if l.hv != nil {
		for i := range count {
			p := b[int(i)*history.PageSize : int(i)*history.PageSize]
			if _, err := l.hv.PageAt(p, first+i, l.seq); err != nil {
				return err
			}
		}
		return nil
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
