// Package syncdb is an embedded SQLite database that syncs both ways with a
// remote server speaking the Turso sync protocol (syncdb serve, or Turso).
//
// Open a local database file, read and write it at local speed — offline
// too — and exchange changes with the server when you choose:
//
//	db, err := syncdb.Open(ctx, syncdb.Config{Path: "app.db", URL: "http://127.0.0.1:8080"})
//	if err != nil { ... }
//	defer db.Close()
//	db.Exec(ctx, "CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
//	db.Exec(ctx, "INSERT INTO notes(body) VALUES(?)", "hello")
//	err = db.Push(ctx)            // send local changes
//	changed, err := db.Pull(ctx)  // apply the server's changes, keeping local ones on top
//
// # How it works
//
// The first Open downloads the whole database (bootstrap). Every local
// write is captured, in the same transaction, into a change log inside the
// database. Push replays the log on the server as one SQL transaction
// together with a per-client high-water mark, so a change is applied
// exactly once even if a push is retried or the response lost. Pull is
// physical: the server sends the pages changed since the client's
// revision; the client peels its local changes off, writes the pages, and
// replays the still-unpushed changes on top. Concurrent updates of a row
// merge column by column (the last push wins a column both changed); a
// local change that meets a remote change it never saw is a Conflict,
// recorded and reported, never dropped (see Conflict, DB.Conflicts,
// Config.OnConflict).
//
// # Files
//
// A database at app.db owns app.db, app.db-wal, app.db-shm (SQLite's),
// app.db-info (sync state, JSON), app.db-revert (page images that keep the
// last synced state reconstructible), app.db-present (partial replicas),
// app.db-syncdb-replay (the local changes a pull saved, kept until the
// next pull) and, during a pull only, app.db-changes. Read them
// with other programs only read-only (sqlite3 -readonly): a checkpoint by
// another program destroys the synced state. syncdb judges the files by
// content, so touching or copying them is harmless; after a real change it
// keeps serving reads and refuses the rest (ErrExternalModification) until
// Config.Recover rebuilds the replica. A copy of the files opened elsewhere
// takes a client id of its own; one syncdb cannot recognise is refused at
// its next sync (ErrClientCloned). The README's "Files and recovery" has
// the details.
//
// # Rules for SQL
//
//   - Synced tables need a declared PRIMARY KEY (ErrNoPrimaryKey); tables
//     listed in Config.IgnoreTables may lack one and stay local.
//   - Use DB.Tx (or BeginTx on DB.SQL) for transactions; BEGIN/COMMIT,
//     VACUUM, ATTACH and pragmas that checkpoint or change the journal or
//     page size are refused (ErrUnsupportedStatement), in reads too.
//   - DB.Query and DB.QueryRow read through a pool of read-only
//     connections and never wait for writes or syncs; statements that write
//     (INSERT ... RETURNING) belong in Exec or Tx (DB.SQL routes them
//     there by itself).
//   - The function given to DB.Tx must use its *Tx: the DB's own methods
//     fail there with ErrInTx (they would wait for the writer that the
//     transaction holds).
//   - Triggers run wherever a change is applied; only the statements'
//     direct changes are captured, unless a statement makes no change
//     itself (a write to a view through its INSTEAD OF trigger, a row
//     its BEFORE trigger logged and OR IGNORE skipped): then what the
//     triggers it fired wrote directly is, but for rows of tables
//     without a primary key and rows of the statement's own table that
//     would fire its trigger again where applied (an insert by an
//     INSERT; an update by an UPDATE or upsert; a delete by a DELETE).
//     TEMP triggers count as any (a TEMP view's INSTEAD OF trigger that
//     writes a table syncs its rows). A statement that writes a row but
//     pushes nothing (a no-op update, a TEMP or ignored table's row)
//     leaves its triggers' rows unsynced, as does a statement that
//     changes a row for what its TEMP triggers wrote (the server has no
//     TEMP trigger): they stay on this replica until its next pull (an
//     ignored table's are made again by its replay).
//
// # database/sql
//
// DB.SQL returns a standard *sql.DB over the replica for code that wants
// one: sqlc's generated queries, sqlx, goose or other migration tools.
// Reads run on the read pool, writes and BeginTx on the capturing writer,
// read-only transactions (sql.TxOptions{ReadOnly: true}) on the read pool;
// the same statements are refused with the same errors. Tools that only
// take a driver name open a replica with the registered driver:
//
//	db, err := sql.Open("syncdb", "app.db?url=http://127.0.0.1:8080")
//
// The DSN is a path with optional parameters (see ParseDSN); the replica
// opens with the first connection and closes with the *sql.DB.
//
// # Live replicas
//
// With Config.Live the replica follows the server by itself: a long-poll
// pull applies other replicas' pushes as soon as the server has them, local
// writes are pushed shortly after they commit (batched), and while the
// server is unreachable both retry with exponential backoff. DB.Changes
// reports after each applied pull which tables changed, at which revision.
//
// # What readers see
//
// Every read (a Query, or each statement of a read-only transaction's
// snapshot) sees a state that existed: the server's state at some pulled
// revision with every local write committed before the read on top. A
// pull becomes visible at once and entirely: reads never see part of it,
// nor the server's state without the local writes. Revisions only move
// forward; once a Change for revision R has been received, reads see R or
// later. A read-only transaction keeps its snapshot until it ends, so it
// may see an older revision than a read started after it.
package syncdb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petermattis/goid"
	_ "modernc.org/sqlite" // the database/sql driver

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/flock"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/internal/testhooks"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/pageactor"
	"github.com/syncdb/syncdb/syncactor"
)

