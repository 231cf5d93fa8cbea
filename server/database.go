package server

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

// ErrBadRevision reports a revision string this database cannot serve: not
// one of its own, older than the retained history, or newer than the latest.
// A client that gets it must bootstrap again.
var ErrBadRevision = errors.New("revision cannot be served")

// database is one served database: a SQLite file written by one connection,
// and the page history of every commit on it.
//
// Ownership: the writer token (writer, see writer.go) grants the client
// connection and the right to checkpoint; mu guards the connections'
// handles, the WAL read position and the recording of commits, and is
// never held while client statements run. Readers of the history never
// take either. Which node may write at all is the coordinator's lease
// (opts.coord); its epoch fences every append.
//
// client runs the clients' SQL and nothing else: it is sandboxed (see
// sandbox.go) for its whole life, and every request gets it in the same
// state (resetSession). admin runs the server's own statements
// (checkpoints, reading the base revision), which the sandbox refuses.
type database struct {
	name string
	dir  string
	opts dbOptions
	log  *slog.Logger

	sqldb   *sql.DB
	readers *sql.DB // read-only connections for pulls of the latest revision and read-only requests
	// readSlots has one slot per connection of readers (see readerConns);
	// bootSlots and cursorSlots cap what bootstraps and cursors hold, and
	// heldSlots what both hold together.
	readSlots   chan struct{}
	bootSlots   chan struct{}
	cursorSlots chan struct{}
	heldSlots   chan struct{}
	// histBootSlots caps the bootstraps the page history serves
	// (historyBootstraps).
	histBootSlots chan struct{}
	hist          history.Backend

	liveReaders atomic.Int64 // pulls streaming from readers: checkpoints wait for them
	behind      atomic.Bool  // the WAL has commits the history could not record (see session)
	ckptDue     atomic.Bool  // a checkpoint waits for live readers: they hand over to the history
	active      atomic.Int64 // requests in progress (Server.acquire)
	working     atomic.Int64 // of them, those not waiting in a long poll
	lastUsed    atomic.Int64 // unix ns when the last request ended
	snapshots   *snapshotCache

	mu      sync.Mutex
	client  *sql.Conn // sandboxed: the clients' SQL
	sb      *sandbox  // client's authorizer
	admin   *sql.Conn // the server's own statements
	commits int       // transactions committed on client, counted by its WAL hook
	walPos  walfile.Position
	// backfilled is a WAL position up to which the database file holds
	// every frame: a checkpoint copied them all but could not restart the
	// WAL (a reader held on), so the next write restarts it and overwrites
	// those frames. Bootstraps of that position read the file only.
	backfilled walfile.Position
	walFile    *os.File      // opened once the WAL exists; read with ReadAt only
	fence      history.Fence // the lease epoch of the current write
	lease      coord.Lease   // the lease of the current write (nil before the first)
	// In a cluster (opts.shared) the local file is a cache of the store:
	// localEpoch is the lease epoch it was built under (0: none open),
	// localSeq the revision it holds.
	localEpoch int64
	localSeq   int64
	warm       warmCopy // the local file while this node does not write the database

	stopped chan struct{} // closed at shutdown, so long polls return early
	writer  chan struct{} // holds a token while someone owns the writer connection (writer.go)
	hmu     sync.Mutex
	holder  *idleHolder // the stream that keeps the writer between requests, if any
	// owner (under hmu) is the stream that has the writer, busy or idle,
	// since ownedSince (nil: none, or a request that is no stream's).
	owner      *hranaStream
	ownedSince time.Time
	// waiters counts the requests waiting for the writer in takeWriter's
	// slow path: an owner told to yield does so only while one still
	// waits (hranaStream.yielding).
	waiters atomic.Int32
	// walHeld (under hmu) is closed, and replaced, when checkpoints have
	// been held back by readers for walHoldLimit: cursors on readers that
	// wait for their client then end (emitCursor). ckptHeldSince (under
	// mu) is when the first of those checkpoints came back busy.
	walHeld       chan struct{}
	ckptHeldSince time.Time
	stopOne       sync.Once

	bg sync.WaitGroup
}

