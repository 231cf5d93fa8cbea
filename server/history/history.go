// Package history is the server's durable page history: for every revision of
// a database it can produce the image of any page as of that revision.
//
// A revision is one committed write transaction of the served database. The
// history stores, for each revision, the images of the pages that transaction
// wrote and the database size after it. Revision 1 (the base) holds every page
// of the database as it was when the history was created. The image of page p
// at revision r is therefore the entry for p with the greatest revision <= r.
//
// Compaction moves the horizon forward: every entry that is shadowed by a newer
// entry at or below the horizon is deleted, so the history at the horizon is a
// complete copy of the database and later revisions are deltas. Revisions
// below the horizon can no longer be served (ErrTooOld).
//
// The history lives in its own SQLite file, separate from the served database,
// so that it survives checkpoints of the served database's WAL: the server
// records a commit here before it lets that commit leave the WAL.
package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
	_ "modernc.org/sqlite" // the database/sql driver

	"github.com/syncdb/syncdb/internal/walfile"
)

// PageSize is the only page size the sync protocol allows.
const PageSize = 4096

// ErrTooOld reports a revision older than the history's horizon.
var ErrTooOld = errors.New("revision is older than the retained history")

// ErrFuture reports a revision newer than the latest one.
var ErrFuture = errors.New("revision is newer than the latest one")

// Revision describes one revision.
type Revision struct {
	Seq    int64  // 1 = base, increasing by one per commit
	DBSize uint32 // database size in pages after this revision
}

// Cursor is where the history has read the served database's WAL up to, so
// that recording resumes there after a restart: the walfile.Position after
// the last commit recorded (one type, so that no conversion can drop a
// field).
type Cursor = walfile.Position

// Page is one page image written by a commit.
type Page struct {
	Pgno uint32
	Data []byte // PageSize bytes
}

// Commit is one committed transaction to record. Pages calls fn for every
// page image the transaction wrote; it streams them so that recording a large
// transaction does not hold all of it in memory.
type Commit struct {
	DBSize uint32
	Pages  func(fn func(Page) error) error
}

// Store is an open history. Its methods are safe for concurrent use: writes
// are serialized on one connection of their own, so that a write never
// waits for a free connection while read views hold the others; reads run
// concurrently on a pool of read-only connections.
type Store struct {
	path string
	w    *sql.DB    // the writer: one connection
	db   *sql.DB    // read views, at most maxReaders at once
	wmu  sync.Mutex // serializes writers
	smu  sync.RWMutex
	meta state
	enc  *zstd.Encoder
}

type state struct {
	id      string
	latest  Revision
	horizon int64
	cursor  Cursor
}

