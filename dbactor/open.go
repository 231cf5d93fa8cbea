package dbactor

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// Local bookkeeping, never pushed and never part of the synced base.
const localSchema = `
CREATE TABLE IF NOT EXISTS _syncdb_changes(
	change_id INTEGER PRIMARY KEY,
	change_time INTEGER NOT NULL,
	txn INTEGER NOT NULL,
	op INTEGER NOT NULL,
	table_name TEXT NOT NULL,
	record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
` + conflictSchema

// WriterDSN is how the writer connection opens the database: WAL, commits
// durable when they return, and no checkpoint unless syncdb asks. vfs ""
// is SQLite's default.
// For syncdb's own packages; no compatibility promise.
func WriterDSN(path, vfs string) string {
	return writerDSN(path, vfs, writerBusyTimeout)
}

// writerBusyTimeout is how long the writer waits for a lock (a checkpoint
// for readers of the frames it would overwrite).
const writerBusyTimeout = 10 * time.Second

// writerDSN is WriterDSN with busy as the busy timeout (Config's
// WriterBusyTimeout, for tests). The driver runs busy_timeout before the
// other pragmas whatever their order, so the DSN holds only one.
func writerDSN(path, vfs string, busy time.Duration) string {
	return sqlitex.DSN{Path: path, VFS: vfs,
		Pragmas: []string{fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()), "synchronous(FULL)", "wal_autocheckpoint(0)", "foreign_keys(0)"}}.String()
}

// ReaderDSN is how read-only pool connections open the database.
// For syncdb's own packages; no compatibility promise.
func ReaderDSN(path, vfs string) string {
	return sqlitex.DSN{Path: path, VFS: vfs, Pragmas: []string{"query_only(1)", "busy_timeout(10000)"}}.String()
}

func (a *dbActor) open(ctx context.Context) error {
	if a.opened {
		return nil
	}
	m, err := a.cfg.Meta.Get(ctx)
	if err != nil {
		return err
	}
	if m == nil {
		return errors.New("dbactor: no metadata: bootstrap or initialize first")
	}
	a.meta = *m
	// Modified outside syncdb: the replica opens for reading only.
	external := func(err error) bool {
		if errors.Is(err, ErrExternalModification) {
			a.opened = true
			a.detach(ctx, err)
			return true
		}
		return false
	}
	if err := a.openFiles(ctx); err != nil {
		if a.writer != nil && external(err) {
			return nil
		}
		a.closeFiles()
		return err
	}
	a.opened = true
	a.unsynced = a.cfg.SyncNormal
	if err := a.recover(ctx); err != nil {
		if external(err) {
			return nil
		}
		a.closeFiles()
		return err
	}
	if st := a.restamp; st != nil {
		a.restamp = nil
		if err := a.updateMeta(ctx, func(m *messages.Meta) error { m.SyncDB.DBFile = st; return nil }); err != nil {
			a.closeFiles()
			return err
		}
	}
	// After recovery: an interrupted pull finishes under the id it began with.
	if err := a.checkHome(ctx); err != nil {
		a.closeFiles()
		return err
	}
	return nil
}

func (a *dbActor) openFiles(ctx context.Context) error {
	// The database file as the base knows it must not have been rewritten
	// by a checkpoint someone else ran. (Partial replicas fill holes in it,
	// so they have no stamp.)
	var modified error // external modification: the files still open, for reading
	if stamp := a.meta.SyncDB.DBFile; stamp != nil && !a.meta.SyncDB.Checkpointing {
		restamped, err := checkStamp(a.cfg.Path, stamp)
		if err != nil && !errors.Is(err, ErrExternalModification) {
			return err
		}
		a.restamp, modified = restamped, err
	}
	fresh := false
	if _, err := os.Stat(a.cfg.Path); errors.Is(err, os.ErrNotExist) {
		fresh = true
	}
	a.created = fresh
	if err := a.openWriter(ctx, fresh); err != nil {
		return err
	}
	f, err := os.Open(a.cfg.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", a.cfg.Path, err)
	}
	a.dbFile = f
	if err := a.openWAL(); err != nil {
		return err
	}
	// Before recovery writes anything: a WAL that lost the local commits
	// -info records must not be recovered as it is (an interrupted pull
	// would be abandoned, its journal removed).
	if modified == nil {
		if err := a.checkLocalWAL(a.meta.SyncDB.DBFile != nil); err != nil {
			return err
		}
	}
	return modified
}

