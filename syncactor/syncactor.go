// Package syncactor runs the sync workflows — bootstrap, pull, push — one at
// a time, by asking the actors that own the resources involved: netactor
// (HTTP), dbactor (the database) and metaactor (<db>-info). Serializing the
// workflows in one mailbox is what makes concurrent Pull, Push and Sync
// calls safe; local reads and writes never wait for it.
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package syncactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/pageactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// ErrPushRejected reports that the server refused a statement of a push;
// nothing of that push was applied.
var ErrPushRejected = errors.New("the server rejected the push")

// ErrRebootstrap reports that the server can no longer serve this
// replica's revision. syncdb serve pulls a replica from any revision of
// its history, also one its retention compacted away; this is for a
// database recreated since, or a server that forgets old revisions.
var ErrRebootstrap = errors.New("the server no longer has this replica's revision (the database was recreated, or the server dropped old revisions): " +
	"run syncdb recover PATH (or open it with Config.Recover) to download it again, keeping the local changes")

// Config configures the sync actor.
type Config struct {
	Sys            *actors.System
	DB             dbactor.Handle // Spawn stamps the three with the actor's level
	Net            netactor.Handle
	Meta           metaactor.Handle
	FS             fsx.FS
	Path           string // the database file
	ClientID       string
	SavedConfig    messages.SavedConfig // written with the first metadata
	LongPoll       time.Duration
	PushBatch      int   // split a push after this many changes, at transaction boundaries (0 = one batch)
	BootstrapChunk int64 // download the bootstrap in requests of about this many bytes (0 = one request)
	IgnoreTables   []string
	Attempts       int // tries of a push or pull after transient failures (default 3)
	// MaxRetryTime bounds a workflow's retries as a whole, the network
	// actor's retries of each request included (0 = 30 s; negative = no
	// retries).
	MaxRetryTime time.Duration
	// Progress, if set, is told how a download advances: phase "bootstrap"
	// or "pull", pages received so far, and the total (0 if unknown). No
	// bootstrap call begins once the workflow's context ended; the one
	// running then may end after the workflow's Ask returned.
	Progress func(phase string, pages, total int64)
	Clock    actors.Clock
	Logger   *slog.Logger
}

// Defaults of Config.
const (
	DefaultAttempts     = 3
	DefaultMaxRetryTime = 30 * time.Second
)

// withDefaults fills the zero fields that have a default: FS fsx.OS,
// Clock actors.RealClock, a discarding Logger, Attempts DefaultAttempts,
// MaxRetryTime DefaultMaxRetryTime.
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
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.MaxRetryTime == 0 {
		cfg.MaxRetryTime = DefaultMaxRetryTime
	}
	return cfg
}

// Spawn starts the sync actor.
func Spawn(cfg Config) (Handle, error) {
	cfg = cfg.withDefaults()
	cfg.DB, cfg.Net, cfg.Meta = cfg.DB.From(actors.LevelSync), cfg.Net.From(actors.LevelSync), cfg.Meta.From(actors.LevelSync)
	s := &syncActor{cfg: cfg, files: layout.For(cfg.Path), ignored: map[string]bool{}}
	for _, t := range cfg.IgnoreTables {
		s.ignored[t] = true
	}
	ref, err := cfg.Sys.Spawn("sync", actors.LevelSync, s.receive, nil)
	return Handle{ref}, err
}

type syncActor struct {
	cfg     Config
	files   layout.Files // cfg.Path's
	ignored map[string]bool
	// until ends the retries of the running workflow's requests (the
	// actor runs one workflow at a time).
	until time.Time
}

func (s *syncActor) receive(msg any) {
	switch m := msg.(type) {
	case *messages.Bootstrap:
		if m.Partial != nil {
			m.Respond(struct{}{}, s.bootstrapPartial(m.Context(), m.Partial))
			return
		}
		m.Respond(struct{}{}, s.bootstrap(m.Context()))
	case *messages.Pull:
		m.Respond(s.pull(m.Context(), m))
	case *messages.CheckRemote:
		m.Respond(struct{}{}, s.checkRemote(m.Context(), m.Old))
	case *messages.RevisionKept:
		m.Respond(s.revisionKept(m.Context()))
	case *messages.Push:
		m.Respond(s.push(m.Context(), m.Tables))
	default:
		if f, ok := msg.(interface{ Fail(error) }); ok {
			f.Fail(fmt.Errorf("syncactor: unexpected message %T", msg))
		}
	}
}