type dbOptions struct {
	retention        time.Duration
	checkpointFrames int
	stmtTimeout      time.Duration
	maxValueBytes    int                        // largest string or blob a client statement may make (SQLITE_LIMIT_LENGTH)
	onRevisions      func(n int)                // called after commits were recorded
	onCheckpoint     func()                     // called after a checkpoint emptied the WAL
	onCopy           func(full bool, pages int) // called after pages were written into a cluster node's local copy
	snapshotMinBytes int64                      // see Config.SnapshotCacheMinBytes
	vfs              string
	newID            func() string
	after            func(time.Duration) <-chan time.Time // long-poll timer; nil = the wall clock
	now              func() time.Time                     // the history's clock; nil = the wall clock
	interval         time.Duration
	walHoldLimit     time.Duration     // how long readers may hold checkpoints back before stalled cursors end (IOTimeout)
	coord            coord.Coordinator // writer lease and wake-ups
	shared           bool              // the history is shared by several nodes; the local file is a cache
	// openHistory opens the page history of database name, whose local
	// directory is dir.
	openHistory func(ctx context.Context, name, dir string) (history.Backend, error)
}

// openFileHistory opens the single-node history: a SQLite file next to the
// database.
func openFileHistory(vfs string) func(ctx context.Context, name, dir string) (history.Backend, error) {
	return func(_ context.Context, _, dir string) (history.Backend, error) {
		return history.Open(filepath.Join(dir, historyFile), vfs)
	}
}

const (
	mainFile    = "db.sqlite"
	historyFile = "history.sqlite"
)

func openDatabase(ctx context.Context, name, dir string, opts dbOptions, log *slog.Logger) (*database, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	d := &database{
		name:        name,
		dir:         dir,
		opts:        opts,
		log:         log.With("db", name),
		stopped:     make(chan struct{}),
		writer:      make(chan struct{}, 1),
		readSlots:   make(chan struct{}, readerConns),
		bootSlots:   make(chan struct{}, bootstrapReaders),
		cursorSlots: make(chan struct{}, cursorReaders),
		heldSlots:   make(chan struct{}, heldReaders),

		histBootSlots: make(chan struct{}, historyBootstraps),
		walHeld:       make(chan struct{}),
	}
	d.snapshots = newSnapshotCache(dir, opts.snapshotMinBytes)
	d.warm.path, d.warm.onCopy = filepath.Join(dir, mainFile), opts.onCopy
	if err := d.open(ctx); err != nil {
		d.closeFiles()
		return nil, err
	}
	if opts.interval >= 0 {
		d.bg.Add(1)
		go d.maintain()
	}
	if opts.shared {
		d.bg.Add(1)
		go d.follow()
	}
	return d, nil
}