const schema = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revisions(seq INTEGER PRIMARY KEY, db_size INTEGER NOT NULL, unix_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pages(pgno INTEGER NOT NULL, seq INTEGER NOT NULL, zstd INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(pgno, seq));
CREATE INDEX IF NOT EXISTS pages_by_seq ON pages(seq, pgno);
`

// Open opens (creating if needed) the history at path. A new history is
// empty: the caller records the base with Init.
func Open(path, vfs string) (*Store, error) {
	params := "_pragma=busy_timeout(10000)"
	if vfs != "" {
		params += "&vfs=" + vfs
	}
	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=synchronous(NORMAL)&_txlock=immediate&"+params)
	if err != nil {
		return nil, fmt.Errorf("open history: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	// 16 KiB pages hold three or more page images each, without overflow
	// chains. The page size must be set before WAL mode creates the file
	// (it is ignored for an existing file).
	if _, err := w.Exec("PRAGMA page_size = 16384; PRAGMA journal_mode = WAL"); err != nil {
		w.Close()
		return nil, fmt.Errorf("open history: %w", err)
	}
	if _, err := w.Exec(schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("create history schema: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=query_only(1)&"+params)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open history: %w", err)
	}
	db.SetMaxOpenConns(maxReaders)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	s := &Store{path: path, w: w, db: db, enc: enc}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// maxReaders bounds the read connections: read views beyond it wait for
// one (or for their context).
const maxReaders = 16

// Path is the history's file.
func (s *Store) Path() string { return s.path }

// Close closes the history. With synchronous=NORMAL, closing checkpoints the
// history's own WAL, which makes every recorded revision durable.
func (s *Store) Close() error {
	// The writer last: the last connection to close checkpoints.
	return errors.Join(s.db.Close(), s.w.Close())
}

func (s *Store) load() error {
	rows, err := s.db.Query(`SELECT key, value FROM meta`)
	if err != nil {
		return fmt.Errorf("read history meta: %w", err)
	}
	defer rows.Close()
	var st state
	for rows.Next() {
		var k string
		var v any
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		switch k {
		case "id":
			st.id, _ = v.(string)
		case "horizon":
			st.horizon, _ = v.(int64)
		case "wal_salt1":
			st.cursor.Salt1 = uint32(asInt(v))
		case "wal_salt2":
			st.cursor.Salt2 = uint32(asInt(v))
		case "wal_frame":
			st.cursor.Frame = int(asInt(v))
		case "wal_cksum1":
			st.cursor.Cksum1 = uint32(asInt(v))
		case "wal_cksum2":
			st.cursor.Cksum2 = uint32(asInt(v))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	err = s.db.QueryRow(`SELECT seq, db_size FROM revisions ORDER BY seq DESC LIMIT 1`).Scan(&st.latest.Seq, &st.latest.DBSize)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read latest revision: %w", err)
	}
	s.meta = st
	return nil
}

func asInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

// Initialized reports whether the base revision has been recorded.
func (s *Store) Initialized() bool {
	s.smu.RLock()
	defer s.smu.RUnlock()
	return s.meta.latest.Seq > 0
}

// ID is the history's random identity, fixed at Init. It distinguishes
// revisions of this history from those of an earlier incarnation of a
// database with the same name.
func (s *Store) ID() string {
	s.smu.RLock()
	defer s.smu.RUnlock()
	return s.meta.id
}

// Latest returns the newest revision.
func (s *Store) Latest() Revision {
	s.smu.RLock()
	defer s.smu.RUnlock()
	return s.meta.latest
}

// Horizon returns the oldest revision that can be served.
func (s *Store) Horizon() int64 {
	s.smu.RLock()
	defer s.smu.RUnlock()
	return s.meta.horizon
}

// Cursor returns the WAL position recorded with the latest revision.
func (s *Store) Cursor() Cursor {
	s.smu.RLock()
	defer s.smu.RUnlock()
	return s.meta.cursor
}

// Init records the base revision: every page of the database. id is the
// history's identity; cur is the WAL position the base corresponds to.
func (s *Store) Init(ctx context.Context, id string, base Commit, cur Cursor, unixMS int64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.Initialized() {
		return errors.New("history already initialized")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO meta(key, value) VALUES('id', ?), ('horizon', 1)`, id); err != nil {
			return err
		}
		if err := s.insertCommit(tx, 1, base, unixMS); err != nil {
			return err
		}
		return writeCursor(tx, cur)
	}, func() {
		s.meta.id = id
		s.meta.horizon = 1
		s.meta.latest = Revision{Seq: 1, DBSize: base.DBSize}
		s.meta.cursor = cur
	})
}

// Append records commits as the next revisions, and the WAL position after
// them, in one transaction. It returns the new latest revision.
// The SQLite history belongs to one node: it ignores the fence.
func (s *Store) Append(ctx context.Context, _ Fence, commits []Commit, cur Cursor, unixMS int64) (Revision, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	latest := s.Latest()
	if latest.Seq == 0 {
		return latest, errors.New("history not initialized")
	}
	next := latest
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, c := range commits {
			next = Revision{Seq: next.Seq + 1, DBSize: c.DBSize}
			if err := s.insertCommit(tx, next.Seq, c, unixMS); err != nil {
				return err
			}
		}
		return writeCursor(tx, cur)
	}, func() {
		s.meta.latest = next
		s.meta.cursor = cur
	})
	return next, err
}

// write runs fn in a write transaction and, once it committed, apply under
// the state lock.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error, apply func()) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("history: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history commit: %w", err)
	}
	s.smu.Lock()
	apply()
	s.smu.Unlock()
	return nil
}

