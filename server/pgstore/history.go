package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/klauspost/compress/zstd"

	"github.com/syncdb/syncdb/server/history"
)

var encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

// backend is one database's history in the store.
type backend struct {
	c  *Cluster
	st *dbState
}

var _ history.Backend = (*backend)(nil)

func (b *backend) Initialized() bool {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.latest.Seq > 0
}

func (b *backend) ID() string {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.historyID
}

func (b *backend) Latest() history.Revision {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.latest
}

func (b *backend) Horizon() int64 {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.horizon
}

func (b *backend) Cursor() history.Cursor {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.cursor
}

func (b *backend) dbID() int64 {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.id
}

// Check validates seq against the store's counter and horizon: this node's
// knowledge may lag behind another node's appends and compactions.
func (b *backend) Check(ctx context.Context, seq int64) (history.Revision, error) {
	b.st.mu.Lock()
	latest, horizon, id := b.st.latest, b.st.horizon, b.st.id
	b.st.mu.Unlock()
	if seq == latest.Seq && seq >= horizon {
		return latest, nil
	}
	var (
		l, size, h int64
		revSize    *int64
	)
	start := time.Now()
	err := b.c.pool.QueryRow(ctx, `SELECT d.latest, d.db_size, d.horizon, (SELECT r.db_size FROM syncdb_rev r WHERE r.db_id = d.id AND r.seq = $2)
		FROM syncdb_db d WHERE d.id = $1`, id, seq).Scan(&l, &size, &h, &revSize)
	b.c.m.observe("read", start, err)
	if err != nil {
		return history.Revision{}, fmt.Errorf("pgstore: check revision %d: %w", seq, err)
	}
	b.st.mu.Lock()
	b.st.setLatest(history.Revision{Seq: l, DBSize: uint32(size)})
	b.st.horizon = max(b.st.horizon, h)
	b.st.mu.Unlock()
	switch {
	case seq > l:
		return history.Revision{}, fmt.Errorf("%w: %d > %d", history.ErrFuture, seq, l)
	case seq < h || revSize == nil:
		return history.Revision{}, fmt.Errorf("%w: %d < %d", history.ErrTooOld, seq, h)
	}
	return history.Revision{Seq: seq, DBSize: uint32(*revSize)}, nil
}

// Refresh reads the latest revision from the store.
func (b *backend) Refresh(ctx context.Context) error {
	var l, size, h int64
	start := time.Now()
	err := b.c.pool.QueryRow(ctx, `SELECT latest, db_size, horizon FROM syncdb_db WHERE id = $1`, b.dbID()).Scan(&l, &size, &h)
	b.c.m.observe("read", start, err)
	if err != nil {
		return fmt.Errorf("pgstore: read the latest revision of %q: %w", b.st.name, err)
	}
	b.st.mu.Lock()
	b.st.setLatest(history.Revision{Seq: l, DBSize: uint32(size)})
	b.st.horizon = max(b.st.horizon, h)
	b.st.mu.Unlock()
	return nil
}

