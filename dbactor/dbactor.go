// Package dbactor is the database actor: it owns the single writer
// connection of a synced database and every file of the database except
// <db>-info (which metaactor owns).
//
// It runs local write transactions and captures their changes in the same
// transaction (a preupdate hook plus schema diffs, into _syncdb_changes),
// applies pulls on top of the synced base and rebases the local changes
// over them, and checkpoints without losing the base.
//
// # The synced base
//
// At every moment the client can reconstruct the server's pages at its
// synced revision, byte for byte: the database file, overlaid by frames
// 1..W of the WAL, overlaid by the images in <db>-revert (see
// messages.Base). Frames after W are the local layer. A checkpoint copies
// local frames into the database file, so it first saves the base images of
// the pages it will overwrite into <db>-revert.
//
// # Applying a pull
//
// ApplyPull runs as one actor message, so no local write interleaves:
//
//  1. save the local change log to <db>-syncdb-replay, whose header
//     records the pending pull and the true header of the new base's page 1
//     (rewritten in place and fsynced; a torn one is no pending pull): the
//     journal is the pull's durable record, -info is not written;
//  2. T1: one transaction writing, through sqlite_dbpage, the base image of
//     every locally changed page the server did not change and the server's
//     image of every page it did (page 1 with a bumped schema cookie, so
//     that every connection reloads the schema), truncating if the database
//     shrank. After T1 the database is the server's at the new revision, and
//     T1's commit frame is the new W;
//  3. T2: replay the saved local changes above the replay floor (read from
//     turso_sync_last_change_id in the newly applied pages) as SQL,
//     capturing them again in a new pull generation;
//  4. record the new revision and base (an empty revert store, page 1's
//     true header), with the pull's Before as Pulled (a journal that names
//     it is a leftover): T2 wrote them in _syncdb_local, and -info takes
//     them deferred (written with the next update that writes; an open
//     after a crash takes them from the database: reconcileBase); the
//     journal stays, for the next pull to rewrite.
//
// A crash anywhere is recovered at the next open: before T1 committed the
// pull is abandoned (the database is untouched; the journal is removed and
// the directory synced, so that it cannot come back and take a later
// commit for T1); after, T2 is run from the journal if it did not commit,
// then step 4. Readers never see the state
// between T1 and T2: the facade holds new reads at a gate meanwhile.
//
// # Never losing a write
//
// T2 and pushes check every change against the row it meets and record
// conflicts (conflicts.go); a copy of the files takes a new client id
// (home.go) or, if it cannot be told from its original, is caught by the
// push chain (chain.go); the database file's stamp judges other programs
// by content (stamp.go), and a replica they changed stays readable.
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package dbactor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
)

// ErrPullPending reports a local write refused because an interrupted pull
// must be finished first.
var ErrPullPending = errors.New("an interrupted pull must be finished first")

// ErrCorruptJournal reports a replica that Open refuses because the pull
// journal (PATH-syncdb-replay) is not whole, or missing, while an
// interrupted pull's T1 has committed: the database holds the server's pages, and the journal
// was the only copy of the local changes not yet pushed. Taken for no
// pending pull, they would be lost without a word; the journal is left as
// it is.
var ErrCorruptJournal = errors.New("the pull journal is damaged or missing")

// ErrNewerJournal reports a replica that Open refuses because its pull
// journal is of a format newer than this release reads and records a
// pull that is not finished: only the release that wrote it can finish
// it. A finished pull's journal of a newer format is no obstacle.
var ErrNewerJournal = errors.New("the pull journal is a newer release's")

// ErrNoWriter reports a request refused because the writer connection
// could not be reopened (a pull replaces it after T1): a full disk, an I/O
// error. The next request tries to reopen it again.
var ErrNoWriter = errors.New("the writer connection is gone")

// Gate is how the actor holds readers back while a pull's two transactions
// commit one after the other (the facade implements it).
type Gate interface {
	Close() // wait until no read is starting, and hold new ones
	Open()
}