// Errors, for errors.Is.
var (
	// ErrExternalModification: the files were changed outside syncdb; the
	// error text says how to recover.
	ErrExternalModification = dbactor.ErrExternalModification
	// ErrNoPrimaryKey: a write to a synced table without a primary key.
	ErrNoPrimaryKey = dbactor.ErrNoPrimaryKey
	// ErrUnsupportedStatement: a statement syncdb does not run for you.
	ErrUnsupportedStatement = dbactor.ErrUnsupportedStatement
	// ErrPushRejected: the server refused a change of a push (for example a
	// constraint violation); nothing of that push was applied.
	ErrPushRejected = syncactor.ErrPushRejected
	// ErrRebootstrap: the server no longer keeps this replica's revision.
	ErrRebootstrap = syncactor.ErrRebootstrap
	// ErrNoURL: Pull or Push on a database opened without a URL.
	ErrNoURL = netactor.ErrNoURL
	// ErrInTx: a DB method was called from inside the function given to
	// DB.Tx, whose transaction holds the writer until the function
	// returns; use the *Tx's methods instead.
	ErrInTx = errors.New("DB method called inside DB.Tx: use the *Tx")
	// ErrClosed: the database was closed.
	ErrClosed = errors.New("database is closed")
	// ErrInUse: another process (or another DB in this one) has the
	// database open. Only one may: a second writer looks to the first like
	// external modification.
	ErrInUse = errors.New("the database is in use")
)

// Config configures Open. Path is required; everything else has defaults.
type Config struct {
	Path            string        // local database file
	URL             string        // remote base URL; "" = the URL a previous Open saved, else local only (deferred)
	AuthToken       string        // sent as Authorization: Bearer
	ClientName      string        // client id = ClientName + "-" + uuid v4, generated once and persisted; default "syncdb-go"
	LongPollTimeout time.Duration // 0 = no long poll
	Partial         *PartialSync  // nil = full bootstrap
	// RemoteEncryptionKey and RemoteEncryptionCipher are sent as
	// x-turso-encryption-* headers.
	RemoteEncryptionKey, RemoteEncryptionCipher string
	ReadConns                                   int // read-only connection pool size (0 = max(4, GOMAXPROCS))

	// AuthTokenFunc, if set, is called for every request instead of using
	// AuthToken (for tokens that expire).
	AuthTokenFunc func() (string, error)
	HTTPClient    *http.Client // default: sensible timeouts, none overall
	Logger        *slog.Logger // default: discard
	// PushBatchChanges splits a push into several server transactions of
	// about this many changes, at local transaction boundaries (0 = one).
	PushBatchChanges int
	// BootstrapChunkBytes downloads the bootstrap in requests of about this
	// many bytes (0 = one request).
	BootstrapChunkBytes int64
	// IgnoreTables are kept local: captured so that they survive pulls, but
	// never pushed. They may lack a primary key.
	IgnoreTables []string
	// AutoCheckpointFrames checkpoints after a write when the WAL holds more
	// frames than this not yet checkpointed (0 = 4096, about 16 MiB;
	// negative = never). The WAL file keeps its size: SQLite writes the
	// next commits over it from its start. Checkpoint and Close empty it.
	AutoCheckpointFrames int
	// SyncNormal commits local writes without waiting for the disk
	// (SQLite's synchronous=NORMAL): several times faster on real disks, but
	// a power loss (not a crash of the process) may lose the last local
	// writes, never one a push sent (a push makes the local commits durable
	// before it sends them). Pulls, pushes and checkpoints stay durable.
	// Default: every commit is on disk when Exec or Tx returns.
	SyncNormal bool
	// MaxRetryTime bounds how long Open, Pull, Push or Sync retry after
	// transient network failures, all their requests together (0 = 30 s;
	// negative = no retries). Then they fail with ErrUnreachable (or the
	// server's last answer).
	MaxRetryTime time.Duration
	// ZstdPages asks the server for zstd compression: syncdb serve sends a
	// bootstrap as one zstd stream and other pulls as zstd pages (Turso's
	// servers may send neither). It pays on a network link (0.43× the
	// bytes); on loopback or a LAN the decoding costs more than it saves
	// (bench/RESULTS.md §1 and §8).
	ZstdPages bool
	// Live, if set, keeps the replica following the server by itself (see
	// LiveSync); DB.Changes tells what each pull changed.
	Live *LiveSync
	// Progress, if set, is called as downloads advance: phase "bootstrap"
	// or "pull", pages received, and the total pages (0 if unknown). It runs
	// on a network goroutine and must be quick.
	Progress func(phase string, pages, total int64)
	// Recover makes Open repair a replica that cannot sync as it is (see
	// the README's "Files and recovery"): one found to be a copy of
	// another (ErrClientCloned) takes a client id of its own; one modified
	// outside syncdb (ErrExternalModification), or whose revision the
	// server no longer keeps (ErrRebootstrap), is downloaded again with
	// its local changes replayed on top (the old files are kept in
	// PATH.before-recover-TIME). A replica that needs nothing opens as
	// usual.
	Recover  bool
	clientID string // the client id a rebuilt replica keeps
	// OnConflict, if set, decides each conflict as it is found: keep
	// "local", "remote", "rekey" (an insert-insert on an INTEGER PRIMARY
	// KEY: the local row takes a new key) or "" (it waits for
	// DB.ResolveConflict; also when it returns an error). nil is the
	// default policy (see Conflict). It runs inside the pull's transaction:
	// it must not use the DB.
	OnConflict func(ctx context.Context, c Conflict) (keep string, err error)
}