// openWriter opens (or reopens) the writer connection. A connection that
// wrote pages through sqlite_dbpage keeps stale cached pages, so a pull
// replaces it after its first transaction.
func (a *dbActor) openWriter(ctx context.Context, fresh bool) error {
	if a.writer == nil {
		busy := writerBusyTimeout
		if a.cfg.WriterBusyTimeout > 0 {
			busy = a.cfg.WriterBusyTimeout
		}
		dsn := writerDSN(a.cfg.Path, a.cfg.VFS, busy)
		if a.pages != nil {
			dsn += "&syncdb_tag=" + writerTag
		}
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		a.writer = db
	}
	conn, err := a.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", a.cfg.Path, err)
	}
	// a.conn is set only once the connection is configured: one that
	// might checkpoint on close must never be used.
	if err := a.configureWriter(ctx, conn, fresh); err != nil {
		// Returning ErrBadConn makes database/sql close it for good.
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
		return err
	}
	a.conn = conn
	a.stmts = sqlitex.NewStmtCache(conn)
	a.ostmts = sqlitex.NewStmtCache(conn)
	a.cap.tables = nil
	a.pragmaSet = false
	a.staleCache = false
	return nil
}

// configureWriter sets up a new writer connection.
func (a *dbActor) configureWriter(ctx context.Context, conn *sql.Conn, fresh bool) error {
	err := sqlitex.Raw(ctx, conn, func(c *sqlitex.Conn) error {
		// Only syncdb checkpoints, and only in a way that keeps the base.
		if err := c.SetNoCheckpointOnClose(true); err != nil {
			return err
		}
		if err := c.SetDefensive(false); err != nil {
			return err
		}
		if fresh {
			if err := c.Exec("PRAGMA page_size = 4096"); err != nil {
				return err
			}
		}
		if err := c.Exec("PRAGMA journal_mode = WAL"); err != nil {
			return err
		}
		hook, ok := c.Driver().(interface{ RegisterPreUpdateHook(sqlite.PreUpdateHookFn) })
		if !ok {
			return errors.New("the driver connection has no preupdate hook")
		}
		hook.RegisterPreUpdateHook(a.onPreUpdate)
		if err := c.SetWALHook(a.onWALCommit); err != nil {
			return err
		}
		auth, ok := c.Driver().(sqlite.AuthorizerRegisterer)
		if !ok {
			return errors.New("the driver connection has no authorizer")
		}
		return auth.RegisterAuthorizer(a.authorize)
	})
	if err != nil {
		return fmt.Errorf("configure the writer connection: %w", err)
	}
	if a.cfg.SyncNormal && !a.forceFull {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
			return err
		}
	}
	// The automatic checkpoint leaves the WAL file for SQLite to reuse: one
	// that a big transaction grew far beyond what the checkpoint lets it
	// reach is cut back, at the first commit after SQLite restarts it,
	// instead of keeping its size until Close. Twice the checkpoint's
	// threshold: a WAL of the usual size is never cut, so its commits do
	// not change the file's size.
	if n := a.cfg.AutoCheckpointFrames; n > 0 {
		limit := walfile.HeaderSize + 2*int64(n)*(walfile.FrameHeaderSize+PageSize)
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA journal_size_limit = %d", limit)); err != nil {
			return err
		}
	}
	var size int
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&size); err != nil {
		return err
	}
	if size != PageSize {
		return fmt.Errorf("%s has %d-byte pages; syncdb needs %d", a.cfg.Path, size, PageSize)
	}
	return nil
}

