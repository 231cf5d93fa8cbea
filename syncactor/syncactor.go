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
// the next Open). The decisions are fullDownload's; the file is dbactor's
// (BeginBootstrap, FinishDownload, MoveBootstrap): this is the rest of
// their I/O, the network and metaactor.
func (s *syncActor) bootstrap(ctx context.Context) error {
	var sink messages.BootstrapSink
	d := fullDownload{chunk: chunkPages(s.cfg.BootstrapChunk)}
	var hashed bool // the sink's runs hash the file (BootstrapSink.Hashed)
	err := s.retry(ctx, func() error {
		// Each attempt begins again, the file created anew; dbactor
		// closes the previous attempt's sink, which refuses its late
		// pages. The callbacks use this attempt's sink, as.
		as, err := s.cfg.DB.BeginBootstrap(ctx, false)
		sink = as
		if err != nil {
			return err
		}
		d.restart()
		hashed = false
		gate := attemptGate{ctx: ctx}
		defer gate.end() // ends the attempt: a late callback touches nothing
		for {
			req, err := d.request()
			if err != nil {
				return err
			}
			info, err := s.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
				Req: req, RetryUntil: s.until,
				OnHeader: func(h *syncpb.PullUpdatesRespProtoBody) error {
					return gate.run(func() error {
						d.header(h)
						return nil
					})
				},
				// On netactor's goroutine, straight into the sink's run
				// writer: no message per page.
				OnPage: func(pgno uint32, data []byte) error {
					return gate.run(func() error {
						got, total, err := d.page(pgno)
						if err != nil {
							return err
						}
						s.progress("bootstrap", got, total)
						return as.Add(pgno, data)
					})
				},
			})
			if err == nil {
				err = gate.run(as.Flush)
			}
			if err != nil {
				return err
			}
			if d.answered(info.Database) {
				hashed = as.Hashed(d.hdr.DbSize)
				return nil
			}
		}
	})
	if err != nil {
		s.dropBoot(ctx, sink)
		return fmt.Errorf("bootstrap: %w", err)
	}
	facts := bootFacts{revision: d.hdr.ServerRevision, size: d.hdr.DbSize, database: d.database}
	return s.finishBoot(ctx, sink, finishFull(d.hdr.DbSize, hashed), facts, nil)
}

// dropBoot closes a failed bootstrap's download, if it has one (dbactor's
// FinishDownload without steps); the file stays, for the facade to remove.
func (s *syncActor) dropBoot(ctx context.Context, sink messages.BootstrapSink) {
	if sink == nil {
		return
	}
	if _, err := s.cfg.DB.FinishDownload(ctx, sink, nil); err != nil {
		s.cfg.Logger.Debug("closing a failed bootstrap's download", "err", err)
	}
}

// downloadSteps splits a plan (finishFull's or finishPartial's) into the
// steps on the downloaded file, which dbactor runs (FinishDownload), and
// the rest, which come after them and run here. The file steps are the
// plan's first ones, up to the first other step. A step a plan should not
// hold (the zero one, an opRefuse without its error, an unknown op)
// becomes a refusal with errBadStep: dbactor closes the file and runs
// nothing after it.
func downloadSteps(steps []bootStep) (file []messages.DownloadStep, rest []bootStep) {
	for i, st := range steps {
		var ds messages.DownloadStep
		switch st.op {
		case opTruncate:
			ds = messages.DownloadStep{Op: messages.DownloadTruncate, Size: st.size}
		case opSync:
			ds = messages.DownloadStep{Op: messages.DownloadSync}
		case opClose:
			ds = messages.DownloadStep{Op: messages.DownloadClose}
		case opSyncClose:
			ds = messages.DownloadStep{Op: messages.DownloadSyncClose}
		case opStamp:
			ds = messages.DownloadStep{Op: messages.DownloadStamp, Hashed: st.hashed}
		case opRefuse:
			// A refusal without its reason must still stop the bootstrap.
			if st.err != nil {
				ds = messages.DownloadStep{Op: messages.DownloadRefuse, Err: st.err}
				break
			}
			fallthrough
		case opInvalid:
			return append(file, messages.DownloadStep{Op: messages.DownloadRefuse, Err: fmt.Errorf("%w: %v", errBadStep, st)}), nil
		case opPresence, opFailpoint, opMeta, opMove:
			return file, steps[i:]
		default:
			return append(file, messages.DownloadStep{Op: messages.DownloadRefuse, Err: fmt.Errorf("%w: unknown step %v", errBadStep, st)}), nil
		}
		file = append(file, ds)
	}
	return file, nil
}