// Init creates the database in the store with its base revision. If another
// node created it first, Init loads that one and returns history.ErrExists.
func (b *backend) Init(ctx context.Context, id string, base history.Commit, cur history.Cursor, unixMS int64) error {
	if b.Initialized() {
		return errors.New("history already initialized")
	}
	pages, err := collect(base, 1, nil)
	if err != nil {
		return err
	}
	var dbID int64
	created := false
	start := time.Now()
	err = pgx.BeginFunc(ctx, b.c.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO syncdb_db(name, history_id, latest, db_size) VALUES ($1, $2, 1, $3)
			ON CONFLICT (name) DO NOTHING RETURNING id`, b.st.name, id, base.DBSize).Scan(&dbID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		created = true
		if _, err := tx.Exec(ctx, `INSERT INTO syncdb_rev(db_id, seq, db_size, unix_ms, epoch) VALUES ($1, 1, $2, $3, 0)`, dbID, base.DBSize, unixMS); err != nil {
			return err
		}
		return insertPages(ctx, tx, dbID, pages)
	})
	b.c.m.observe("append", start, err)
	if err != nil {
		return fmt.Errorf("pgstore: create database %q: %w", b.st.name, err)
	}
	if !created {
		if err := b.c.load(ctx, b.st); err != nil {
			return err
		}
		return history.ErrExists
	}
	b.st.mu.Lock()
	b.st.id, b.st.historyID, b.st.horizon, b.st.cursor, b.st.base = dbID, id, 1, cur, 1
	b.st.setLatest(history.Revision{Seq: 1, DBSize: base.DBSize})
	b.st.mu.Unlock()
	b.c.mu.Lock()
	b.c.byID[dbID] = b.st
	b.c.mu.Unlock()
	return nil
}

// pageRows are pages to insert, as the columns of unnest().
type pageRows struct {
	pgno, seq []int64
	zstd      []bool
	data      [][]byte
	bytes     int
}

// collect encodes the pages of c, to be recorded at seq, into rows.
func collect(c history.Commit, seq int64, rows *pageRows) (*pageRows, error) {
	if rows == nil {
		rows = &pageRows{}
	}
	err := c.Pages(func(p history.Page) error {
		if len(p.Data) != history.PageSize {
			return fmt.Errorf("page %d has %d bytes", p.Pgno, len(p.Data))
		}
		// As the file history: a zstd frame when it saves an eighth.
		enc := encoder.EncodeAll(p.Data, nil)
		z := len(enc) < history.PageSize*7/8
		if !z {
			enc = append([]byte(nil), p.Data...)
		}
		rows.pgno = append(rows.pgno, int64(p.Pgno))
		rows.seq = append(rows.seq, seq)
		rows.zstd = append(rows.zstd, z)
		rows.data = append(rows.data, enc)
		rows.bytes += len(enc)
		return nil
	})
	return rows, err
}

// insertChunk bounds the bytes of page images sent in one statement.
const insertChunk = 4 << 20

const insertPagesSQL = `INSERT INTO syncdb_page(db_id, pgno, seq, zstd, data)
	SELECT $1, u.pgno, u.seq, u.z, u.data FROM unnest($2::bigint[], $3::bigint[], $4::bool[], $5::bytea[]) AS u(pgno, seq, z, data)`

// insertPages inserts rows in statements of at most insertChunk bytes.
func insertPages(ctx context.Context, tx pgx.Tx, dbID int64, r *pageRows) error {
	for lo := 0; lo < len(r.pgno); {
		hi, n := lo, 0
		for hi < len(r.pgno) && (hi == lo || n+len(r.data[hi]) <= insertChunk) {
			n += len(r.data[hi])
			hi++
		}
		if _, err := tx.Exec(ctx, insertPagesSQL, dbID, r.pgno[lo:hi], r.seq[lo:hi], r.zstd[lo:hi], r.data[lo:hi]); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// appendSQL records a push in one statement, one round trip: the UPDATE is
// the fence (the epoch must still be the writer's) and the compare-and-set
// of the counter (latest must be what the writer built on); the inserts and
// the notification only happen if it matched a row.
const appendSQL = `WITH f AS (
	UPDATE syncdb_db SET latest = $3 + $4, db_size = $5 WHERE id = $1 AND epoch = $2 AND latest = $3 RETURNING id
), r AS (
	INSERT INTO syncdb_rev(db_id, seq, db_size, unix_ms, epoch)
	SELECT $1, u.seq, u.size, $6, $2 FROM f, unnest($7::bigint[], $8::bigint[]) AS u(seq, size)
), p AS (
	INSERT INTO syncdb_page(db_id, pgno, seq, zstd, data)
	SELECT $1, u.pgno, u.seq, u.z, u.data FROM f, unnest($9::bigint[], $10::bigint[], $11::bool[], $12::bytea[]) AS u(pgno, seq, z, data)
), n AS (
	SELECT pg_notify('syncdb_rev', $1::text || ':' || ($3 + $4)::text || ':' || $5::text) FROM f
)
SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM n)`

// Append records commits as the revisions after base, fenced by f.Epoch. A push that cannot be told apart from a
// committed one (the connection broke during the statement) is resolved by
// the next Append of the same commits: the compare-and-set fails, and the
// revision after base tells whether it was this writer's.
func (b *backend) Append(ctx context.Context, f history.Fence, commits []history.Commit, cur history.Cursor, unixMS int64) (history.Revision, error) {
	b.st.mu.Lock()
	base, id := history.Revision{Seq: b.st.base}, b.st.id
	b.st.mu.Unlock()
	if base.Seq == 0 {
		return base, errors.New("history not initialized")
	}
	rows := &pageRows{}
	seqs := make([]int64, len(commits))
	sizes := make([]int64, len(commits))
	next := base
	for i, c := range commits {
		next = history.Revision{Seq: base.Seq + int64(i) + 1, DBSize: c.DBSize}
		seqs[i], sizes[i] = next.Seq, int64(c.DBSize)
		if _, err := collect(c, next.Seq, rows); err != nil {
			return base, err
		}
	}
	n := int64(len(commits))
	start := time.Now()
	var matched int64
	var err error
	if rows.bytes <= insertChunk {
		var notified int64
		err = b.c.pool.QueryRow(ctx, appendSQL, id, f.Epoch, base.Seq, n, next.DBSize, unixMS,
			seqs, sizes, rows.pgno, rows.seq, rows.zstd, rows.data).Scan(&matched, &notified)
	} else {
		// Too big for one statement: a transaction whose first statement
		// takes the fence and locks the row.
		err = pgx.BeginFunc(ctx, b.c.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `UPDATE syncdb_db SET latest = $3 + $4, db_size = $5 WHERE id = $1 AND epoch = $2 AND latest = $3`,
				id, f.Epoch, base.Seq, n, next.DBSize)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			matched = 1
			if _, err := tx.Exec(ctx, `INSERT INTO syncdb_rev(db_id, seq, db_size, unix_ms, epoch)
				SELECT $1, u.seq, u.size, $4, $5 FROM unnest($2::bigint[], $3::bigint[]) AS u(seq, size)`, id, seqs, sizes, unixMS, f.Epoch); err != nil {
				return err
			}
			if err := insertPages(ctx, tx, id, rows); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `SELECT pg_notify('syncdb_rev', $1)`,
				strconv.FormatInt(id, 10)+":"+strconv.FormatInt(next.Seq, 10)+":"+strconv.FormatUint(uint64(next.DBSize), 10))
			return err
		})
	}
	b.c.m.observe("append", start, err)
	if err != nil {
		return base, fmt.Errorf("pgstore: append to %q: %w", b.st.name, err)
	}
	if matched == 0 {
		if err := b.resolve(ctx, id, f, base, next); err != nil {
			return base, err
		}
	}
	b.st.mu.Lock()
	b.st.setLatest(next)
	b.st.base = next.Seq
	b.st.cursor = cur
	b.st.mu.Unlock()
	return next, nil
}

// resolve explains an append whose fence or compare-and-set did not match:
// either an earlier attempt of the same append committed (its revision
// base+1 carries this writer's epoch), or another node took over.
func (b *backend) resolve(ctx context.Context, id int64, f history.Fence, base, next history.Revision) error {
	var epoch, latest int64
	var revEpoch *int64
	err := b.c.pool.QueryRow(ctx, `SELECT d.epoch, d.latest, (SELECT r.epoch FROM syncdb_rev r WHERE r.db_id = d.id AND r.seq = $2)
		FROM syncdb_db d WHERE d.id = $1`, id, base.Seq+1).Scan(&epoch, &latest, &revEpoch)
	if err != nil {
		return fmt.Errorf("pgstore: append to %q: %w", b.st.name, err)
	}
	if revEpoch != nil && *revEpoch == f.Epoch && f.Epoch == epoch && latest >= next.Seq {
		return nil // an earlier attempt committed
	}
	b.c.m.fenced.Inc()
	return fmt.Errorf("%w (database %q: epoch %d, store at epoch %d, revision %d)", history.ErrFenced, b.st.name, f.Epoch, epoch, latest)
}

// Sync does nothing: an append is durable once PostgreSQL committed it.
func (b *backend) Sync(context.Context) error { return nil }

// Close does nothing: the cluster owns the connections.
func (b *backend) Close() error { return nil }

// Compact moves the horizon to h and deletes the page versions that no
// revision >= h reads, a page range at a time.
func (b *backend) Compact(ctx context.Context, h int64) (int64, error) {
	id := b.dbID()
	if h > b.Latest().Seq {
		h = b.Latest().Seq
	}
	if h <= b.Horizon() {
		return 0, nil
	}
	if _, err := b.c.pool.Exec(ctx, `UPDATE syncdb_db SET horizon = $2 WHERE id = $1 AND horizon < $2`, id, h); err != nil {
		return 0, err
	}
	b.st.mu.Lock()
	b.st.horizon = max(b.st.horizon, h)
	b.st.mu.Unlock()
	if _, err := b.c.pool.Exec(ctx, `DELETE FROM syncdb_rev WHERE db_id = $1 AND seq < $2`, id, h); err != nil {
		return 0, err
	}
	var maxPg int64
	if err := b.c.pool.QueryRow(ctx, `SELECT coalesce(max(pgno), 0) FROM syncdb_page WHERE db_id = $1`, id).Scan(&maxPg); err != nil {
		return 0, err
	}
	const step = 4096
	var deleted int64
	for lo := int64(0); lo <= maxPg; lo += step {
		tag, err := b.c.pool.Exec(ctx, `DELETE FROM syncdb_page p WHERE p.db_id = $1 AND p.pgno >= $2 AND p.pgno < $3 AND p.seq < $4
			AND EXISTS (SELECT 1 FROM syncdb_page n WHERE n.db_id = p.db_id AND n.pgno = p.pgno AND n.seq > p.seq AND n.seq <= $4)`,
			id, lo, lo+step, h)
		if err != nil {
			return deleted, err
		}
		deleted += tag.RowsAffected()
	}
	return deleted, nil
}

// SeqAtOrBefore returns the newest revision committed at or before unixMS.
func (b *backend) SeqAtOrBefore(ctx context.Context, unixMS int64) (int64, error) {
	var seq int64
	err := b.c.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM syncdb_rev WHERE db_id = $1 AND unix_ms <= $2`, b.dbID(), unixMS).Scan(&seq)
	return seq, err
}