// PartialSync configures a partial replica: the first Open downloads only
// the first PrefixBytes of the database, or the pages the server reads to
// answer Query (exactly one of the two), and later reads fetch missing pages
// on demand, SegmentSize bytes at a time (default 128 KiB). With Prefetch,
// fetching a B-tree interior page also loads its children.
type PartialSync struct {
	PrefixBytes int64
	Query       string
	SegmentSize int
	Prefetch    bool
}

// Stats describes a replica.
type Stats struct {
	CDCOperations, MainWALSize, RevertWALSize int64
	LastPullUnixTime, LastPushUnixTime        int64
	Revision                                  string
	// NetworkSentBytes and NetworkReceivedBytes count request and response
	// bodies as they crossed the network (compressed, when they were).
	NetworkSentBytes, NetworkReceivedBytes int64
	// PagesPresent and PagesTotal: for a partial replica, the pages of the
	// bootstrap revision that are local, and all of them. Both are 0 for a
	// full replica.
	PagesPresent, PagesTotal int64
	// Conflicts counts the unresolved conflicts (DB.Conflicts).
	Conflicts int64
	// PushedChanges counts the changes this DB pushed since Open.
	PushedChanges int64
}

// DB is an open synced database. Its methods are safe for concurrent use.
type DB struct {
	cfg     Config
	hooks   testhooks.Hooks
	pushed  atomic.Int64 // changes pushed since Open (Stats.PushedChanges)
	sys     *actors.System
	db      dbactor.Handle
	net     netactor.Handle
	meta    metaactor.Handle
	sync    syncactor.Handle
	writer  *dbactor.Writer // Exec's direct path into the db actor
	readers *sql.DB
	reads   *sqlitex.StmtCache // SELECTs kept prepared on the read pool
	gate    gate

	pages  *pageactor.Pages // partial replicas
	detach func()

	url string // the server followed ("" = none)

	// Live replicas and Changes (live.go).
	wake     chan struct{} // capacity 1: a local write committed
	liveStop context.CancelFunc
	liveDone chan struct{}
	subsMu   sync.Mutex
	subs     map[*subscriber]struct{} // nil once closed

	sqlOnce sync.Once
	sqldb   *sql.DB       // SQL's
	closing chan struct{} // closed by Close: open write transactions roll back
	// inTx counts the goroutines running a DB.Tx function, by goroutine
	// id: the DB's methods refuse to run on them (they would wait for the
	// writer that their own transaction holds).
	inTx  sync.Map // goroutine id -> struct{}
	inTxN atomic.Int32

	mu     sync.Mutex
	closed bool
	panics []error
	unlock func() error
}

// gate holds new reads while a pull's transactions commit, so that no
// reader sees the server's state without the local changes on top.
type gate struct{ mu sync.RWMutex }

func (g *gate) Close() { g.mu.Lock() }
func (g *gate) Open()  { g.mu.Unlock() }