// durable runs fn with every commit waiting for the disk, whatever
// SyncNormal says: the steps of a pull must be on disk before the metadata
// that describes them.
func (a *dbActor) durable(ctx context.Context, fn func() error) error {
	if !a.cfg.SyncNormal {
		return fn()
	}
	set := func(mode string) {
		if a.conn != nil {
			a.conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = "+mode)
		}
	}
	set("FULL")
	defer set("NORMAL")
	a.forceFull = true
	defer func() { a.forceFull = false }()
	return fn()
}

// refreshWriter makes the writer connection safe to use after T1's raw
// page writes (see openWriter). sqlite_dbpage writes below the b-tree
// layer, so a page it overwrote that this connection had cached keeps its
// old decoded header (cell count, free space) in the cache: the cache is
// emptied (sqlitex.Conn.ResetCache, what SQLite does when another
// connection wrote), and the next statement reads every page again, page
// 1 too, whose bumped schema cookie has the schema reloaded (and every
// prepared statement prepared again when it next runs). The user's
// statements and the table descriptions of the old schema go, as with a
// new connection; syncdb's own stay (ownConn). Replacing the connection
// did the same at a much higher price: it is the last connection to the
// database, so the new one rebuilt the WAL index from the whole WAL (up
// to AutoCheckpointFrames frames read and checksummed) and reparsed the
// schema, on every pull (bench/RESULTS.md §6).
// TestPullRawWritesStaleCache fails without either.
//
// The connection is still replaced when the cache cannot be emptied (a
// transaction or a statement left open: sqlitex.Conn.ResetCache) and when
// it has state a new connection would not (connState): a pull has always
// ended the writer's TEMP objects and the pragmas a user's statement set,
// and T2 must replay the local changes without them (a TEMP trigger would
// write its rows again: TestPullEndsTempState). The reopen uses ctx, as
// writeBase's did before the cache reset: a cancelled pull leaves no
// writer (ErrNoWriter) and the next request opens one.
//
// Neither is done while a statement on the writer is stepped and not
// reset (someone's rows left open: a syncdb bug, since syncdb owns every
// statement on the writer): the cache cannot be emptied, and closing the
// connection would wait for those rows forever (database/sql). The pull
// fails instead (errWriterBusy), the cache is marked stale (staleCache),
// and haveWriter refreshes it before the next request uses the writer,
// which also finishes the pending pull, as after a failed T2.
func (a *dbActor) refreshWriter(ctx context.Context) error {
	if a.conn == nil {
		return a.reopenWriter(ctx)
	}
	a.staleCache = true
	var busy bool
	err := sqlitex.Raw(context.WithoutCancel(ctx), a.conn, func(c *sqlitex.Conn) error {
		if busy = c.BusyStatement(); busy {
			return errWriterBusy
		}
		if failpoint.Skip("pull.reset-cache", a.cfg.Path) {
			return errResetSkipped
		}
		if err := a.connState(c); err != nil {
			return err
		}
		return c.ResetCache()
	})
	if busy {
		return fmt.Errorf("dbactor: refresh the writer after T1: %w", errWriterBusy)
	}
	if err != nil {
		return a.reopenWriter(ctx)
	}
	a.staleCache = false
	if a.cap.insert != nil {
		a.cap.insert.Close()
		a.cap.insert = nil
	}
	if a.stmts != nil {
		a.stmts.Close()
	}
	a.stmts = sqlitex.NewStmtCache(a.conn)
	a.cap.tables = nil
	return nil
}

// writerBusy reports whether a statement on the writer connection is
// stepped and not reset (sqlitex.Conn.BusyStatement).
func (a *dbActor) writerBusy() bool {
	var busy bool
	sqlitex.Raw(context.Background(), a.conn, func(c *sqlitex.Conn) error {
		busy = c.BusyStatement()
		return nil
	})
	return busy
}

// errWriterBusy: a statement on the writer connection is still stepping
// (see refreshWriter).
var errWriterBusy = errors.New("a statement on the writer connection is still open (stepped, not reset)")