func (s *syncActor) meta(ctx context.Context) (*messages.Meta, error) {
	return s.cfg.Meta.Get(ctx)
}

func (s *syncActor) updateMeta(ctx context.Context, fn func(*messages.Meta) error) error {
	_, err := s.cfg.Meta.Update(context.WithoutCancel(ctx), fn)
	return err
}

// retry runs op, one attempt of a workflow, with netactor.Retry: up to
// Attempts times while it fails transiently (netactor.IsTransient),
// waiting 200 ms, then twice as long each time, on the actor clock. One
// budget, MaxRetryTime, bounds the whole: the network actor stops
// retrying a request when it is spent (s.until, passed as RetryUntil), and
// so does retry (otherwise each attempt would retry its requests for the
// whole budget again).
func (s *syncActor) retry(ctx context.Context, op func() error) error {
	s.until = s.cfg.Clock.Now().Add(max(0, s.cfg.MaxRetryTime))
	defer func() { s.until = time.Time{} }()
	p := netactor.RetryPolicy{
		InitialInterval: 200 * time.Millisecond,
		Multiplier:      2,
		NoJitter:        true,
		MaxInterval:     s.cfg.MaxRetryTime,
		MaxElapsedTime:  s.cfg.MaxRetryTime, // negative: once
		MaxAttempts:     s.cfg.Attempts,
	}
	return netactor.Retry(ctx, s.cfg.Clock, p, op, func(attempt int, err error, wait time.Duration) {
		s.cfg.Logger.Debug("retrying after a transient failure", "attempt", attempt, "wait", wait, "err", err)
	})
}

// bootstrap downloads the database into <db>-bootstrap, records the
// metadata, then moves the file into place (finishFull's steps). A crash
// before the metadata leaves no metadata (the next Open starts over); a
// crash after it leaves the file to be moved (dbactor's MoveBootstrap, at
// the next Open). The decisions are fullDownload's; this is their I/O.
func (s *syncActor) bootstrap(ctx context.Context) error {
	var f fsx.File
	d := fullDownload{chunk: chunkPages(s.cfg.BootstrapChunk)}
	var hash uint64 // the file's content hash, if hashed
	var hashed bool
	err := s.retry(ctx, func() error {
		if f != nil {
			f.Close()
		}
		var err error
		f, err = s.cfg.FS.OpenFile(s.files.Bootstrap, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		d.restart()
		hashed = false
		w := newRunWriter(ctx, f)
		defer w.close() // ends the attempt: a late callback touches nothing
		for {
			req, err := d.request()
			if err != nil {
				return err
			}
			info, err := s.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
				Req: req, RetryUntil: s.until,
				OnHeader: func(h *syncpb.PullUpdatesRespProtoBody) error {
					return w.gate.run(func() error {
						d.header(h)
						return nil
					})
				},
				OnPage: func(pgno uint32, data []byte) error {
					return w.gate.run(func() error {
						got, total, err := d.page(pgno)
						if err != nil {
							return err
						}
						s.progress("bootstrap", got, total)
						return w.addLocked(pgno, data)
					})
				},
			})
			if err == nil {
				err = w.flush()
			}
			if err != nil {
				return err
			}
			if d.answered(info.Database) {
				hash, hashed = w.contentHash(d.hdr.DbSize)
				return nil
			}
		}
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return fmt.Errorf("bootstrap: %w", err)
	}
	facts := bootFacts{revision: d.hdr.ServerRevision, size: d.hdr.DbSize, database: d.database}
	return s.finishBoot(ctx, f, finishFull(d.hdr.DbSize, hashed), facts, hash, nil)
}