// DefaultClientName is Config.ClientName when empty.
const DefaultClientName = "syncdb-go"

// DefaultSegmentSize is PartialSync.SegmentSize when zero.
const DefaultSegmentSize = 128 << 10

// validate refuses a Config that Open cannot use.
func (cfg Config) validate() error {
	if cfg.Path == "" {
		return errors.New("Config.Path is required")
	}
	if p := cfg.Partial; p != nil {
		if (p.PrefixBytes > 0) == (p.Query != "") {
			return errors.New("Config.Partial needs exactly one of PrefixBytes and Query")
		}
		if p.SegmentSize < 0 || p.SegmentSize%4096 != 0 {
			return errors.New("Config.Partial.SegmentSize must be a multiple of 4096")
		}
	}
	return nil
}

// withDefaults fills the zero fields that have a default, as the fields'
// comments say: ClientName DefaultClientName, a discarding Logger,
// ReadConns max(4, GOMAXPROCS), Partial.SegmentSize DefaultSegmentSize (in
// a copy: the caller's PartialSync is not changed). The defaults of
// MaxRetryTime, AutoCheckpointFrames and Live are the actors' and
// LiveSync's (syncactor, dbactor, LiveSync.withDefaults).
func (cfg Config) withDefaults() Config {
	if cfg.ClientName == "" {
		cfg.ClientName = DefaultClientName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if cfg.Partial != nil && cfg.Partial.SegmentSize == 0 {
		p := *cfg.Partial
		p.SegmentSize = DefaultSegmentSize
		cfg.Partial = &p
	}
	return cfg
}

// Open opens (bootstrapping if needed) the database at cfg.Path.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	shown := cfg.Path // errors name the path as the caller gave it
	abs, err := absPath(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", shown, err)
	}
	cfg.Path = abs
	d := &DB{cfg: cfg, hooks: testhooks.From(ctx), closing: make(chan struct{}), wake: make(chan struct{}, 1), subs: map[*subscriber]struct{}{}}
	if d.hooks.BeforeLock != nil {
		d.hooks.BeforeLock()
	}
	release, owner, err := flock.Lock(layout.For(cfg.Path).Lock)
	if errors.Is(err, flock.ErrLocked) {
		who := "another process"
		if owner == os.Getpid() {
			who = "another syncdb.DB in this process"
		} else if owner > 0 {
			who = fmt.Sprintf("process %d", owner)
		}
		return nil, fmt.Errorf("%w by %s: %s", ErrInUse, who, shown)
	}
	if err != nil {
		// Nothing to remove: a -lock that flock.Lock may have created
		// stays, as after any failed Open (newReplicaFiles).
		return nil, fmt.Errorf("open %s: lock: %w", shown, err)
	}
	d.unlock = func() error {
		err := release()
		if d.hooks.AfterUnlock != nil {
			d.hooks.AfterUnlock()
		}
		return err
	}
	if err := finishSwap(d.hooks.FS, cfg.Path); err != nil { // a recovery a crash interrupted
		d.unlock()
		return nil, fmt.Errorf("open %s: finish the recovery: %w", shown, err)
	}
	// Only now can Open tell which files are its own: with the lock (a
	// replica another Open made and closed before this one took it is not
	// new) and after finishSwap (which may have just moved a rebuilt
	// replica's PATH and -info into place). Those files are never removed.
	created := newReplicaFiles(cfg.Path)
	d.sys = actors.NewSystem(actors.Options{Name: cfg.Path, Logger: cfg.Logger, OnPanic: func(p *actors.PanicError) {
		d.mu.Lock()
		d.panics = append(d.panics, p)
		d.mu.Unlock()
		if d.hooks.OnPanic != nil {
			d.hooks.OnPanic(p)
		}
	}})
	if err := d.open(ctx); err != nil {
		if d.readers != nil {
			d.readers.Close()
		}
		d.sys.Stop()
		d.closePages()
		// A new replica that failed to open leaves nothing behind but its
		// -lock (newReplicaFiles), and the files go while the lock
		// is held: once it is released, another Open may be creating them
		// again.
		removeNewReplica(d.hooks.FS, cfg.Path, created)
		d.unlock()
		return nil, fmt.Errorf("open %s: %w", shown, err)
	}
	if cfg.Recover {
		rebuilt, err := d.recoverReplica(ctx)
		if err != nil {
			if !rebuilt {
				d.Close()
			}
			return nil, fmt.Errorf("recover %s: %w", shown, err)
		}
		if rebuilt {
			cfg.Recover = false
			return Open(ctx, cfg)
		}
	}
	d.startLive()
	return d, nil
}