// errResetSkipped: failpoint pull.reset-cache (the connection is replaced).
var errResetSkipped = errors.New("pull.reset-cache skipped")

// errConnState: the writer connection has state of its own that a pull
// ends (see refreshWriter).
var errConnState = errors.New("the writer connection has TEMP objects or pragmas a statement set")

// connState reports errConnState if the writer connection differs from a
// new one in what a user's statements can change on it: an object in its
// TEMP schema (read from sqlite_temp_schema: one small statement, no page
// of main), or a pragma a user statement set (pragmaSet, noted by the
// authorizer, since not every pragma can be read back: case_sensitive_like
// cannot).
func (a *dbActor) connState(c *sqlitex.Conn) error {
	if a.pragmaSet {
		return errConnState
	}
	temp, err := c.Query("SELECT 1 FROM temp.sqlite_schema LIMIT 1")
	if err != nil {
		return err
	}
	if len(temp) > 0 {
		return errConnState
	}
	return nil
}

// reopenWriter replaces the writer connection (see openWriter).
func (a *dbActor) reopenWriter(ctx context.Context) error {
	if a.cap.insert != nil {
		a.cap.insert.Close()
		a.cap.insert = nil
	}
	if a.stmts != nil {
		a.stmts.Close()
		a.stmts = nil
	}
	if a.ostmts != nil {
		a.ostmts.Close()
		a.ostmts = nil
	}
	if a.conn != nil && a.connLocked {
		a.dropConn()
	}
	if a.conn != nil {
		a.dropWALHook()
		// Returning ErrBadConn makes database/sql close it for good.
		a.conn.Raw(func(any) error { return driver.ErrBadConn })
		a.conn.Close()
		a.conn = nil
	}
	return a.openWriter(ctx, false)
}

// dropConn closes a writer connection on which database/sql may hold a
// lock it will never release (connLocked): a panic or Goexit in a user's
// statement unwound through database/sql frames that release the
// connection without a deferred call (Go 1.26: Stmt.ExecContext and
// queryDC), leaving the sql.Conn's closemu read-locked. Its Close, or a
// Raw returning ErrBadConn, would wait for that lock forever. So the
// SQLite connection underneath is closed directly (Raw itself only
// read-locks), and the sql.Conn is abandoned, never released, with its
// *sql.DB (closed: that waits for no connection in use), since the
// writer's *sql.DB opens one connection at most and a new writer needs
// another.
func (a *dbActor) dropConn() {
	a.dropWALHook()
	sqlitex.Raw(context.Background(), a.conn, func(c *sqlitex.Conn) error {
		if cl, ok := c.Driver().(io.Closer); ok {
			cl.Close()
		}
		return nil
	})
	a.conn, a.connLocked = nil, false
	if a.writer != nil {
		a.writer.Close()
		a.writer = nil
	}
}

func (a *dbActor) openWAL() error {
	if a.walFile != nil {
		return nil
	}
	f, err := os.Open(a.files.WAL)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	a.walFile = f
	return nil
}

// walEnd is the position after the last committed transaction in the WAL.
func (a *dbActor) walEnd() (walfile.Position, error) {
	if err := a.openWAL(); err != nil || a.walFile == nil {
		return walfile.Position{}, err
	}
	// Quietly to the end of the valid log, as SQLite's recovery reads it:
	// frames after a bad one are not the database's, nor any after an
	// invalid header (walEmptyAt).
	return a.walState(a.meta.SyncDB.Base.WAL)
}