// Config configures the database actor.
type Config struct {
	Path     string // the database file
	FS       fsx.FS
	ClientID string // at spawn; a fork changes it in the metadata, which the actor reads
	Sys      *actors.System
	Meta     metaactor.Handle // the metadata actor (Spawn stamps it with the actor's level)
	Gate     Gate
	// IgnoreTables are captured (so they survive pulls) but never pushed;
	// they may lack a primary key.
	IgnoreTables []string
	// AutoCheckpointFrames: checkpoint (RESTART: the WAL file is reused)
	// after a write when the WAL has more frames than this not yet copied.
	// 0 = 4096 (16 MiB); negative = never.
	AutoCheckpointFrames int
	Clock                actors.Clock
	Logger               *slog.Logger
	VFS                  string // SQLite VFS for the database ("" = default); the simulator's crash recorder
	// SyncNormal commits local writes without waiting for the disk
	// (synchronous=NORMAL): faster, but a power loss (not a process crash)
	// may lose the last ones, never those a push sent (syncLocal). Pulls
	// and checkpoints stay durable.
	SyncNormal bool
	// OnCommit, if set, is called after each local write transaction
	// commits (in the actor's turn, on its goroutine or a Writer caller's:
	// it must not block).
	OnCommit func()
	// OnConflict decides conflicts instead of the default policy (nil).
	OnConflict OnConflict
	// NewClientID makes a client id for a copy (see home.go); Machine
	// replaces this machine's identity (tests).
	NewClientID func() string
	Machine     string
	// OnWALRead, if set, is called with the bytes of each read the scans
	// for the WAL's end make (tests: testhooks.Hooks.OnWALRead).
	OnWALRead func(n int)
	// WriterBusyTimeout, if positive, replaces the writer connection's
	// busy timeout (10 s; tests: testhooks.Hooks.WriterBusyTimeout).
	WriterBusyTimeout time.Duration
}

// DefaultAutoCheckpointFrames is Config.AutoCheckpointFrames when zero.
const DefaultAutoCheckpointFrames = 4096