// open starts the actors and opens the replica: its metadata, the
// network, database and sync actors, then a bootstrap (a new replica) or
// the files left by an earlier Open, then the database itself.
func (d *DB) open(ctx context.Context) error {
	m, err := d.spawnMeta(ctx)
	if err != nil {
		return err
	}
	d.url = remoteURL(d.cfg.URL, m)
	clientID := clientIDOf(d.cfg, d.hooks, m)
	if err := d.spawnActors(clientID); err != nil {
		return err
	}
	oldURL, newURL, err := d.prepareFiles(ctx, m, clientID)
	if err != nil {
		return err
	}
	if err := d.openDatabase(ctx); err != nil {
		return err
	}
	if newURL != "" {
		return d.saveURL(ctx, oldURL, newURL)
	}
	return nil
}

// spawnMeta starts the metadata actor and reads the metadata (nil for a
// new replica).
func (d *DB) spawnMeta(ctx context.Context) (*messages.Meta, error) {
	var err error
	if d.meta, err = metaactor.SpawnWatched(d.sys, d.hooks.FS, layout.For(d.cfg.Path).Info, d.hooks.OnMeta); err != nil {
		return nil, err
	}
	return closed(d.meta.Get(ctx))
}

// remoteURL is the server to follow: the configured one, else the one an
// earlier Open saved ("" = none).
func remoteURL(configured string, m *messages.Meta) string {
	if configured == "" && m != nil && m.SavedConfiguration != nil && m.SavedConfiguration.RemoteURL != nil {
		return *m.SavedConfiguration.RemoteURL
	}
	return configured
}

// clientIDOf is the replica's client id: the saved one, else the one a
// rebuilt replica keeps, else a new one.
func clientIDOf(cfg Config, h testhooks.Hooks, m *messages.Meta) string {
	switch {
	case m != nil:
		return m.ClientUniqueID
	case cfg.clientID != "":
		return cfg.clientID
	default:
		return cfg.ClientName + "-" + h.IDs()
	}
}

// spawnActors starts the network, database and sync actors.
func (d *DB) spawnActors(clientID string) error {
	cfg, h, url := d.cfg, d.hooks, d.url
	token := cfg.AuthTokenFunc
	if token == nil && cfg.AuthToken != "" {
		t := cfg.AuthToken
		token = func() (string, error) { return t, nil }
	}
	var err error
	if d.net, err = netactor.Spawn(d.sys, netactor.Config{
		URL: url, AuthToken: token, EncryptionKey: cfg.RemoteEncryptionKey, EncryptionCipher: cfg.RemoteEncryptionCipher,
		HTTPClient: cfg.HTTPClient, Clock: h.Clock, ZstdPages: cfg.ZstdPages, Logger: cfg.Logger,
		Retry: netactor.RetryPolicy{MaxElapsedTime: cfg.MaxRetryTime, Disabled: cfg.MaxRetryTime < 0, NoJitter: h.NoJitter},
	}); err != nil {
		return err
	}
	if d.db, d.writer, err = dbactor.Spawn(dbactor.Config{
		Path: cfg.Path, FS: h.FS, ClientID: clientID, Sys: d.sys, Meta: d.meta, Gate: &d.gate,
		IgnoreTables: cfg.IgnoreTables, AutoCheckpointFrames: cfg.AutoCheckpointFrames, Clock: h.Clock, Logger: cfg.Logger,
		VFS: h.VFS, SyncNormal: cfg.SyncNormal, OnCommit: d.localCommit, OnConflict: onConflict(cfg.OnConflict),
		NewClientID: func() string { return cfg.ClientName + "-" + h.IDs() }, Machine: h.Machine, OnWALRead: h.OnWALRead,
		WriterBusyTimeout: h.WriterBusyTimeout,
	}); err != nil {
		return err
	}
	var saved messages.SavedConfig
	if url != "" {
		saved.RemoteURL = &url
	}
	d.sync, err = syncactor.Spawn(syncactor.Config{
		Sys: d.sys, DB: d.db, Net: d.net, Meta: d.meta, FS: h.FS, Path: cfg.Path, ClientID: clientID,
		SavedConfig: saved, LongPoll: cfg.LongPollTimeout, PushBatch: cfg.PushBatchChanges, MaxRetryTime: cfg.MaxRetryTime,
		BootstrapChunk: cfg.BootstrapChunkBytes, IgnoreTables: cfg.IgnoreTables, Clock: h.Clock, Logger: cfg.Logger,
		Progress: cfg.Progress,
	})
	return err
}