// scanEnd is the end of the WAL's valid log (size bytes) as walfile.Scan
// from `from` finds it, but started at a.walPos, where syncdb's last
// write ended, when that is a later point of the WAL's current
// generation. With the WAL reused, from (the base's W) is almost always of
// an older generation, and a scan from it reads every frame of the
// current one: up to AutoCheckpointFrames (16 MiB) before every pull and
// at every close. a.walPos is only a hint: the scanner checks it as it
// checks any recorded position (the header's salts, the commit frame
// there with its checksum), from is checked as the scan from it would
// check it when both are of one generation, and any doubt about the hint
// falls back to the scan from `from`. The frames before a.walPos are
// SQLite's own commits of this process (the open scans from W: recover).
func (a *dbActor) scanEnd(size int64, from walfile.Position) (walfile.Position, error) {
	r := a.walReader()
	nop := func([]walfile.Frame) error { return nil }
	near := a.walPos
	sameGen := near.Salt1 == from.Salt1 && near.Salt2 == from.Salt2
	if near.Frame > 0 && near != from && (!sameGen || near.Frame > from.Frame) {
		if sameGen && !from.IsZero() {
			if _, err := walfile.NewScanner(r, size, from); err != nil {
				return walfile.Position{}, err
			}
		}
		if s, err := walfile.NewScanner(r, size, near); err == nil && !s.Restarted() {
			if err := s.Each(nop); err != nil {
				return walfile.Position{}, err
			}
			return s.Position(), nil
		}
	}
	return walfile.Scan(r, size, from, nop)
}

// walReader is the WAL file for the end-of-log scans, its reads counted
// by cfg.OnWALRead (tests) when set.
func (a *dbActor) walReader() io.ReaderAt {
	if a.cfg.OnWALRead == nil {
		return a.walFile
	}
	return countedReader{a.walFile, a.cfg.OnWALRead}
}

// countedReader reports the bytes of each read to count.
type countedReader struct {
	r     io.ReaderAt
	count func(int)
}

func (c countedReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.count(n)
	return n, err
}

// onWALCommit is the writer's WAL hook: SQLite calls it inside the
// statement that committed, with the number of frames now in the WAL.
func (a *dbActor) onWALCommit(db string, frames int) {
	if db == "main" {
		a.walFrames = frames
	}
}

// dropWALHook removes the WAL hook before the writer connection closes.
func (a *dbActor) dropWALHook() {
	sqlitex.Raw(context.Background(), a.conn, func(c *sqlitex.Conn) error { return c.SetWALHook(nil) })
}

// walState is the end of the WAL's valid log, scanned from hint (a
// position syncdb recorded, checked there; an older generation's or the
// zero one: from the first frame). Cheap when nothing valid follows hint:
// the header, hint's frame header and one frame are read. A WAL too short
// for a header, or only an invalid header (walEmptyAt), ends at the zero
// Position.
func (a *dbActor) walState(hint walfile.Position) (walfile.Position, error) {
	if err := a.openWAL(); err != nil || a.walFile == nil {
		return walfile.Position{}, err
	}
	st, err := a.walFile.Stat()
	if err != nil {
		return walfile.Position{}, err
	}
	if a.walEmptyAt(st.Size()) {
		return walfile.Position{}, nil
	}
	return a.scanEnd(st.Size(), hint)
}

// walEndsAt is walfile.EndsAt on the WAL file (false without one).
func (a *dbActor) walEndsAt(p walfile.Position) (bool, error) {
	if err := a.openWAL(); err != nil || a.walFile == nil {
		return false, err
	}
	return walfile.EndsAt(a.walFile, p)
}

// noteWAL records where the WAL ends after a write of ours (a.walPos).
// After a commit the WAL hook told the frame count, and the commit
// frame's header gives the rest (one read; the next check compares its
// salts with the WAL header's); otherwise (a rollback, whose spilled
// frames are not part of the log; another write path) it is scanned
// from the last recorded end. An unreadable WAL leaves a position the
// next check will not match: the write after it is refused as foreign.
func (a *dbActor) noteWAL() {
	f := a.walFrames
	a.walFrames = 0
	if f > 0 && a.openWAL() == nil && a.walFile != nil {
		if p, err := walfile.PositionAt(a.walFile, PageSize, f); err == nil {
			a.walPos = p
			return
		}
	}
	p, err := a.walState(a.walPos)
	if err != nil {
		a.cfg.Logger.Warn("reading the WAL's end", "err", err)
		p = walfile.Position{Frame: -1}
	}
	a.walPos = p
}