func (s *Store) insertCommit(tx *sql.Tx, seq int64, c Commit, unixMS int64) error {
	if _, err := tx.Exec(`INSERT INTO revisions(seq, db_size, unix_ms) VALUES(?, ?, ?)`, seq, c.DBSize, unixMS); err != nil {
		return err
	}
	st, err := tx.Prepare(`INSERT OR REPLACE INTO pages(pgno, seq, zstd, data) VALUES(?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	buf := make([]byte, 0, PageSize)
	return c.Pages(func(p Page) error {
		if len(p.Data) != PageSize {
			return fmt.Errorf("page %d has %d bytes", p.Pgno, len(p.Data))
		}
		// Most pages compress well; store those compressed, the rest raw.
		buf = s.enc.EncodeAll(p.Data, buf[:0])
		var err error
		if len(buf) < PageSize*7/8 {
			_, err = st.Exec(p.Pgno, seq, 1, buf)
		} else {
			_, err = st.Exec(p.Pgno, seq, 0, p.Data)
		}
		return err
	})
}

func writeCursor(tx *sql.Tx, c Cursor) error {
	_, err := tx.Exec(`INSERT OR REPLACE INTO meta(key, value) VALUES
		('wal_salt1', ?), ('wal_salt2', ?), ('wal_frame', ?), ('wal_cksum1', ?), ('wal_cksum2', ?)`,
		int64(c.Salt1), int64(c.Salt2), c.Frame, int64(c.Cksum1), int64(c.Cksum2))
	return err
}

// SetCursor records a new WAL position without a new revision (after the
// server checkpointed and the WAL restarted).
func (s *Store) SetCursor(ctx context.Context, cur Cursor) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.write(ctx, func(tx *sql.Tx) error { return writeCursor(tx, cur) }, func() { s.meta.cursor = cur })
}

// Sync makes every recorded revision durable (the history runs with
// synchronous=NORMAL, so commits are durable only after a checkpoint of its
// own WAL). The server calls it before it checkpoints the served database.
func (s *Store) Sync(ctx context.Context) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// A checkpoint syncs the history's WAL before it copies anything, even
	// when a reader keeps it from finishing; that sync is what we need.
	var busy, logFrames, ckpt int
	if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &ckpt); err != nil {
		return fmt.Errorf("history checkpoint: %w", err)
	}
	return nil
}

// Refresh does nothing: this node records every revision itself.
func (s *Store) Refresh(context.Context) error { return nil }

// Check validates that seq can be served.
func (s *Store) Check(ctx context.Context, seq int64) (Revision, error) {
	s.smu.RLock()
	st := s.meta
	s.smu.RUnlock()
	switch {
	case seq > st.latest.Seq:
		return Revision{}, fmt.Errorf("%w: %d > %d", ErrFuture, seq, st.latest.Seq)
	case seq < st.horizon:
		return Revision{}, fmt.Errorf("%w: %d < %d", ErrTooOld, seq, st.horizon)
	}
	if seq == st.latest.Seq {
		return st.latest, nil
	}
	r := Revision{Seq: seq}
	if err := s.db.QueryRowContext(ctx, `SELECT db_size FROM revisions WHERE seq = ?`, seq).Scan(&r.DBSize); err != nil {
		return Revision{}, fmt.Errorf("read revision %d: %w", seq, err)
	}
	return r, nil
}

// Reader is a consistent read view of the history (one read transaction).
// Close it when done.
type Reader struct {
	s      *Store
	tx     *sql.Tx
	pageAt *sql.Stmt
	buf    []byte
}

// Reader starts a read view.
func (s *Store) Reader(ctx context.Context) (View, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("history read: %w", err)
	}
	st, err := tx.PrepareContext(ctx, `SELECT zstd, data FROM pages WHERE pgno = ? AND seq <= ? ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("history read: %w", err)
	}
	return &Reader{s: s, tx: tx, pageAt: st}, nil
}

// Close ends the read view.
func (r *Reader) Close() error {
	r.pageAt.Close()
	return r.tx.Rollback()
}

// PageAt appends the image of page pgno as of revision seq to dst. A page
// with no entry (never written) reads as zeros, as SQLite reads a hole.
func (r *Reader) PageAt(dst []byte, pgno uint32, seq int64) ([]byte, error) {
	var compressed bool
	r.buf = r.buf[:0]
	err := r.pageAt.QueryRow(pgno, seq).Scan(&compressed, &r.buf)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return append(dst, make([]byte, PageSize)...), nil
	case err != nil:
		return dst, fmt.Errorf("read page %d at %d: %w", pgno, seq, err)
	case !compressed:
		return append(dst, r.buf...), nil
	}
	out, err := DecodePage(dst, r.buf)
	if err != nil {
		return dst, fmt.Errorf("page %d at %d: %w", pgno, seq, err)
	}
	return out, nil
}

// StoredPageAt appends the image of pgno at seq as stored: a zstd frame
// (compressed true) or the raw page.
func (r *Reader) StoredPageAt(dst []byte, pgno uint32, seq int64) ([]byte, bool, error) {
	var compressed bool
	r.buf = r.buf[:0]
	err := r.pageAt.QueryRow(pgno, seq).Scan(&compressed, &r.buf)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return append(dst, make([]byte, PageSize)...), false, nil
	case err != nil:
		return dst, false, fmt.Errorf("read page %d at %d: %w", pgno, seq, err)
	}
	return append(dst, r.buf...), compressed, nil
}