// finishBoot carries out a downloaded bootstrap's steps (finishFull's or
// finishPartial's) on its file f, still open: a step that fails ends it,
// closing f if it is still open. hash is the run writer's (a full
// bootstrap's stamp), present the pages a partial one holds.
func (s *syncActor) finishBoot(ctx context.Context, f fsx.File, steps []bootStep, b bootFacts, hash uint64, present *roaring.Bitmap) error {
	open := true
	fail := func(err error) error {
		if open {
			f.Close()
		}
		return err
	}
	for _, st := range steps {
		var err error
		switch st.op {
		case opTruncate:
			err = f.Truncate(st.size)
		case opSync:
			err = f.Sync()
		case opClose:
			open = false
			err = f.Close()
		case opSyncClose:
			open = false
			err = errors.Join(f.Sync(), f.Close())
		case opInvalid:
			err = fmt.Errorf("%w: %v", errBadStep, st)
		case opRefuse:
			// A refusal without its reason must still stop the bootstrap.
			err = st.err
			if err == nil {
				err = fmt.Errorf("%w: %v", errBadStep, st)
			}
		case opPresence:
			// The log is pageactor's file: Create writes it (and refuses
			// while a Pages has it open).
			err = pageactor.Create(s.cfg.FS, s.files, present)
		case opFailpoint:
			failpoint.Hit(st.name, s.cfg.Path)
		case opStamp:
			if st.hashed {
				b.stamp, err = dbactor.StampWithHash(s.files.Bootstrap, hash)
			} else {
				b.stamp, err = dbactor.StampOf(s.files.Bootstrap) // read the file back
			}
		case opMeta:
			b.clientID, b.saved, b.now = s.cfg.ClientID, s.cfg.SavedConfig, s.cfg.Clock.Now().Unix()
			err = s.updateMeta(ctx, func(m *messages.Meta) error {
				bootMeta(m, b)
				return nil
			})
		case opMove:
			err = s.cfg.DB.MoveBootstrap(ctx)
		default:
			err = fmt.Errorf("%w: unknown step %v", errBadStep, st)
		}
		if err != nil {
			return fail(err)
		}
	}
	return nil
}

func (s *syncActor) progress(phase string, pages, total int64) {
	if s.cfg.Progress != nil {
		s.cfg.Progress(phase, pages, total)
	}
}

// bootstrapPartial downloads part of the database into a full-size file
// with holes, records which pages it holds (pageactor's presence log),
// then the metadata, then moves the file into place (finishPartial's
// steps). The decisions are partialRequest's and partialDownload's.
func (s *syncActor) bootstrapPartial(ctx context.Context, p *messages.PartialBootstrap) error {
	req, err := partialRequest(p)
	if err != nil {
		return err
	}
	var f fsx.File
	var d partialDownload
	d.restart()
	err = s.retry(ctx, func() error {
		if f != nil {
			f.Close()
		}
		// The callbacks use this attempt's file, af, not f, which the next
		// attempt replaces; the gate ends them with the attempt.
		af, err := s.cfg.FS.OpenFile(s.files.Bootstrap, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		f = af
		gate := attemptGate{ctx: ctx}
		defer gate.end(nil)
		d.restart()
		info, err := s.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
			Req: req, RetryUntil: s.until,
			OnHeader: func(h *syncpb.PullUpdatesRespProtoBody) error {
				return gate.run(func() error { return af.Truncate(d.header(h)) })
			},
			OnPage: func(pgno uint32, data []byte) error {
				return gate.run(func() error {
					got, err := d.page(pgno)
					if err != nil {
						return err
					}
					s.progress("bootstrap", got, 0)
					_, err = af.WriteAt(data, int64(pgno-1)*wire.PageSize)
					return err
				})
			},
		})
		gate.end(nil)
		d.answered(info.Database)
		return err
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return fmt.Errorf("partial bootstrap: %w", err)
	}
	facts := bootFacts{revision: d.hdr.ServerRevision, size: d.hdr.DbSize, database: d.database, partial: p}
	return s.finishBoot(ctx, f, finishPartial(d.hdr.DbSize, d.present.Contains(1)), facts, 0, d.present)
}

// errAttemptOver is returned to a download callback that comes after its
// attempt ended (see attemptGate), or its context did.
var errAttemptOver = errors.New("the bootstrap attempt is over")