// withDefaults fills the zero fields that have a default: FS fsx.OS,
// Clock actors.RealClock, a discarding Logger, AutoCheckpointFrames
// DefaultAutoCheckpointFrames.
func (cfg Config) withDefaults() Config {
	if cfg.FS == nil {
		cfg.FS = fsx.OS
	}
	if cfg.Clock == nil {
		cfg.Clock = actors.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AutoCheckpointFrames == 0 {
		cfg.AutoCheckpointFrames = DefaultAutoCheckpointFrames
	}
	return cfg
}

// Spawn starts the actor. Send it OpenDB before anything else. The Writer
// is the direct path for local writes (see Writer).
func Spawn(cfg Config) (Handle, *Writer, error) {
	cfg = cfg.withDefaults()
	cfg.Meta = cfg.Meta.From(actors.LevelDB)
	a := &dbActor{cfg: cfg, files: layout.For(cfg.Path), ignored: map[string]bool{}}
	for _, t := range cfg.IgnoreTables {
		a.ignored[t] = true
	}
	ref, err := cfg.Sys.Spawn("db", actors.LevelDB, a.receive, a.close)
	if err != nil {
		return Handle{}, nil, err
	}
	return Handle{ref}, &Writer{a: a, ref: ref}, nil
}

// Writer runs local write transactions on the caller's goroutine, inside
// the actor's turn (actors.Enter): the actor still owns the writer
// connection and its state, and no message runs meanwhile, but a write
// costs no mailbox round trip (two goroutine handoffs per write, the
// largest part of a one-row write's CPU after SQLite's own).
type Writer struct {
	a   *dbActor
	ref actors.Ref
}

// Exec runs a script as one local write transaction, capturing its
// changes in it, exactly as the actor would.
func (w *Writer) Exec(ctx context.Context, query string, args []any) (sql.Result, error) {
	var res sql.Result
	err := actors.Enter(ctx, w.ref, func() error {
		if err := w.a.ready(ctx); err != nil {
			return err
		}
		var err error
		res, err = w.a.exec(ctx, query, args)
		return err
	})
	return res, err
}

type dbActor struct {
	cfg     Config
	files   layout.Files // cfg.Path's
	ignored map[string]bool

	writer  *sql.DB
	conn    *sql.Conn
	dbFile  *os.File // read-only, open until close: never close an fd of a locked file early
	walFile *os.File
	meta    messages.Meta
	base    *baseReader
	cap     capture
	stmts   *sqlitex.StmtCache        // the user's DML, prepared on conn
	ostmts  *sqlitex.StmtCache        // syncdb's own statements, prepared on conn (own.go)
	inserts map[string]sqlitex.Insert // user statements as sqlitex.ReadInsert reads them (readInsert)
	pages   messages.LazyPages        // nil for a full replica
	// download: the sink of PATH-changes this actor handed out (Download)
	// and has not removed yet.
	download *download
	// boot: the sink of PATH-bootstrap this actor handed out
	// (BeginBootstrap) and has not closed yet.
	boot *bootSink

	opened    bool
	forceFull bool // inside durable(): a reopened writer stays synchronous=FULL
	// unsynced: SyncNormal, and local commits may not be on disk yet (set
	// at open too: a killed process leaves its last commits unsynced); a
	// push makes them durable before it sends them (syncLocal).
	unsynced bool
	// walPos: the end of the WAL's valid log after our last write (its
	// generation's salts, frame count, checksum): any other end is a
	// foreign write. Not its size: SQLite reuses the WAL from its start
	// after a checkpoint, over the frames of the older generation.
	walPos walfile.Position
	// walFrames: frames in the WAL after the last commit, from the WAL
	// hook (0: no commit since inTx cleared it).
	walFrames int
	// unfinished: a checkpoint copied the WAL but could not record it (a
	// failed -info write): it is finished before anything else runs.
	unfinished bool
	pending    bool                  // a pull's T1 committed but the pull is not finished
	pull       *messages.PendingPull // the pull pending is about (its journal's record)
	user       bool                  // a user statement is being prepared or run (see authorize)
	pragmaSet  bool                  // a user statement set a pragma on this writer connection (see refreshWriter)
	staleCache bool                  // the writer's page cache predates a T1 and is not yet emptied (see refreshWriter)
	// connLocked: a user statement on the writer ended by a panic or a
	// Goexit (see asUser), which may have left database/sql's lock on
	// a.conn held: closing it would wait forever (see dropConn).
	connLocked bool
	restamp    *messages.FileStamp // the database file's stamp to record: same content, new time
	detached   error               // the files were modified outside syncdb: read only (see detach)
	created    bool                // until recover ends: the database file did not exist at open, no pull ran on it
	denied     string              // the protected table the authorizer last refused
	// journalSynced: this process made the journal's directory entry
	// durable (writeJournal) and has not removed the file since.
	journalSynced bool
}

func (a *dbActor) receive(msg any) {
	switch m := msg.(type) {
	case *messages.OpenDB:
		a.pages = m.Pages
		if m.VFS != "" {
			a.cfg.VFS = m.VFS
		}
		m.Respond(struct{}{}, a.open(m.Context()))
	case *messages.Tx:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(struct{}{}, a.tx(m.Context(), m.Fn))
	case *messages.PendingChanges:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		p, err := a.pendingChanges(m.Context(), m.After, m.Limit, m.Peek, m.Unpushed)
		if err == nil && !m.Peek && len(p.Changes) > 0 {
			if m.RecordSent {
				err = a.recordSent(m.Context(), p.PullGen, p.Changes[len(p.Changes)-1].ID)
			} else {
				err = a.syncLocal(m.Context())
			}
		}
		m.Respond(p, err)
	case *messages.RecordPush:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(struct{}{}, a.recordPush(m.Context(), m.PullGen, m.UpTo, m.Time))
	case *messages.Download:
		m.Respond(a.startDownload())
	case *messages.BeginBootstrap:
		m.Respond(a.beginBootstrap(m.Partial))
	case *messages.FinishDownload:
		m.Respond(a.finishDownload(m.Sink, m.Steps))
	case *messages.MoveBootstrap:
		m.Respond(struct{}{}, moveBootstrap(a.cfg.FS, a.files))
	case *messages.DropDownload:
		a.dropIfCurrent(m.Download)
		m.Respond(struct{}{}, nil)
	case *messages.ApplyPull:
		if err := a.takeDownload(m.Download); err != nil {
			m.Fail(err)
			return
		}
		res, err := a.applyDownloaded(m)
		// The download is needed only until the pull is applied (or
		// failed to be): its space goes back before the answer.
		a.dropDownload()
		m.Respond(res, err)
	case *messages.Checkpoint:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		if m.Closing && a.walEmpty() {
			m.Respond(struct{}{}, nil)
			return
		}
		m.Respond(struct{}{}, a.checkpoint(m.Context(), false))
	case *messages.ListConflicts:
		if !a.opened {
			m.Fail(errors.New("database not open"))
			return
		}
		if err := a.haveWriter(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(a.listConflicts(m.Context(), m.All))
	case *messages.ResolveConflict:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(struct{}{}, a.resolveConflict(m.Context(), m.ID, m.Keep))
	case *messages.Chain:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		st, ok, err := a.chainAt(m.Context(), m.UpTo)
		m.Respond(messages.ChainInfo{OK: ok, Value: ChainValue(st.Hash)}, err)
	case *messages.CheckMarks:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(a.checkMarks(m.Context(), m.Mark, m.Chain))
	case *messages.Fork:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(a.fork(m.Context(), m.Why, m.Inherit))
	case *messages.BasePage:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(a.base.page(nil, m.Pgno))
	case *messages.SaveLocal:
		if !a.opened {
			m.Fail(errors.New("database not open"))
			return
		}
		if err := a.haveWriter(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(a.saveLocal(m.Context(), m.Path))
	case *messages.ImportLocal:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(struct{}{}, a.importLocal(m.Context(), m.Path))
	case *messages.MarkCloned:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(struct{}{}, a.markCloned(m.Context(), m.Why))
	case *messages.ReplicaStatus:
		if err := a.ready(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		var st messages.Status
		var err error
		if st.Conflicts, err = a.listConflicts(m.Context(), false); err == nil {
			st.Cloned, err = a.clonedReason(m.Context())
		}
		m.Respond(st, err)
	case *messages.DBStats:
		if !a.opened {
			m.Fail(errors.New("database not open"))
			return
		}
		if err := a.haveWriter(m.Context()); err != nil {
			m.Fail(err)
			return
		}
		m.Respond(a.stats(m.Context()))
	default:
		if f, ok := msg.(interface{ Fail(error) }); ok {
			f.Fail(fmt.Errorf("dbactor: unexpected message %T", msg))
		}
	}
}

// ready checks that a request can run: the database is open, the request
// not abandoned, an interrupted pull finished.
func (a *dbActor) ready(ctx context.Context) error {
	if !a.opened {
		return errors.New("database not open")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.detached != nil {
		return a.detached
	}
	if err := a.haveWriter(ctx); err != nil {
		return err
	}
	if a.pending {
		if err := a.durable(ctx, func() error { return a.recoverPull(ctx) }); err != nil {
			return fmt.Errorf("%w: %w", ErrPullPending, err)
		}
	}
	return nil
}

// haveWriter makes sure the writer connection is there: a pull that could
// not reopen it left none.
func (a *dbActor) haveWriter(ctx context.Context) error {
	if a.conn != nil {
		if a.staleCache {
			return a.refreshWriter(ctx)
		}
		return nil
	}
	if err := a.reopenWriter(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNoWriter, err)
	}
	return nil
}

// updateMeta changes -info durably through the metadata actor and keeps
// the actor's copy in step.
func (a *dbActor) updateMeta(ctx context.Context, fn func(*messages.Meta) error) error {
	return a.updateMetaMaybeDeferred(ctx, fn, false)
}

// updateMetaMaybeDeferred is updateMeta; with deferred, -info is not
// written (messages.UpdateMeta.Defer).
func (a *dbActor) updateMetaMaybeDeferred(ctx context.Context, fn func(*messages.Meta) error, deferred bool) error {
	update := a.cfg.Meta.Update
	if deferred {
		update = a.cfg.Meta.UpdateDeferred
	}
	m, err := update(context.WithoutCancel(ctx), fn)
	if err != nil {
		return fmt.Errorf("update metadata: %w", err)
	}
	a.meta = *m
	return nil
}

// applyDownloaded answers ApplyPull once its download is closed.
func (a *dbActor) applyDownloaded(m *messages.ApplyPull) (messages.PullResult, error) {
	if err := a.ready(m.Context()); err != nil {
		return messages.PullResult{}, err
	}
	var before map[string][2]string
	if m.Tables {
		var err error
		if before, err = a.schemaSQL(m.Context()); err != nil {
			return messages.PullResult{}, err
		}
	}
	res := messages.PullResult{Revision: m.Revision}
	err := a.durable(m.Context(), func() (err error) {
		res.Changed, err = a.applyPull(m.Context(), m.Revision, m.DBSize, a.files.Changes)
		return err
	})
	if err == nil && res.Changed && m.Tables {
		if res.Tables, err = a.changedPullTables(m.Context(), a.files.Changes, before); err != nil {
			// The pull is applied; only the report is missing.
			a.cfg.Logger.Warn("finding the tables a pull changed", "err", err)
			err = nil
		}
	}
	if err == nil && res.Changed && a.pages != nil {
		// A partial replica checkpoints after each pull that changed it,
		// so that its fetches move to the new revision (finishCheckpoint)
		// and do not depend on the server keeping old ones.
		if cerr := a.checkpoint(context.WithoutCancel(m.Context()), false); cerr != nil {
			a.cfg.Logger.Warn("checkpoint after a pull (partial replica)", "err", cerr)
		}
	}
	return res, err
}

func (a *dbActor) now() time.Time { return a.cfg.Clock.Now() }

// close runs when the actor stops: the readers are already closed, so the
// writer is the last connection; it does not checkpoint on close. A clean
// close records the WAL end, so that the next open can tell foreign writes.
func (a *dbActor) close() {
	// Without a writer connection (a pull could not reopen it), or with
	// one whose page cache is stale (refreshWriter), there is no clean
	// close to record: the next open recovers as after a crash.
	if a.opened && !a.pending && a.detached == nil && a.conn != nil && !a.staleCache {
		if a.cfg.SyncNormal {
			// The recorded end must be on disk: one durable commit flushes
			// every frame before it.
			a.durable(context.Background(), func() error {
				_, err := a.conn.ExecContext(context.Background(), "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('closed', ?)", a.now().Unix())
				return err
			})
		}
		if pos, err := a.walEnd(); err == nil {
			p := pos
			// -info learns what the pushes recorded in the database only
			// (pushed.go), for tools that read it.
			pushed, perr := lastPushed(context.Background(), a.conn, &a.meta)
			if err := a.updateMeta(context.Background(), func(m *messages.Meta) error {
				m.SyncDB.CleanClose = &p
				if perr == nil && pushed.Recorded {
					m.LastPushedPullGenHint, m.LastPushedChangeIDHint = pushed.Gen, pushed.After
				}
				if perr == nil && pushed.Time > 0 && (m.LastPushUnixTime == nil || *m.LastPushUnixTime < pushed.Time) {
					m.LastPushUnixTime = &pushed.Time
				}
				return nil
			}); err != nil {
				a.cfg.Logger.Warn("recording clean close", "err", err)
			}
		}
	}
	// A pull's download the stop interrupted (its requester stopped
	// first) is of no use any more.
	a.dropDownload()
	// So is a bootstrap's (the file stays, for the facade to remove).
	a.dropBootstrap()
	a.closeFiles()
}

func (a *dbActor) closeFiles() {
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
		if a.writerBusy() {
			// database/sql's close would wait for those rows forever (see
			// refreshWriter): the connection is left to the process.
			a.cfg.Logger.Warn("closing the database: a statement on the writer connection is still open; the connection is not closed")
		} else {
			a.conn.Close()
		}
		a.conn = nil
	}
	if a.writer != nil {
		a.writer.Close()
		a.writer = nil
	}
	if a.base != nil && a.base.revert != nil {
		a.base.revert.close()
	}
	if a.walFile != nil {
		a.walFile.Close()
		a.walFile = nil
	}
	if a.dbFile != nil {
		a.dbFile.Close()
		a.dbFile = nil
	}
	a.opened = false
}

func fileStamp(path string) (*messages.FileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &messages.FileStamp{Size: st.Size(), MtimeNS: st.ModTime().UnixNano()}, nil
}