// Reader opens a read-only snapshot of the store.
func (b *backend) Reader(ctx context.Context) (history.View, error) {
	start := time.Now()
	tx, err := b.c.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	b.c.m.observe("read", start, err)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read %q: %w", b.st.name, err)
	}
	return &view{b: b, ctx: ctx, tx: tx, id: b.dbID()}, nil
}

// view is a read-only repeatable-read transaction.
type view struct {
	b   *backend
	ctx context.Context
	tx  pgx.Tx
	id  int64
	buf []byte
}

const pageAtSQL = `SELECT zstd, data FROM syncdb_page WHERE db_id = $1 AND pgno = $2 AND seq <= $3 ORDER BY seq DESC LIMIT 1`

func (v *view) stored(pgno uint32, seq int64) (found, compressed bool, err error) {
	start := time.Now()
	err = v.tx.QueryRow(v.ctx, pageAtSQL, v.id, int64(pgno), seq).Scan(&compressed, &v.buf)
	v.b.c.m.observe("read", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("pgstore: read page %d at %d: %w", pgno, seq, err)
	}
	return true, compressed, nil
}

func (v *view) PageAt(dst []byte, pgno uint32, seq int64) ([]byte, error) {
	found, compressed, err := v.stored(pgno, seq)
	switch {
	case err != nil:
		return dst, err
	case !found:
		return append(dst, make([]byte, history.PageSize)...), nil
	case !compressed:
		return append(dst, v.buf...), nil
	}
	out, err := history.DecodePage(dst, v.buf)
	if err != nil {
		return dst, fmt.Errorf("pgstore: page %d at %d: %w", pgno, seq, err)
	}
	return out, nil
}