// attemptGate ends one bootstrap attempt's download callbacks. They run on
// a netactor goroutine while the attempt waits in its PullUpdates Ask; but
// an Ask whose context ends returns at once, and netactor may still hand
// out a page it read ahead. Each callback runs under the gate, and once
// ctx ended or end ran every later one gets errAttemptOver and touches
// nothing (the file, the download's state, the user's Progress). end
// waits for a callback in flight, so none runs after the attempt returned;
// the check of ctx stops the callbacks as soon as the caller's Ask (which
// returns when ctx ends, before the attempt does) may have returned.
type attemptGate struct {
	ctx  context.Context // nil: no check
	mu   sync.Mutex
	over bool
}

func (g *attemptGate) run(fn func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return errAttemptOver
	}
	if g.ctx != nil && g.ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errAttemptOver, g.ctx.Err())
	}
	return fn()
}

// end closes the gate, the first time running fn under it.
func (g *attemptGate) end(fn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.over && fn != nil {
		fn()
	}
	g.over = true
}

// runWriter writes pages that arrive in page order as runs of up to 1 MiB,
// one write per run. A run is written by a goroutine of its own while the
// next one fills, so that reading the network and writing the disk overlap.
// Two buffers take turns: the one being filled and at most one being
// written. Call close when done with it: add and flush after it return
// errAttemptOver (a late page of a cancelled attempt is dropped, and never
// sent on the closed channel of runs).
//
// The writer goroutine also hashes each run it wrote (dbactor.RunHash), so
// that the bootstrap's file stamp needs no second read of the whole file.
type runWriter struct {
	gate  attemptGate // add, flush and close; the callbacks of its attempt
	f     fsx.File
	buf   []byte
	first uint32 // page number of buf's first page
	next  uint32 // the page that follows those added, from page 1 on; 0 once one came out of that order
	free  chan []byte
	runs  chan pageRun
	done  chan struct{}

	hash uint64 // of the runs written; the writer goroutine's until flush returns

	mu  sync.Mutex
	err error // the first write error
}

type pageRun struct {
	first uint32
	data  []byte
}

const runBytes = 1 << 20

func newRunWriter(ctx context.Context, f fsx.File) *runWriter {
	w := &runWriter{gate: attemptGate{ctx: ctx}, f: f, next: 1, free: make(chan []byte, 1), runs: make(chan pageRun, 1), done: make(chan struct{})}
	w.buf = make([]byte, 0, runBytes)
	w.free <- make([]byte, 0, runBytes)
	go w.write()
	return w
}

func (w *runWriter) write() {
	defer close(w.done)
	for r := range w.runs {
		if w.failed() == nil {
			if _, err := w.f.WriteAt(r.data, int64(r.first-1)*wire.PageSize); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			} else {
				w.hash ^= dbactor.RunHash(r.first, r.data)
			}
		}
		w.free <- r.data[:0]
	}
}

func (w *runWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *runWriter) add(pgno uint32, data []byte) error {
	return w.gate.run(func() error { return w.addLocked(pgno, data) })
}