func (d *database) open(ctx context.Context) error {
	if d.opts.shared {
		return d.openShared(ctx)
	}
	if err := d.openLocal(ctx); err != nil {
		return err
	}
	var err error
	d.hist, err = d.opts.openHistory(ctx, d.name, d.dir)
	if err != nil {
		return err
	}
	if !d.hist.Initialized() {
		return d.initHistory(ctx)
	}
	d.walPos = d.hist.Cursor()
	// Recover commits that reached the WAL but not the history (a crash
	// between the two). A history that cannot take them now (its disk is
	// full) leaves the database behind, as a recording that failed after a
	// commit does: writes go on, pulls wait for the history (catchUp).
	n, err := d.recordCommits(ctx)
	if errors.Is(err, errHistoryAppend) {
		d.behind.Store(true)
		d.log.Error("recovering commits from the WAL into the history failed; pulls wait for it", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("recover history: %w", err)
	}
	if n > 0 {
		d.log.Info("recovered commits from the WAL", "commits", n)
	}
	return nil
}

// openLocal opens the database file: the admin and client connections and
// the readers.
func (d *database) openLocal(ctx context.Context) error {
	path := filepath.Join(d.dir, mainFile)
	// synchronous=FULL: a commit is on disk before the pipeline answers.
	// wal_autocheckpoint=0: only maintain() checkpoints, after the history
	// has recorded every frame.
	sync := "FULL"
	if d.opts.shared {
		// The file is a cache of the store, rebuilt after any unclean stop:
		// the store's commit is what makes a push durable.
		sync = "NORMAL"
	}
	dsn := sqlitex.DSN{Path: path, VFS: d.opts.vfs, Pragmas: []string{"page_size(4096)", "journal_mode(WAL)", "synchronous(" + sync + ")",
		"wal_autocheckpoint(0)", "busy_timeout(10000)", "foreign_keys(0)"}}
	db, err := sql.Open("sqlite", dsn.String())
	if err != nil {
		return fmt.Errorf("open %s: %w", mainFile, err)
	}
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	d.sqldb = db
	if d.admin, err = d.conn(ctx); err != nil {
		return err
	}
	if err := d.openClient(ctx); err != nil {
		return err
	}
	var pageSize int
	var mode string
	if err := d.admin.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return fmt.Errorf("read page size: %w", err)
	}
	if pageSize != history.PageSize {
		return fmt.Errorf("database %s has page size %d; the sync protocol needs %d", d.name, pageSize, history.PageSize)
	}
	if err := d.admin.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("database %s is not in WAL mode (%q, %v)", d.name, mode, err)
	}

	rdsn := sqlitex.DSN{Path: path, Mode: "ro", VFS: d.opts.vfs, Pragmas: []string{"query_only(1)", "busy_timeout(10000)", "mmap_size(1073741824)"}}
	if d.readers, err = sql.Open("sqlite", rdsn.String()); err != nil {
		return err
	}
	d.readers.SetMaxOpenConns(readerConns)
	d.readers.SetMaxIdleConns(4)
	return nil
}

// The readers pool has readerConns connections, one per slot of
// readSlots; no one ever waits inside database/sql's pool, where a
// read-only request would queue behind stalled bootstraps (a push's
// high-water read waited out its StatementTimeout with 100 stalled pulls:
// bench §7).
//
// A bootstrap holds its connection for as long as its client takes to read
// the response (up to IOTimeout per write: forever, for a client that
// stalls with a long IOTimeout), and a cursor for as long as its client
// takes to fetch its entries. Each waits for a slot, but first takes one of
// its own cap (bootstrapReaders, cursorReaders), then one of the cap of
// both together (heldReaders), so that bootstraps and cursors, stalled
// together, leave read-only requests at least readerConns-heldReaders
// connections, and cursors leave bootstraps at least
// heldReaders-cursorReaders; when one kind is idle the other may use the
// rest. The wait is bounded (readerConn's wait; errReadersBusy after it):
// a bootstrap then reads the page history instead (bootstrapReaderWait,
// see planSnapshot), a cursor fails with SQLITE_BUSY (StreamBusyTimeout,
// see onReader). A cursor never runs on the writer, which it would hold
// for as long as its client stalls, failing every write meanwhile. Other
// read-only requests, which give their connection back before their
// response is written, take a slot only if one is free and otherwise run
// on the writer.
const (
	readerConns      = 16
	bootstrapReaders = 12
	cursorReaders    = 8
	heldReaders      = 12
)

// bootstrapReaderWait bounds a bootstrap's wait for a reader slot: the
// history has every recorded revision's pages, so a bootstrap that finds
// the slots held (by stalled clients, or by more bootstraps at once than
// there are slots) is served from it, a little slower, instead of queueing
// behind clients that may never read.
const bootstrapReaderWait = time.Second

// historyBootstraps caps the bootstraps the page history serves at once:
// each holds one of the history's read connections (16 for the SQLite
// store) for as long as its response takes, forever for a client that
// stalls with a long IOTimeout. Without a cap, stalled bootstraps beyond
// the readers' took every history connection, and every incremental pull
// (and the revision check of every pull) waited for one until IOTimeout.
// The rest of the history's connections are left to incremental pulls.
// A bootstrap waits historyBootstrapWait for a slot, then is answered 503
// with Retry-After (errHistoryBusy); clients retry a 5xx.
const (
	historyBootstraps    = 8
	historyBootstrapWait = time.Second
)