// scanBatch is how many pages one query of ScanPages asks for: 32 MiB of
// page images at most, which the query streams (one row in memory at a
// time), so a bootstrap costs a round trip per 8192 pages.
const scanBatch = 8192

// scanSQL reads the pages of $2 as of revision $3, one index probe per page
// (the newest version at or below $3), whatever the number of older
// versions. The page numbers are sorted before the join, so the planner
// keeps their order without sorting the images.
const scanSQL = `SELECT g.pgno, s.zstd, s.data
	FROM (SELECT pgno FROM unnest($2::bigint[]) AS u(pgno) ORDER BY pgno) AS g
	LEFT JOIN LATERAL (SELECT p.zstd, p.data FROM syncdb_page p
		WHERE p.db_id = $1 AND p.pgno = g.pgno AND p.seq <= $3 ORDER BY p.seq DESC LIMIT 1) AS s ON true
	ORDER BY g.pgno`

// ScanPages reads the pages in batches of scanBatch, one query each.
func (v *view) ScanPages(ctx context.Context, seq int64, pages *roaring.Bitmap, fn func(uint32, []byte, bool) error) error {
	zeros := make([]byte, history.PageSize)
	batch := make([]int64, 0, min(scanBatch, pages.GetCardinality()))
	it := pages.Iterator()
	for it.HasNext() {
		batch = batch[:0]
		for it.HasNext() && len(batch) < scanBatch {
			batch = append(batch, int64(it.Next()))
		}
		if err := v.scan(ctx, seq, batch, zeros, fn); err != nil {
			return err
		}
	}
	return nil
}