// prepareFiles makes the files ready to open: a new replica is
// bootstrapped (or, without a URL, started empty and deferred); an
// existing one gets a bootstrap a crash interrupted moved into place. A
// URL given for a replica that saved another one comes back as newURL
// (and the saved one as oldURL), to be checked and saved once the
// database is open.
func (d *DB) prepareFiles(ctx context.Context, m *messages.Meta, clientID string) (oldURL, newURL string, err error) {
	cfg, h, url := d.cfg, d.hooks, d.url
	if m != nil {
		if err := d.db.MoveBootstrap(ctx); err != nil { // a crash after the bootstrap's metadata
			return "", "", err
		}
		if url != "" && (m.SavedConfiguration == nil || m.SavedConfiguration.RemoteURL == nil || *m.SavedConfiguration.RemoteURL != url) {
			newURL = url // saved once checked
			if m.SavedConfiguration != nil && m.SavedConfiguration.RemoteURL != nil {
				oldURL = *m.SavedConfiguration.RemoteURL
			}
		}
		return oldURL, newURL, nil
	}
	if _, err := h.FS.Stat(cfg.Path); err == nil {
		return "", "", fmt.Errorf("%s exists but has no %s-info: it is not a syncdb database "+
			"(syncdb will not adopt it, because its existing rows would never be pushed)", cfg.Path, cfg.Path)
	}
	if url == "" {
		// Deferred: a local database whose first pull brings the server's
		// state and keeps the local rows. Fresh, as after a bootstrap: the
		// first open creates the local tables durably before -info drops
		// it, so that a database without them is one a pull's T1 made the
		// server's (a journal missing then is refused), never this one
		// after a power loss took back its first open's (SyncNormal).
		_, err := closed(d.meta.Update(ctx, func(m *messages.Meta) error {
			m.ClientUniqueID = clientID
			m.SavedConfiguration = &messages.SavedConfig{}
			m.SyncDB.Fresh = true
			return nil
		}))
		return "", "", err
	}
	var partial *messages.PartialBootstrap
	if p := cfg.Partial; p != nil {
		partial = &messages.PartialBootstrap{PrefixBytes: p.PrefixBytes, Query: p.Query, SegmentSize: p.SegmentSize, Prefetch: p.Prefetch}
	}
	err = closedErr(d.sync.Bootstrap(ctx, partial))
	return "", "", err
}

// openDatabase opens the database: a partial replica's page actor and
// shim VFS first (the VFS asks the page actor for pages missing from the
// file), then the read pool, then the database actor's connections.
func (d *DB) openDatabase(ctx context.Context) error {
	cfg, h := d.cfg, d.hooks
	vfs := h.VFS
	m, err := closed(d.meta.Get(ctx))
	if err != nil {
		return err
	}
	open := &messages.OpenDB{}
	if p := m.SyncDB.Partial; p != nil && m.PartialBootstrapServerRevision != nil {
		if vfs, err = shimvfs.Register(); err != nil {
			return err
		}
		d.pages, err = pageactor.Open(pageactor.Config{
			Sys: d.sys, Net: d.net, FS: h.FS, Path: cfg.Path, Revision: cmp.Or(p.FetchRevision, m.PartialBootstrapServerRevision.Revision),
			DBSize: p.DBSize, SegmentSize: p.SegmentSize, Prefetch: p.Prefetch, Logger: cfg.Logger,
			Background: h.Background,
		})
		if err != nil {
			return fmt.Errorf("open partial replica: %w", err)
		}
		if d.detach, err = shimvfs.Attach(cfg.Path, d.pages); err != nil {
			return err
		}
		open.Pages, open.VFS = d.pages, vfs
	}
	d.readers, err = sql.Open("sqlite", dbactor.ReaderDSN(cfg.Path, vfs))
	if err != nil {
		return err
	}
	d.readers.SetMaxOpenConns(cfg.ReadConns)
	d.readers.SetMaxIdleConns(cfg.ReadConns)
	d.reads = sqlitex.NewStmtCache(d.readers)
	err = closedErr(d.db.Open(ctx, open))
	return err
}

