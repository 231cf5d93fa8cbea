package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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
	rd  *history.Reader
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

// liveSource reads the latest revision straight from the database, in a
// read transaction: one sequential scan of sqlite_dbpage instead of a
// history lookup and a decompression per page. It is what makes a
// bootstrap cost about what copying the file costs.
type liveSource struct {
	d    *database
	conn *sql.Conn
	tx   *sql.Tx
	one  *sql.Stmt
}

// live opens a read transaction on the database at its latest revision and
// returns that revision. The writer lock is held only while the snapshot
// is taken, so that the revision and the snapshot agree.
func (d *database) live(ctx context.Context) (*liveSource, history.Revision, error) {
	conn, err := d.readers.Conn(ctx)
	if err != nil {
		return nil, history.Revision{}, err
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		conn.Close()
		return nil, history.Revision{}, err
	}
	d.mu.Lock()
	var v int
	err = tx.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v) // starts the read transaction
	rev := d.hist.Latest()
	d.mu.Unlock()
	if err != nil {
		tx.Rollback()
		conn.Close()
		return nil, rev, err
	}
	one, err := tx.PrepareContext(ctx, "SELECT data FROM sqlite_dbpage WHERE pgno = ?")
	if err != nil {
		tx.Rollback()
		conn.Close()
		return nil, rev, err
	}
	d.liveReaders.Add(1)
	return &liveSource{d: d, conn: conn, tx: tx, one: one}, rev, nil
}

func (l *liveSource) page(dst []byte, pgno uint32, raw bool) ([]byte, bool, error) {
	var data []byte
	err := l.one.QueryRow(pgno).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) || err == nil && len(data) != history.PageSize {
		return append(dst, make([]byte, history.PageSize)...), false, nil
	}
	if err != nil {
		return dst, false, fmt.Errorf("read page %d: %w", pgno, err)
	}
	return append(dst, data...), false, nil
}

func (l *liveSource) each(n uint32, fn func(uint32, []byte) error) error {
	rows, err := l.tx.Query("SELECT pgno, data FROM sqlite_dbpage WHERE pgno <= ?", n)
	if err != nil {
		return err
	}
	defer rows.Close()
	var data sql.RawBytes
	next := uint32(1)
	for rows.Next() {
		var pg uint32
		if err := rows.Scan(&pg, &data); err != nil {
			return err
		}
		for ; next < pg; next++ { // a hole reads as zeros, as SQLite reads it
			if err := fn(next, make([]byte, history.PageSize)); err != nil {
				return err
			}
		}
		if err := fn(pg, data); err != nil {
			return err
		}
		next = pg + 1
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for ; next <= n; next++ {
		if err := fn(next, make([]byte, history.PageSize)); err != nil {
			return err
		}
	}
	return nil
}

func (l *liveSource) close() error {
	l.one.Close()
	err := l.tx.Rollback()
	l.conn.Close()
	l.d.liveReaders.Add(-1)
	return err
}