func (v *view) scan(ctx context.Context, seq int64, batch []int64, zeros []byte, fn func(uint32, []byte, bool) error) error {
	start := time.Now()
	rows, err := v.tx.Query(ctx, scanSQL, v.id, batch, seq)
	if err != nil {
		v.b.c.m.observe("read", start, err)
		return fmt.Errorf("pgstore: read pages as of %d: %w", seq, err)
	}
	defer rows.Close()
	var (
		pgno int64
		z    *bool
		data pgtype.DriverBytes // valid until the next row: no copy
		n    int
	)
	for rows.Next() {
		if err := rows.Scan(&pgno, &z, &data); err != nil {
			return fmt.Errorf("pgstore: read pages as of %d: %w", seq, err)
		}
		if n >= len(batch) || pgno != batch[n] {
			return fmt.Errorf("pgstore: read pages as of %d: got page %d out of order", seq, pgno)
		}
		n++
		if data == nil { // never written
			err = fn(uint32(pgno), zeros, false)
		} else {
			err = fn(uint32(pgno), data, *z)
		}
		if err != nil {
			return err
		}
	}
	v.b.c.m.observe("read", start, rows.Err())
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgstore: read pages as of %d: %w", seq, err)
	}
	if n != len(batch) {
		return fmt.Errorf("pgstore: read pages as of %d: %d of %d pages", seq, n, len(batch))
	}
	return nil
}

func (v *view) StoredPageAt(dst []byte, pgno uint32, seq int64) ([]byte, bool, error) {
	found, compressed, err := v.stored(pgno, seq)
	switch {
	case err != nil:
		return dst, false, err
	case !found:
		return append(dst, make([]byte, history.PageSize)...), false, nil
	}
	return append(dst, v.buf...), compressed, nil
}

func (v *view) ChangedBetween(ctx context.Context, from, to int64) (*roaring.Bitmap, error) {
	start := time.Now()
	rows, err := v.tx.Query(ctx, `SELECT DISTINCT pgno FROM syncdb_page WHERE db_id = $1 AND seq > $2 AND seq <= $3`, v.id, from, to)
	if err != nil {
		v.b.c.m.observe("read", start, err)
		return nil, err
	}
	defer rows.Close()
	bm := roaring.New()
	for rows.Next() {
		var p int64
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		bm.Add(uint32(p))
	}
	v.b.c.m.observe("read", start, rows.Err())
	return bm, rows.Err()
}

func (v *view) Close() error {
	return v.tx.Rollback(context.WithoutCancel(v.ctx))
}