func (d *DB) check() error {
	if err := d.reentrant(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return nil
}

// reentrant refuses a call from inside a DB.Tx function: it would wait for
// the writer, which that transaction holds until the function returns.
func (d *DB) reentrant() error {
	if d.inTxN.Load() == 0 {
		return nil
	}
	if _, ok := d.inTx.Load(goid.Get()); ok {
		return ErrInTx
	}
	return nil
}

// Exec runs one or more statements as one local write transaction. Its
// changes are captured for the next Push.
func (d *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	// An argument's Value runs here, on the caller's goroutine (see
	// resolveArgs): a panic in it is the caller's, as with database/sql,
	// and never reaches the actor.
	args, err := resolveArgs(args)
	if err != nil {
		return nil, err
	}
	res, err := d.writer.Exec(ctx, query, args)
	return res, closedErr(err)
}

// Query runs a read-only query on the read pool. It never waits for
// writes or syncs (only, very briefly, for a pull's final commit).
func (d *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if err := dbactor.CheckRead(query); err != nil {
		return nil, err
	}
	args, err := resolveArgs(args) // Value runs here, with nothing held
	if err != nil {
		return nil, err
	}
	d.gate.mu.RLock()
	defer d.gate.mu.RUnlock()
	if st, release := d.readStmt(ctx, query); st != nil {
		defer release()
		return st.QueryContext(ctx, args...)
	}
	return d.readers.QueryContext(ctx, query, args...)
}

// QueryRow is Query for at most one row. Errors, ErrClosed included, are
// reported by its Scan.
func (d *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if err := d.check(); err != nil {
		return rowError(ctx, err)
	}
	if err := dbactor.CheckRead(query); err != nil {
		return rowError(ctx, err)
	}
	args, err := resolveArgs(args) // Value runs here, with nothing held
	if err != nil {
		return rowError(ctx, err)
	}
	d.gate.mu.RLock()
	defer d.gate.mu.RUnlock()
	if st, release := d.readStmt(ctx, query); st != nil {
		defer release()
		return st.QueryRowContext(ctx, args...)
	}
	return d.readers.QueryRowContext(ctx, query, args...)
}

// readStmt returns a SELECT kept prepared on the read pool, or nil for
// other statements and for those that fail to prepare (running them
// unprepared then reports the error).
func (d *DB) readStmt(ctx context.Context, query string) (*sql.Stmt, func()) {
	switch sqlitex.FirstKeyword(query) {
	case "SELECT", "WITH", "VALUES":
	default:
		return nil, nil
	}
	st, release, err := d.reads.Stmt(ctx, query)
	if err != nil {
		return nil, nil
	}
	return st, release
}

// Tx is a local write transaction, valid only inside the function given to
// DB.Tx. Its methods run on the writer, inside the transaction; the rows
// of its queries are read in full before they are returned (use DB.Query,
// on the read pool, for large reads), so rows the function leaves
// unclosed hold nothing on the writer: a later pull does not find it busy
// (and database/sql closes them when the transaction ends). Calling the
// DB's own methods from inside the function fails with ErrInTx.
//
// An argument's driver.Valuer is called by the method itself, on the
// function's goroutine, before the statement goes to database/sql (see
// resolveArgs). If Value panics, the transaction is over, rolled back:
// the method returns the panic as an error ("panic in transaction
// function: ..."), as for a panic inside the statement, and so does every
// later statement of it. If it ends the goroutine (runtime.Goexit), DB.Tx
// rolls back.
type Tx struct {
	tx *sql.Tx
	w  *writeTx // the transaction under tx (driver.go)
}

// args converts args on the caller's goroutine (resolveArgs). A panic in
// a Value method ends the transaction, as a panic in the statement would
// (writeTx.do); a Goexit goes on, and DB.Tx rolls back.
func (t *Tx) args(args []any) (out []any, err error) {
	converted := false
	defer func() {
		if converted {
			return
		}
		v := recover() // nil in a Goexit, which goes on
		if v == nil {
			return
		}
		if t.w == nil {
			panic(v)
		}
		out, err = nil, t.w.fail(v)
	}()
	out, err = resolveArgs(args)
	converted = true
	return out, err
}

// Exec runs one statement (or, without arguments, several) in the
// transaction, capturing its changes.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	args, err := t.args(args)
	if err != nil {
		return nil, err
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// Query runs a query, or a write with RETURNING, in the transaction. A
// script's statements run one by one, each given all of args (bound by
// name or by position in that statement, as SQLite's driver binds a
// script); the rows are the last statement's.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	args, err := t.args(args)
	if err != nil {
		return nil, err
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRow is Query for at most one row.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	args, err := t.args(args)
	if err != nil {
		return rowError(ctx, err)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// Tx runs fn in one local write transaction, committing if fn returns nil
// and rolling back otherwise (or if fn panics; the panic goes on). Reads
// inside see the transaction's writes. ctx bounds the whole transaction.
func (d *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	if err := d.check(); err != nil {
		return err
	}
	var w *writeTx // conn.BeginTx tells which
	tx, err := d.SQL().BeginTx(context.WithValue(ctx, lentKey{}, &w), nil)
	if err != nil {
		return err
	}
	g := goid.Get()
	d.inTx.Store(g, struct{}{})
	d.inTxN.Add(1)
	// returned: fn returned. If it did not, it panicked (the panic goes
	// on) or ended the goroutine with runtime.Goexit (t.FailNow in a
	// test): the deferred call runs in both cases, and rolls back, giving
	// the writer back; a recover would miss the Goexit, and the
	// transaction would hold the writer for good.
	returned := false
	defer func() {
		d.inTx.Delete(g)
		d.inTxN.Add(-1)
		if !returned {
			tx.Rollback()
		}
	}()
	err = fn(&Tx{tx, w})
	returned = true
	if err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Pull applies the server's changes since the last pull, rebasing the
// local unpushed changes on top. It reports whether anything changed.
func (d *DB) Pull(ctx context.Context) (bool, error) {
	d.interruptLive()
	res, err := d.pull(ctx, &messages.Pull{})
	return res.Changed, err
}

// Push sends the local changes the server does not have yet.
func (d *DB) Push(ctx context.Context) error {
	d.interruptLive()
	return d.push(ctx)
}

func (d *DB) push(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	// A conflict may make the push pull first: its changes are news too.
	res, err := closed(d.sync.Push(ctx, d.subscribed()))
	d.pushed.Add(int64(res.Pushed))
	if p := res.Pulled; p.Changed {
		d.publish(Change{Revision: p.Revision, Tables: slices.Compact(slices.Sorted(slices.Values(p.Tables)))})
	}
	return err
}

// Sync pushes, then pulls (also when the push leaves conflicts waiting).
func (d *DB) Sync(ctx context.Context) error {
	perr := d.Push(ctx)
	if perr != nil && !errors.Is(perr, ErrConflict) {
		return perr
	}
	_, err := d.Pull(ctx)
	return syncErr(perr, err)
}

// Checkpoint moves the WAL into the database file (keeping what a pull
// needs). It also happens automatically when the WAL grows large.
func (d *DB) Checkpoint(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	err := closedErr(d.db.Checkpoint(ctx, false))
	return err
}

// Stats reports the replica's state.
func (d *DB) Stats(ctx context.Context) (Stats, error) {
	if err := d.check(); err != nil {
		return Stats{}, err
	}
	var s Stats
	ls, err := closed(d.db.Stats(ctx))
	if err != nil {
		return s, err
	}
	m, err := closed(d.meta.Get(ctx))
	if err != nil {
		return s, err
	}
	nc, err := closed(d.net.Stats(ctx))
	if err != nil {
		return s, err
	}
	s.CDCOperations, s.MainWALSize, s.RevertWALSize = ls.CDCOperations, ls.MainWALSize, ls.RevertWALSize
	s.PagesPresent, s.PagesTotal = ls.PagesPresent, ls.PagesTotal
	s.Conflicts = ls.Conflicts
	s.fromMeta(m)
	s.LastPushUnixTime = max(s.LastPushUnixTime, ls.LastPushUnixTime) // pushes record it in the database
	s.PushedChanges = d.pushed.Load()
	s.NetworkSentBytes, s.NetworkReceivedBytes = nc.SentBytes, nc.ReceivedBytes
	return s, nil
}

// Close closes the database: the readers first, then every actor (the
// writer connection last). It returns the first actor panic, if any
// happened while the database was open.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	close(d.closing)
	d.stopLive()
	d.subsMu.Lock()
	d.subs = nil
	d.subsMu.Unlock()
	if d.sqldb != nil {
		d.sqldb.Close()
	}
	if d.reads != nil {
		d.reads.Close()
	}
	err := d.readers.Close()
	d.checkpointAtClose()
	d.sys.Stop()
	err = errors.Join(err, d.closePages(), d.unlock())
	d.mu.Lock()
	defer d.mu.Unlock()
	return errors.Join(append([]error{err}, d.panics...)...)
}

// checkpointAtClose empties the WAL into the database file, as SQLite does
// when its last connection closes, so that another program opening the
// closed replica read-write only to read it (sqlite3 app.db "SELECT ...")
// finds nothing to checkpoint and changes nothing. Best effort: a replica
// that cannot checkpoint now (modified outside syncdb, a partial replica
// whose server is away) closes as it is, and is as safe as before.
func (d *DB) checkpointAtClose() {
	if d.db == (dbactor.Handle{}) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := closedErr(d.db.Checkpoint(ctx, true)); err != nil {
		d.cfg.Logger.Debug("no checkpoint at close", "err", err)
	}
}

func (d *DB) closePages() error {
	if d.detach != nil {
		d.detach()
	}
	if d.pages != nil {
		return d.pages.Close()
	}
	return nil
}

// fromMeta fills in what the sync metadata says.
func (s *Stats) fromMeta(m *messages.Meta) {
	if m.SyncedRevision != nil {
		s.Revision = m.SyncedRevision.Revision
	}
	if m.LastPullUnixTime != nil {
		s.LastPullUnixTime = *m.LastPullUnixTime
	}
	if m.LastPushUnixTime != nil {
		s.LastPushUnixTime = *m.LastPushUnixTime
	}
}