// walUncopied is how many frames of the WAL a checkpoint would copy: the
// WAL's frame count, less those of a generation a checkpoint copied
// already (the base's WAL position, Copied) while SQLite has not yet
// restarted it.
func (a *dbActor) walUncopied() int {
	n := a.walPos.Frame
	if b := a.meta.SyncDB.Base; b.Copied && b.WAL.Salt1 == a.walPos.Salt1 && b.WAL.Salt2 == a.walPos.Salt2 {
		n -= b.WAL.Frame
	}
	return n
}

// walSizeNow is the size of the WAL file in bytes (0 without one); cheap.
func (a *dbActor) walSizeNow() int64 {
	if err := a.openWAL(); err != nil || a.walFile == nil {
		return 0
	}
	st, err := a.walFile.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// recover brings the database to a consistent state after open: finish or
// abandon an interrupted pull or checkpoint, check that nobody else wrote
// to the files, create the local tables.
func (a *dbActor) recover(ctx context.Context) error {
	p, err := a.pendingPull(ctx)
	if err != nil {
		return err
	}
	if p != nil {
		a.pull, a.pending = p, true
		if err := a.durable(ctx, func() error { return a.recoverPull(ctx) }); err != nil {
			return err
		}
	}
	// A bootstrapped database is the server's as downloaded: its _syncdb_*
	// objects go before anything reads them (reconcileBase would take a
	// server's 'synced_base' for this replica's last pull). Fresh stays set
	// until the drop is durable, so a crash here drops again.
	if a.meta.SyncDB.Fresh {
		if err := a.dropBootstrapped(ctx); err != nil {
			return err
		}
	}
	// Only now is the database's record of the last pull this replica's
	// own: between a pull's T1 and T2 it is the server's (recoverPull tells
	// T2 by the WAL and records the pull from the journal).
	if err := a.reconcileBase(ctx); err != nil {
		return err
	}
	// A download left by a crash is of no use any more (a pull that got as
	// far as its first transaction recovers from the WAL).
	a.cfg.FS.Remove(a.files.Changes)
	// A clean close that left an empty WAL tells nothing: a power loss may
	// bring back the frames of a checkpointed WAL whose truncation was not
	// durable yet, which are harmless. It is checked before finishing an
	// interrupted checkpoint, which empties the WAL syncdb left (a close
	// after a checkpoint whose last -info write failed).
	// The open's scans check the WAL as SQLite's recovery reads it, from
	// W: not from where a write of recoverPull's ended (scanEnd's hint).
	a.walPos = walfile.Position{}
	if cc := a.meta.SyncDB.CleanClose; cc != nil && cc.Frame > 0 {
		end, err := a.walEnd()
		if err != nil {
			return externalModification("the WAL cannot be read: %w", err)
		}
		if end != *cc {
			return externalModification("its WAL changed after syncdb closed it (%d frames, syncdb left %d): another program wrote to it or checkpointed it", end.Frame, cc.Frame)
		}
	}
	// An interrupted checkpoint may have restarted the WAL that the
	// recorded base points into: finish it before reading the base.
	if a.meta.SyncDB.Checkpointing {
		if err := a.recoverCheckpoint(ctx); err != nil {
			return err
		}
	}
	if err := a.loadBase(); err != nil {
		return err
	}
	if a.meta.SyncDB.CleanClose != nil {
		if err := a.updateMeta(ctx, func(m *messages.Meta) error { m.SyncDB.CleanClose = nil; return nil }); err != nil {
			return err
		}
	}
	if _, err := a.conn.ExecContext(ctx, localSchema); err != nil {
		return fmt.Errorf("create local tables: %w", err)
	}
	a.created = false // pulls may run from now on
	a.walPos = a.meta.SyncDB.Base.WAL
	a.noteWAL()
	return nil
}

// dropBootstrapped drops, at the first open after a bootstrap, every
// _syncdb_* object the server's database brought (see dropServerLocal; a
// pull's T2 does the same after T1), durably before -info forgets that
// the database is fresh: kept, a server's _syncdb_local made the new
// replica a copy ('cloned') and a _syncdb_changes of its own columns
// failed every write. The -info update is deferred: the open writes
// -info anyway (checkHome records the replica's home). A crash before
// that (failpoint bootstrap.dropped) makes the next open drop again:
// nothing, or the empty tables this one created since.
func (a *dbActor) dropBootstrapped(ctx context.Context) error {
	var n int
	if err := a.conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema
		WHERE type IN ('table', 'view', 'trigger') AND lower(name) LIKE '\_syncdb\_%' ESCAPE '\'`).Scan(&n); err != nil {
		return err
	}
	// The local tables are created in the same durable transaction, even
	// under SyncNormal: once -info no longer says Fresh, a database
	// without _syncdb_local is one a pull's T1 made the server's
	// (planMissingJournal), never a first open whose creation a power loss
	// took back.
	err := a.durable(ctx, func() error {
		if _, err := a.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return err
		}
		if n > 0 {
			if err := a.dropServerLocal(ctx); err != nil {
				a.rollback()
				return err
			}
		}
		if _, err := a.conn.ExecContext(ctx, localSchema); err != nil {
			a.rollback()
			return err
		}
		_, err := a.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT")
		if err != nil {
			a.rollback()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("drop the server's _syncdb_ objects and create the local tables: %w", err)
	}
	failpoint.Hit("bootstrap.dropped", a.cfg.Path)
	return a.updateMetaMaybeDeferred(ctx, func(m *messages.Meta) error { m.SyncDB.Fresh = false; return nil }, true)
}

// loadBase (re)builds the base reader from the metadata.
func (a *dbActor) loadBase() error {
	prev := a.base
	if prev != nil && prev.revert != nil {
		prev.revert.close()
	}
	a.base = nil
	if err := a.openWAL(); err != nil {
		return err
	}
	b := a.meta.SyncDB.Base
	idx, err := walIndexAfter(a.walFile, b, prev)
	if err != nil {
		return err
	}
	rv, err := openPageStore(a.cfg.FS, a.files.Revert, b.RevertLen, true)
	if err != nil {
		return fmt.Errorf("open revert store: %w", err)
	}
	a.base = &baseReader{base: b, dbFile: a.dbFile, wal: a.walFile, index: idx, revert: rv, pages: a.pages}
	return nil
}

// checkForeignWrites compares the WAL with what syncdb last left in it.
func (a *dbActor) checkForeignWrites() error {
	if a.detached != nil {
		return a.detached
	}
	if a.unfinished {
		if err := a.recoverCheckpoint(context.Background()); err != nil {
			return err
		}
		a.unfinished = false
	}
	// Two reads when nothing follows the recorded end (EndsAt); a scan
	// otherwise, which passes over frames a rolled-back transaction spilled.
	if ok, err := a.walEndsAt(a.walPos); ok && err == nil {
		return nil
	}
	if end, err := a.walState(a.walPos); err != nil || end != a.walPos {
		what := fmt.Sprintf("it ends at frame %d", end.Frame)
		if err != nil {
			what = err.Error()
		} else if end.Salt1 != a.walPos.Salt1 || end.Salt2 != a.walPos.Salt2 {
			what = fmt.Sprintf("it was restarted, %d frames", end.Frame)
		}
		a.detach(context.Background(), externalModification("another program wrote to its WAL while syncdb had it open (%s, syncdb left %d frames)", what, a.walPos.Frame))
		return a.detached
	}
	return nil
}

func isInternalTable(name string) bool {
	lower := strings.ToLower(name)
	return strings.HasPrefix(lower, "_syncdb_") || strings.HasPrefix(lower, "sqlite_") || lower == "turso_sync_last_change_id"
}