// errHistoryBusy: no history slot for a bootstrap came free in time.
var errHistoryBusy = errors.New("every bootstrap slot is held (by other bootstraps); retry")

// historyBootstrap takes one of histBootSlots, waiting at most
// historyBootstrapWait; done gives it back.
func (d *database) historyBootstrap(ctx context.Context) (done func(), err error) {
	timer := time.NewTimer(historyBootstrapWait)
	defer timer.Stop()
	select {
	case d.histBootSlots <- struct{}{}:
		return func() { <-d.histBootSlots }, nil
	case <-timer.C:
		return nil, fmt.Errorf("%w (waited %v)", errHistoryBusy, historyBootstrapWait)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.stopped:
		return nil, errClosed
	}
}

// readerUse says what a reader connection is taken for (readerConn).
type readerUse int

const (
	useBootstrap readerUse = iota // waits for one of bootSlots, heldSlots, then readSlots
	useCursor                     // waits for one of cursorSlots, heldSlots, then readSlots
	useRequest                    // one of readSlots only if one is free
)

// errReadersBusy: no reader slot came free in time (other bootstraps and
// cursors held them); a read-only request that does not wait gets it at
// once. Only this error means "busy": a client's cancel is its context's
// error, a database that closes meanwhile errClosed.
var errReadersBusy = errors.New("no reader connection came free (other pulls and cursors hold them)")

// readerConn takes a reader connection for use: bootstraps and cursors
// wait for their slots, at most wait (then errReadersBusy), until ctx is
// done (ctx's error) or the database closes (errClosed); other read-only
// requests take one only if one is free (errReadersBusy otherwise). done
// gives the slots back after the connection is closed.
func (d *database) readerConn(ctx context.Context, readers *sql.DB, use readerUse, wait time.Duration) (conn *sql.Conn, done func(), err error) {
	var expired <-chan time.Time
	if use != useRequest {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		expired = timer.C
	}
	take := func(slots chan struct{}) error {
		select {
		case slots <- struct{}{}:
			return nil
		default:
		}
		select {
		case slots <- struct{}{}:
			return nil
		case <-expired:
			return fmt.Errorf("%w (waited %v)", errReadersBusy, wait)
		case <-ctx.Done():
			return ctx.Err()
		case <-d.stopped:
			return errClosed
		}
	}
	switch use {
	case useRequest:
		select {
		case d.readSlots <- struct{}{}:
		default:
			return nil, nil, errReadersBusy
		}
		done = func() { <-d.readSlots }
	default:
		capped := d.bootSlots
		if use == useCursor {
			capped = d.cursorSlots
		}
		if err := take(capped); err != nil {
			return nil, nil, err
		}
		if err := take(d.heldSlots); err != nil {
			<-capped
			return nil, nil, err
		}
		if err := take(d.readSlots); err != nil {
			<-d.heldSlots
			<-capped
			return nil, nil, err
		}
		done = func() { <-d.readSlots; <-d.heldSlots; <-capped }
	}
	if conn, err = readers.Conn(ctx); err != nil {
		done()
		select {
		case <-d.stopped:
			return nil, nil, fmt.Errorf("%w: %w", errClosed, err)
		default:
		}
		return nil, nil, err
	}
	return conn, done, nil
}

// conn takes a connection to the database file for good. SQLite must
// never checkpoint on its own when it closes: only checkpoint() may, after
// the history recorded every frame.
func (d *database) conn(ctx context.Context) (*sql.Conn, error) {
	conn, err := d.sqldb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", mainFile, err)
	}
	if err := sqlitex.Raw(ctx, conn, func(c *sqlitex.Conn) error { return c.SetNoCheckpointOnClose(true) }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("configure %s: %w", mainFile, err)
	}
	return conn, nil
}

// openClient opens the client connection: sandboxed, with a WAL hook that
// counts its commits.
func (d *database) openClient(ctx context.Context) error {
	conn, err := d.conn(ctx)
	if err != nil {
		return err
	}
	err = sqlitex.Raw(ctx, conn, func(c *sqlitex.Conn) error {
		sb, err := newSandbox(c, false, d.opts.maxValueBytes)
		if err != nil {
			return err
		}
		d.sb = sb
		return c.SetWALHook(func(string, int) { d.commits++ })
	})
	if err != nil {
		closeClient(conn)
		return fmt.Errorf("configure %s: %w", mainFile, err)
	}
	d.client = conn
	return nil
}