// ScanPages reads the pages one at a time: the file is local, so a lookup
// costs no round trip.
func (r *Reader) ScanPages(ctx context.Context, seq int64, pages *roaring.Bitmap, fn func(uint32, []byte, bool) error) error {
	var buf []byte
	it := pages.Iterator()
	for n := 0; it.HasNext(); n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		pg := it.Next()
		var compressed bool
		var err error
		if buf, compressed, err = r.StoredPageAt(buf[:0], pg, seq); err != nil {
			return err
		}
		if err := fn(pg, buf, compressed); err != nil {
			return err
		}
	}
	return nil
}

// ChangedBetween returns the pages written by revisions in (from, to].
func (r *Reader) ChangedBetween(ctx context.Context, from, to int64) (*roaring.Bitmap, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT DISTINCT pgno FROM pages WHERE seq > ? AND seq <= ?`, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	bm := roaring.New()
	for rows.Next() {
		var p uint32
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		bm.Add(p)
	}
	return bm, rows.Err()
}

// Compact moves the horizon to h and deletes what no revision >= h needs.
// It works in bounded batches so that it never holds the writer for long.
func (s *Store) Compact(ctx context.Context, h int64) (deleted int64, err error) {
	if h <= s.Horizon() {
		return 0, nil
	}
	if h > s.Latest().Seq {
		h = s.Latest().Seq
	}
	s.wmu.Lock()
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE meta SET value = ? WHERE key = 'horizon'`, h)
		return err
	}, func() { s.meta.horizon = h })
	s.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	// Entries older than the horizon that a newer entry at or below the
	// horizon shadows are unreachable now. Delete them page range by page
	// range so each transaction stays short.
	const step = 4096
	maxPg := int64(0)
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(pgno), 0) FROM pages`).Scan(&maxPg); err != nil {
		return 0, err
	}
	s.wmu.Lock()
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM revisions WHERE seq < ?`, h)
		return err
	}, func() {})
	s.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	for lo := int64(1); lo <= maxPg; lo += step {
		var n int64
		s.wmu.Lock()
		err = s.write(ctx, func(tx *sql.Tx) error {
			q := `DELETE FROM pages WHERE pgno >= ?1 AND pgno < ?2 AND seq < ?3 AND EXISTS (
				SELECT 1 FROM pages AS newer WHERE newer.pgno = pages.pgno AND newer.seq > pages.seq AND newer.seq <= ?3)`
			if mutation.shadowedAnywhere {
				q = strings.Replace(q, " AND newer.seq <= ?3", "", 1)
			}
			res, err := tx.Exec(q, lo, lo+step, h)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return nil
		}, func() {})
		s.wmu.Unlock()
		if err != nil {
			return deleted, err
		}
		deleted += n
	}
	return deleted, nil
}

// SeqAtOrBefore returns the newest revision committed at or before unixMS
// (for time-based retention), or 0 if none.
func (s *Store) SeqAtOrBefore(ctx context.Context, unixMS int64) (int64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM revisions WHERE unix_ms <= ?`, unixMS).Scan(&seq)
	return seq, err
}

// Revisions calls fn for every retained revision, in order (for copying a
// history elsewhere).
func (s *Store) Revisions(ctx context.Context, fn func(seq int64, dbSize uint32, unixMS int64) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, db_size, unix_ms FROM revisions ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq, size, ms int64
		if err := rows.Scan(&seq, &size, &ms); err != nil {
			return err
		}
		if err := fn(seq, uint32(size), ms); err != nil {
			return err
		}
	}
	return rows.Err()
}

// StoredPages calls fn for every stored page version as stored (a zstd
// frame or the raw page), for copying a history elsewhere. data is valid
// only during the call.
func (s *Store) StoredPages(ctx context.Context, fn func(pgno uint32, seq int64, compressed bool, data []byte) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT pgno, seq, zstd, data FROM pages ORDER BY seq, pgno`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var data []byte
	for rows.Next() {
		var pgno, seq int64
		var z bool
		if err := rows.Scan(&pgno, &seq, &z, &data); err != nil {
			return err
		}
		if err := fn(uint32(pgno), seq, z, data); err != nil {
			return err
		}
	}
	return rows.Err()
}

// mutation holds the bugs that build tags plant (scripts/mutations.sh), to
// show that the simulator's invariants catch them.
var mutation struct {
	shadowedAnywhere bool // compaction drops a page version that any newer one shadows, even above the horizon
}