// finishBoot carries out a downloaded bootstrap's steps (finishFull's or
// finishPartial's): the file steps by dbactor, which ends the download
// (sink) and closes its file whatever happens, then the rest; a step that
// fails ends it. present is the pages a partial bootstrap holds.
func (s *syncActor) finishBoot(ctx context.Context, sink messages.BootstrapSink, steps []bootStep, b bootFacts, present *roaring.Bitmap) error {
	file, rest := downloadSteps(steps)
	stamp, err := s.cfg.DB.FinishDownload(ctx, sink, file)
	if err != nil {
		return err
	}
	if stamp != nil {
		b.stamp = stamp
	}
	for _, st := range rest {
		var err error
		switch st.op {
		case opPresence:
			// The log is pageactor's file: Create writes it (and refuses
			// while a Pages has it open).
			err = pageactor.Create(s.cfg.FS, s.files, present)
		case opFailpoint:
			failpoint.Hit(st.name, s.cfg.Path)
		case opMeta:
			b.clientID, b.saved, b.now = s.cfg.ClientID, s.cfg.SavedConfig, s.cfg.Clock.Now().Unix()
			err = s.updateMeta(ctx, func(m *messages.Meta) error {
				bootMeta(m, b)
				return nil
			})
		case opMove:
			err = s.cfg.DB.MoveBootstrap(ctx)
		default:
			// A file step after the others: the download is finished.
			err = fmt.Errorf("%w: %v after the download was finished", errBadStep, st)
		}
		if err != nil {
			return err
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
// with holes (dbactor's, as for a full bootstrap), records which pages it
// holds (pageactor's presence log), then the metadata, then moves the
// file into place (finishPartial's steps). The decisions are
// partialRequest's and partialDownload's.
func (s *syncActor) bootstrapPartial(ctx context.Context, p *messages.PartialBootstrap) error {
	req, err := partialRequest(p)
	if err != nil {
		return err
	}
	var sink messages.BootstrapSink
	var d partialDownload
	d.restart()
	err = s.retry(ctx, func() error {
		// The callbacks use this attempt's sink, as, not sink, which the
		// next attempt replaces; the gate ends them with the attempt,
		// and dbactor's next BeginBootstrap closes as.
		as, err := s.cfg.DB.BeginBootstrap(ctx, true)
		sink = as
		if err != nil {
			return err
		}
		gate := attemptGate{ctx: ctx}
		defer gate.end()
		d.restart()
		info, err := s.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
			Req: req, RetryUntil: s.until,
			OnHeader: func(h *syncpb.PullUpdatesRespProtoBody) error {
				return gate.run(func() error { return as.Cut(d.header(h)) })
			},
			OnPage: func(pgno uint32, data []byte) error {
				return gate.run(func() error {
					got, err := d.page(pgno)
					if err != nil {
						return err
					}
					s.progress("bootstrap", got, 0)
					return as.Add(pgno, data)
				})
			},
		})
		gate.end()
		d.answered(info.Database)
		return err
	})
	if err != nil {
		s.dropBoot(ctx, sink)
		return fmt.Errorf("partial bootstrap: %w", err)
	}
	facts := bootFacts{revision: d.hdr.ServerRevision, size: d.hdr.DbSize, database: d.database, partial: p}
	return s.finishBoot(ctx, sink, finishPartial(d.hdr.DbSize, d.present.Contains(1)), facts, d.present)
}

// errAttemptOver is returned to a download callback that comes after its
// attempt ended (see attemptGate), or its context did.
var errAttemptOver = errors.New("the bootstrap attempt is over")

// attemptGate ends one bootstrap attempt's download callbacks. They run on
// a netactor goroutine while the attempt waits in its PullUpdates Ask; but
// an Ask whose context ends returns at once, and netactor may still hand
// out a page it read ahead. Each callback runs under the gate, and once
// ctx ended or end ran every later one gets errAttemptOver and touches
// nothing (the download's state, the user's Progress, the sink). end
// waits for a callback in flight, so none runs after the attempt returned;
// the check of ctx stops the callbacks as soon as the caller's Ask (which
// returns when ctx ends, before the attempt does) may have returned. It is
// this side's half: the sink's is dbactor's, which refuses writes once it
// closed the sink (ErrBootstrapClosed), whoever calls.
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

// end closes the gate, once a callback in flight returned.
func (g *attemptGate) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.over = true
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