// addLocked is add for a caller that holds the gate (w.gate.run).
func (w *runWriter) addLocked(pgno uint32, data []byte) error {
	if len(w.buf) > 0 && (pgno != w.first+uint32(len(w.buf)/wire.PageSize) || len(w.buf)+len(data) > runBytes) {
		if err := w.send(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.first = pgno
	}
	if pgno == w.next {
		w.next++
	} else {
		w.next = 0
	}
	w.buf = append(w.buf, data...)
	return nil
}

// contentHash returns, after a successful flush, the content hash of a
// file of pages pages, if what was added is exactly its pages 1 to pages,
// each once and in order; otherwise ok is false (a page sent twice would
// cancel its own share, one never sent is not zero in the hash) and the
// caller hashes the file.
func (w *runWriter) contentHash(pages uint64) (hash uint64, ok bool) {
	if w.next == 0 || uint64(w.next-1) != pages {
		return 0, false
	}
	return w.hash, true
}

// send hands the filled buffer to the writer and takes the other one back
// (waiting for its write to finish).
func (w *runWriter) send() error {
	w.runs <- pageRun{first: w.first, data: w.buf}
	w.buf = <-w.free
	return w.failed()
}

// flush returns once every page added so far is written.
func (w *runWriter) flush() error {
	return w.gate.run(func() error {
		if len(w.buf) > 0 {
			w.send()
		}
		b := <-w.free // the other buffer is back: no write in flight
		w.free <- b
		return w.failed()
	})
}

// close ends the writer's attempt (a callback in flight finishes first),
// then waits for the writer goroutine to end. The file stays open.
func (w *runWriter) close() {
	w.gate.end(func() { close(w.runs) })
	<-w.done
}

// revisionKept asks the server whether it can still pull the replica from
// its synced revision: a pull from it limited to page 1. (syncdb serve
// answers pulls from any revision of its history, compacted or not; a
// recreated database, or another server, may not.)
func (s *syncActor) revisionKept(ctx context.Context) (bool, error) {
	m, err := s.meta(ctx)
	if err != nil || m.SyncedRevision == nil {
		return true, err
	}
	sel, err := wire.EncodeSelector(wire.SelectorRange(0, 1))
	if err != nil {
		return false, err
	}
	err = s.retry(ctx, func() error {
		_, err := s.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
			Req:        &syncpb.PullUpdatesReqProtoBody{ClientRevision: m.SyncedRevision.Revision, ServerPagesSelector: sel},
			RetryUntil: s.until,
		})
		return err
	})
	if errors.Is(err, netactor.ErrRevisionGone) {
		return false, nil
	}
	return err == nil, err
}

// ErrWrongDatabase reports a URL that serves another database than the one
// a replica came from.
var ErrWrongDatabase = errors.New("the URL serves another database than this replica's")

// checkRemote answers CheckRemote: the URL must serve this replica's
// database. The server's name for it decides when both sides know it;
// otherwise the URL must serve the replica's revision with the same page 1:
// page 1 as of that revision (ServerRevision), not a pull from it, which
// sends page 1 only if it changed since.
func (s *syncActor) checkRemote(ctx context.Context, old string) error {
	m, err := s.meta(ctx)
	if err != nil || m.SyncedRevision == nil {
		return err // nothing pulled yet: the first pull brings that database
	}
	sel, err := wire.EncodeSelector(wire.SelectorRange(0, 1))
	if err != nil {
		return err
	}
	var info messages.PullInfo
	err = s.retry(ctx, func() error {
		var err error
		info, err = s.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
			Req:        &syncpb.PullUpdatesReqProtoBody{ServerRevision: m.SyncedRevision.Revision, ServerPagesSelector: sel},
			RetryUntil: s.until,
			Keep:       roaring.BitmapOf(0),
		})
		return err
	})
	page1 := info.Kept[1]
	theirs := info.Database
	var he *netactor.HTTPError
	if errors.As(err, &he) {
		theirs = he.Database
	}
	mine := m.SyncDB.Database
	wrong := func(why string) error {
		return fmt.Errorf("%w: this replica came from %s%s; the new URL serves %s: %s (nothing was saved; "+
			"use the old URL, or download the other database into a new PATH)", ErrWrongDatabase, old, named(mine), named(theirs), why)
	}
	switch {
	case mine != "" && theirs != "" && mine != theirs:
		return wrong("another database")
	case mine != "" && theirs == mine:
		return nil // the same database, whatever its revisions
	case errors.Is(err, netactor.ErrRevisionGone):
		return wrong("it does not know this replica's revision " + m.SyncedRevision.Revision)
	case err != nil:
		return fmt.Errorf("check that the new URL serves this replica's database (nothing was saved): %w", err)
	}
	base, err := s.cfg.DB.BasePage(ctx, 1)
	if err != nil {
		return err
	}
	if !bytes.Equal(base, page1) {
		return wrong("its page 1 at this replica's revision differs")
	}
	return nil
}

// named shows a database identity in a message.
func named(id string) string {
	if id == "" {
		return ""
	}
	return " (database " + id + ")"
}