// closeClient removes the client connection's hooks and closes it.
func closeClient(conn *sql.Conn) error {
	herr := sqlitex.Raw(context.Background(), conn, func(c *sqlitex.Conn) error {
		return errors.Join(c.SetAuthorizer(nil), c.SetWALHook(nil))
	})
	return errors.Join(herr, conn.Close())
}

// initHistory records the base revision: the database as it is now, which
// may be a database created before the server ever saw it.
func (d *database) initHistory(ctx context.Context) error {
	if _, err := d.admin.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return fmt.Errorf("checkpoint before base: %w", err)
	}
	var size uint32
	if err := d.admin.QueryRowContext(ctx, "PRAGMA page_count").Scan(&size); err != nil {
		return err
	}
	base := history.Commit{DBSize: size, Pages: func(fn func(history.Page) error) error {
		rows, err := d.admin.QueryContext(ctx, "SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p history.Page
			if err := rows.Scan(&p.Pgno, &p.Data); err != nil {
				return err
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return rows.Err()
	}}
	var idb [6]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	if d.opts.newID != nil {
		id = d.opts.newID()
	}
	d.walPos = walfile.Position{}
	if err := d.hist.Init(ctx, id, base, history.Cursor{}, d.opts.clock().UnixMilli()); err != nil {
		return fmt.Errorf("record base revision: %w", err)
	}
	// Later revisions can be recovered from the WAL after a power loss, the
	// history's identity and base cannot: make them durable before any
	// client sees a revision.
	if err := d.hist.Sync(ctx); err != nil {
		return fmt.Errorf("record base revision: %w", err)
	}
	d.log.Info("created page history", "pages", size)
	return nil
}

// recordCommits reads the transactions committed to the WAL since walPos and
// records each as a revision. The caller holds mu (or is open()).
func (d *database) recordCommits(ctx context.Context) (int, error) {
	if d.walFile == nil {
		f, err := os.Open(filepath.Join(d.dir, mainFile) + "-wal")
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		d.walFile = f
	}
	st, err := d.walFile.Stat()
	if err != nil {
		return 0, err
	}
	// A torn or invalid frame ends the log quietly, as it does for SQLite:
	// the commits before it are recorded, nothing after it is a commit.
	var commits []history.Commit
	pageSize := history.PageSize
	pos, err := walfile.Scan(d.walFile, st.Size(), d.walPos, func(frames []walfile.Frame) error {
		// The last frame of a page within a transaction is its image.
		last := map[uint32]walfile.Frame{}
		order := make([]uint32, 0, len(frames))
		for _, f := range frames {
			if _, ok := last[f.Pgno]; !ok {
				order = append(order, f.Pgno)
			}
			last[f.Pgno] = f
		}
		commit := frames[len(frames)-1]
		commits = append(commits, history.Commit{DBSize: commit.DBSize, Pages: func(fn func(history.Page) error) error {
			buf := make([]byte, pageSize)
			for _, pg := range order {
				if pg > commit.DBSize {
					continue // truncated away by this very commit
				}
				data, err := walfile.ReadPage(d.walFile, last[pg], pageSize, buf)
				if err != nil {
					return err
				}
				if err := fn(history.Page{Pgno: pg, Data: data}); err != nil {
					return err
				}
			}
			return nil
		}})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan WAL: %w", err)
	}
	if len(commits) == 0 {
		return 0, nil
	}
	// pos is the history's cursor too.
	if d.lease != nil && !d.lease.Valid() {
		// This node's own clock says its lease may have ended (it was
		// paused, or cut off from the store): do not even try.
		return 0, fmt.Errorf("%w: this node's lease lapsed before it recorded the commit", history.ErrFenced)
	}
	rev, err := d.hist.Append(ctx, d.fence, commits, pos, d.opts.clock().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errHistoryAppend, err)
	}
	d.localSeq = rev.Seq
	d.walPos = pos
	d.opts.coord.Published(d.name, rev.Seq)
	if d.opts.onRevisions != nil {
		d.opts.onRevisions(len(commits))
	}
	return len(commits), nil
}

// waitChange blocks until a revision newer than seq exists, the timeout
// passes, ctx ends or the server shuts down.
func (d *database) waitChange(ctx context.Context, seq int64, timeout time.Duration) {
	var expired <-chan time.Time
	if d.opts.after != nil {
		expired = d.opts.after(timeout)
	} else {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	defer failpoint.Hit("server.long-poll.done", d.name)
	for {
		// Subscribe first, then look: a commit between the two closes ch.
		var ch <-chan struct{}
		if !mutation.subscribeLate {
			ch = d.opts.coord.Changed(d.name)
		}
		if d.hist.Latest().Seq > seq {
			return
		}
		failpoint.Hit("server.long-poll", d.name) // a commit here must wake the wait
		if mutation.subscribeLate {
			ch = d.opts.coord.Changed(d.name)
		}
		select {
		case <-ch:
		case <-expired:
			return
		case <-ctx.Done():
			return
		case <-d.stopped:
			return
		}
	}
}

// mutation holds the bugs that build tags plant (scripts/mutations.sh), to
// show that the simulator's invariants catch them.
var mutation struct {
	subscribeLate bool // a long poll subscribes to changes only after looking for them
	// checkpointUnderReaders: a checkpoint backfills the WAL while a live
	// bootstrap reads the files.
	checkpointUnderReaders bool
}

// errNotWriter reports a write on a node that does not hold the database's
// lease: it belongs to the node that does.
var errNotWriter = errors.New("this node is not the database's writer")

// errClosed reports a request on a database that was closed meanwhile.
var errClosed = errors.New("database closed")

// ErrHistoryBehind reports that commits could not be recorded in the page
// history yet (the history's disk is full, say): pulls wait for it rather
// than miss them.
var ErrHistoryBehind = errors.New("the page history is behind the database (see the server log); try again later")

// errHistoryAppend: the history did not take commits (see recordCommits).
var errHistoryAppend = errors.New("record commits in the history")

// record records the commits not recorded yet; the caller holds mu. A
// failure is logged and leaves the history behind for catchUp to retry.
func (d *database) record(ctx context.Context) {
	if _, err := d.recordCommits(ctx); err != nil {
		if !d.behind.Swap(true) {
			d.log.Error("recording commits in the history failed; pulls wait for it", "err", err)
		}
		return
	}
	d.behind.Store(false)
}

// catchUp makes sure the history holds every commit acknowledged so far,
// retrying a recording that failed. It fails with ErrHistoryBehind while
// that does not work.
func (d *database) catchUp(ctx context.Context) error {
	if !d.behind.Load() || d.opts.shared {
		// In a cluster pulls read the store, which never has an
		// unacknowledged commit; the writer settles its own (settle).
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admin == nil {
		return errClosed
	}
	d.record(ctx)
	if d.behind.Load() {
		return ErrHistoryBehind
	}
	return nil
}

// maintain checkpoints the database and compacts the history in the
// background.
func (d *database) maintain() {
	defer d.bg.Done()
	interval := d.opts.interval
	if interval == 0 {
		interval = 2 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastCompact := time.Time{}
	for {
		select {
		case <-d.stopped:
			return
		case <-tick.C:
		}
		d.mu.Lock()
		needs := d.walPos.Frame >= d.opts.checkpointFrames
		d.mu.Unlock()
		if needs {
			if err := d.checkpoint(context.Background()); err != nil {
				d.log.Warn("checkpoint failed", "err", err)
			}
		}
		d.dropStaleSnapshot()
		if d.opts.retention > 0 && time.Since(lastCompact) > time.Minute {
			lastCompact = time.Now()
			if err := d.compact(context.Background()); err != nil {
				d.log.Warn("history compaction failed", "err", err)
			}
		}
	}
}

// checkpoint moves the WAL into the database file, once the history holds
// every frame durably.
func (d *database) checkpoint(ctx context.Context) error {
	// The checkpoint runs on the writer connection, which a stream inside
	// a transaction keeps: leave it for later then.
	if !d.tryWriter() {
		return nil
	}
	defer d.releaseWriter()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admin == nil {
		return nil
	}
	if d.liveReaders.Load() > 0 && !mutation.checkpointUnderReaders {
		// Pulls streaming from the files would make the checkpoint wait,
		// holding the writer. They hand over to the history at their next
		// read (and new ones read the history) until it is done; a client
		// that stops reading is dropped after IOTimeout.
		d.ckptDue.Store(true)
		return nil
	}
	if _, err := d.recordCommits(ctx); err != nil {
		return err
	}
	if err := d.hist.Sync(ctx); err != nil {
		return err
	}
	defer d.ckptDue.Store(false)
	busy, logFrames, done, err := d.truncateWAL(ctx)
	if err != nil {
		return err
	}
	d.noteCheckpoint(busy != 0)
	switch {
	case busy == 0:
		// The next write restarts the WAL with new salts, which the scanner
		// recognises; reset the position now so it starts from frame 1.
		d.walPos, d.backfilled = walfile.Position{}, walfile.Position{}
		if d.opts.onCheckpoint != nil {
			d.opts.onCheckpoint()
		}
	case logFrames > 0 && done == logFrames && logFrames == d.walPos.Frame:
		// Every frame is in the database file, but the WAL could not be
		// restarted: the next write will (see backfilled).
		d.backfilled = d.walPos
	}
	return nil
}

// truncateWAL runs wal_checkpoint(TRUNCATE) without waiting for readers:
// the caller holds the writer and mu, and the readers it would wait for
// include cursors whose clients may never fetch (liveReaders counts only
// bootstraps). With the admin connection's busy_timeout (10 s) each
// attempt held every write and pull that long, and the next tick tried
// again. With none, SQLite backfills what the readers allow and reports
// busy; a later tick finishes the checkpoint once they are gone.
func (d *database) truncateWAL(ctx context.Context) (busy, logFrames, done int, err error) {
	if _, err = d.admin.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		return 0, 0, 0, err
	}
	err = d.admin.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done)
	if _, rerr := d.admin.ExecContext(context.Background(), "PRAGMA busy_timeout = 10000"); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return busy, logFrames, done, err
}

// noteCheckpoint bounds how long readers keep the WAL from restarting.
// Pulls hand over to the history and requests end within
// StatementTimeout, but a WebSocket cursor on a reader keeps its read
// transaction for as long as its client takes to fetch; if checkpoints
// have come back busy for walHoldLimit, the cursors that are waiting for
// their client then are ended (walHeld), as a stalled pull is dropped
// after IOTimeout. Called under mu.
func (d *database) noteCheckpoint(busy bool) {
	switch {
	case !busy:
		d.ckptHeldSince = time.Time{}
	case d.ckptHeldSince.IsZero():
		d.ckptHeldSince = time.Now()
	case d.opts.walHoldLimit > 0 && time.Since(d.ckptHeldSince) >= d.opts.walHoldLimit:
		d.log.Warn("readers held checkpoints back: ending the cursors that wait for their clients", "since", d.ckptHeldSince)
		d.ckptHeldSince = time.Now()
		d.hmu.Lock()
		close(d.walHeld)
		d.walHeld = make(chan struct{})
		d.hmu.Unlock()
	}
}

// walHeldChan is closed when stalled reader cursors are to end.
func (d *database) walHeldChan() <-chan struct{} {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	return d.walHeld
}

// dropStaleSnapshot deletes the cached bootstrap response once a newer
// revision exists.
func (d *database) dropStaleSnapshot() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hist != nil {
		d.snapshots.drop(d.hist.Latest().Seq)
	}
}

func (d *database) compact(ctx context.Context) error {
	if d.opts.shared {
		// In a cluster the writer compacts: one node per database.
		d.mu.Lock()
		writer := d.admin != nil
		d.mu.Unlock()
		if !writer {
			return nil
		}
	}
	h, err := d.hist.SeqAtOrBefore(ctx, d.opts.clock().Add(-d.opts.retention).UnixMilli())
	if err != nil || h <= d.hist.Horizon() {
		return err
	}
	n, err := d.hist.Compact(ctx, h)
	if n > 0 {
		d.log.Info("compacted history", "horizon", h, "deleted", n)
	}
	return err
}

// clock is the time of the history.
func (o dbOptions) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

// revision formats seq as the opaque string clients see.
func (d *database) revision(seq int64) string {
	return d.hist.ID() + "-" + strconv.FormatInt(seq, 10)
}

// parseRevision checks that rev names a revision this history can serve.
// A revision of this history below the horizon fails with history.ErrTooOld
// (wrapped), and its Seq is returned with the error.
func (d *database) parseRevision(ctx context.Context, rev string) (history.Revision, error) {
	i := strings.LastIndexByte(rev, '-')
	if i < 0 || rev[:i] != d.hist.ID() {
		return history.Revision{}, fmt.Errorf("%w: %q is not a revision of database %q (it may have been recreated)", ErrBadRevision, rev, d.name)
	}
	seq, err := strconv.ParseInt(rev[i+1:], 10, 64)
	if err != nil {
		return history.Revision{}, fmt.Errorf("%w: malformed revision %q", ErrBadRevision, rev)
	}
	r, err := d.hist.Check(ctx, seq)
	if errors.Is(err, history.ErrTooOld) && seq >= 1 {
		// Still a revision of this history: some requests can be
		// answered exactly for it (see planPull), so its number goes
		// with the error.
		return history.Revision{Seq: seq}, fmt.Errorf("%w: %w", ErrBadRevision, err)
	}
	if errors.Is(err, history.ErrTooOld) || errors.Is(err, history.ErrFuture) {
		return history.Revision{}, fmt.Errorf("%w: %w", ErrBadRevision, err)
	}
	if err != nil {
		return history.Revision{}, err // the store could not say
	}
	return r, nil
}

func (d *database) stop() {
	d.stopOne.Do(func() { close(d.stopped) })
}

// close stops maintenance and closes the files. The history is current, so
// the checkpoint SQLite runs when its last connection closes is harmless.
// It waits for the writer: a statement may be running on the client
// connection (without mu; see exec).
func (d *database) close() error {
	d.stop()
	d.writer <- struct{}{}
	return d.closeWriter()
}

// closeWriter is close for a caller that took the writer.
func (d *database) closeWriter() error {
	defer d.releaseWriter()
	d.stop()
	d.bg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.snapshots.removeAll()
	return d.closeFiles()
}

// closeFiles closes the history before the database: SQLite checkpoints the
// database's WAL when its last connection closes, and every frame must be
// durably recorded before that.
func (d *database) closeFiles() error {
	var errs []error
	if d.admin != nil && d.hist != nil && d.hist.Initialized() {
		ctx := context.Background()
		if d.opts.shared {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
		}
		if _, err := d.recordCommits(ctx); err != nil {
			if !d.opts.shared {
				errs = append(errs, err)
			} else {
				// Never acknowledged (session answers only what the
				// store has): dropped with the local copy; a client's
				// retry applies it on the next writer.
				d.log.Warn("closing: dropping commits the store did not record", "err", err)
			}
		}
	}
	if d.hist != nil {
		errs = append(errs, d.hist.Close())
		d.hist = nil
	}
	errs = append(errs, d.closeLocal())
	if d.opts.shared {
		d.removeLocal()
	}
	return errors.Join(errs...)
}

// closeLocal closes the database file.
func (d *database) closeLocal() error {
	var errs []error
	if d.readers != nil {
		errs = append(errs, d.readers.Close())
		d.readers = nil
	}
	if d.client != nil {
		errs = append(errs, closeClient(d.client))
		d.client = nil
	}
	if d.admin != nil {
		errs = append(errs, d.admin.Close())
		d.admin = nil
	}
	if d.sqldb != nil {
		errs = append(errs, d.sqldb.Close())
		d.sqldb = nil
	}
	if d.walFile != nil {
		errs = append(errs, d.walFile.Close())
		d.walFile = nil
	}
	return errors.Join(errs...)
}
