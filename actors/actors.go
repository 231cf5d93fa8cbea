// Package actors is the plumbing shared by syncdb's actors: an actor system
// with a quiet logger, request/response without wall-clock futures, panic
// containment that fails loudly, orderly leak-free shutdown, and injectable
// time and identifiers.
//
// Each syncdb actor owns one resource (the writer connection, the metadata
// file, the HTTP client, the page-presence state) and serializes access to
// it through its mailbox. Callers talk to actors with Ask, which sends a
// message that embeds a Request and waits for the actor's single reply, or
// for the caller's context, or for the actor to stop. Enter runs a function
// of the actor's on the caller's goroutine, in the actor's turn, for a hot
// path where the mailbox round trip costs more than the work. An actor is
// named by a Ref (protoactor stays inside this package); each actor
// package wraps its Ref in a Handle with one method per message.
//
// Every actor has a Level, its place in the call order: it may ask only
// actors below it, which keeps the blocking calls a DAG. A Ref carries the
// level of the actor holding it (Ref.From); with the invariants build tag
// an Ask or Enter up the order panics (CallOrderError).
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// ErrStopped reports a request to an actor that has stopped.
var ErrStopped = errors.New("actor stopped")

// ErrFailed reports a request to an actor that panicked earlier: its state
// can no longer be trusted, so it refuses all further work.
var ErrFailed = errors.New("actor failed after a panic")

// PanicError is what a caller gets when the actor panicked handling its
// request.
type PanicError struct {
	Actor string
	Value any
	Stack string
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("actor %s panicked: %v\n%s", e.Actor, e.Value, e.Stack)
}

// Result is an actor's reply.
type Result[T any] struct {
	Val T
	Err error
}

// Request is embedded (by value) in every message that expects a reply.
// Ask fills it in; the actor answers exactly once with Respond.
type Request[T any] struct {
	ctx   context.Context
	reply chan Result[T]
}

// Context is the requester's context: actors check it before starting work
// and pass it to anything that can be interrupted.
func (r *Request[T]) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// Respond delivers the reply. It never blocks; a second reply is dropped.
func (r *Request[T]) Respond(v T, err error) {
	if r.reply == nil {
		return
	}
	select {
	case r.reply <- Result[T]{v, err}:
	default:
	}
}

// Fail replies with err (used by the panic guard).
func (r *Request[T]) Fail(err error) {
	var zero T
	r.Respond(zero, err)
}

func (r *Request[T]) request() *Request[T] { return r }

// Message is a message that carries a Request for a T.
type Message[T any] interface {
	request() *Request[T]
}

// failer is any message that can be answered with an error.
type failer interface{ Fail(error) }

// Options configure a System.
type Options struct {
	Name   string       // for logs and errors
	Logger *slog.Logger // our own logs; protoactor's are silenced
	// OnPanic is called once for every actor panic, after the requester was
	// answered. Tests set it to fail the test.
	OnPanic func(*PanicError)
}

// System is a set of actors that stop together.
type System struct {
	opts Options
	sys  *actor.ActorSystem

	// stopping ends when Stop begins (see Stopping).
	stopping    context.Context
	endStopping context.CancelFunc

	mu     sync.Mutex
	actors []*entry
	closed bool
}

type entry struct {
	name  string
	level Level
	pid   *actor.PID
	done  chan struct{} // closed when the actor has stopped
	disp  *pinnedDispatcher
	// turn is held (a token in the channel) while the actor handles a
	// message and while a caller runs inside it (Enter): the actor's state
	// has one owner at a time, whichever way it is reached.
	turn   chan struct{}
	failed atomic.Bool // a handler or an entered function panicked
}

// pinnedDispatcher runs an actor's mailbox on one long-lived goroutine.
// protoactor's default starts a goroutine per mailbox run, whose stack then
// grows, by copying, to the depth SQLite's transpiled call chains need, on
// every message; this goroutine's stack stays grown.
type pinnedDispatcher struct {
	runs chan func()
	quit chan struct{}
}

func newPinnedDispatcher() *pinnedDispatcher {
	d := &pinnedDispatcher{runs: make(chan func(), 2), quit: make(chan struct{})}
	go func() {
		for {
			select {
			case fn := <-d.runs:
				fn()
			case <-d.quit:
				return
			}
		}
	}()
	return d
}

// Schedule is called once per mailbox run (so at most one run waits while
// the previous one finishes).
func (d *pinnedDispatcher) Schedule(fn func()) {
	select {
	case d.runs <- fn:
	case <-d.quit:
		go fn() // stopped: nothing should be scheduled, but never block
	}
}

func (d *pinnedDispatcher) Throughput() int { return 300 }

func (d *pinnedDispatcher) stop() { close(d.quit) }

// NewSystem starts an actor system.
func NewSystem(opts Options) *System {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	quiet := slog.New(slog.DiscardHandler)
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }),
		actor.WithDeadLetterRequestLogging(false),
	)
	stopping, end := context.WithCancel(context.Background())
	return &System{opts: opts, sys: sys, stopping: stopping, endStopping: end}
}

// Stopping is a context that ends when Stop begins, before any actor is
// stopped. An actor whose work waits on the world outside the system (the
// network actor's requests) ends that work with it: Stop stops the actors
// last spawned first, and those that wait on such work (the sync actor, in
// the middle of a handler) would otherwise wait for it to end by itself,
// for as long as a server that does not answer keeps it waiting.
func (s *System) Stopping() context.Context { return s.stopping }

// Handler is an actor's behaviour: called with each message, one at a time.
type Handler func(msg any)

// Spawn starts an actor named name at level (its place in the call order,
// see Level). The producer is called once, on the actor's first message
// (protoactor's Started), so its state is created inside the actor. onStop,
// if not nil, runs when the actor stops, inside the actor, before Stop
// returns. The Ref it returns asks as LevelFacade; give the actor that is
// to hold it one stamped with that actor's level (Ref.From).
func (s *System) Spawn(name string, level Level, handle Handler, onStop func()) (Ref, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Ref{}, ErrStopped
	}
	e := &entry{name: name, level: level, done: make(chan struct{}), disp: newPinnedDispatcher(), turn: make(chan struct{}, 1)}
	g := &guard{sys: s, e: e, handle: handle, onStop: onStop}
	props := actor.PropsFromProducer(func() actor.Actor { return g },
		actor.WithSupervisor(actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })),
		actor.WithDispatcher(e.disp))
	pid, err := s.sys.Root.SpawnNamed(props, s.opts.Name+"/"+name)
	if err != nil {
		e.disp.stop()
		return Ref{}, fmt.Errorf("spawn %s: %w", name, err)
	}
	e.pid = pid
	s.actors = append(s.actors, e)
	return Ref{sys: s, e: e}, nil
}

// Ref names a spawned actor for the callers that talk to it, and says who
// they are: the level of the actor that holds the Ref (From), which the
// call-order check compares with the actor's own. The zero Ref names no
// actor: asking it is ErrStopped. protoactor's PID stays inside this
// package.
type Ref struct {
	sys  *System
	e    *entry
	from Level
}

// From is r as held by an actor at level: its Asks and Enters are checked
// as that actor's (see Level).
func (r Ref) From(level Level) Ref {
	r.from = level
	return r
}

// Valid says whether r names an actor (a Spawn's result, not the zero Ref).
func (r Ref) Valid() bool { return r.e != nil }

// Send delivers msg without waiting for anything (a message that expects
// no reply, such as an actor's note to itself from a goroutine it
// started).
func (r Ref) Send(msg any) {
	if r.e == nil {
		return
	}
	r.sys.sys.Root.Send(r.e.pid, msg)
}

// Ask sends msg to the actor r names and waits for its reply, for ctx, or
// for the actor to stop. If ctx ends first, the actor may still carry out
// the request; actors check the request's context before they start, so a
// request still waiting in the mailbox is abandoned.
func Ask[T any](ctx context.Context, r Ref, msg Message[T]) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	e := r.e
	if e == nil {
		return zero, ErrStopped
	}
	checkOrder(r)
	req := msg.request()
	req.ctx = ctx
	req.reply = make(chan Result[T], 1)
	select {
	case <-e.done:
		return zero, fmt.Errorf("%s: %w", e.name, ErrStopped)
	default:
	}
	r.sys.sys.Root.Send(e.pid, msg)
	select {
	case res := <-req.reply:
		return res.Val, res.Err
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-e.done:
		// It may have answered just before stopping.
		select {
		case res := <-req.reply:
			return res.Val, res.Err
		default:
		}
		return zero, fmt.Errorf("%s: %w", e.name, ErrStopped)
	}
}

// Enter runs fn on the caller's goroutine inside the actor r names: in the
// actor's turn, so never at the same time as one of its handlers or
// another entered function, with the same panic containment (a panic fails
// the actor and is returned as a *PanicError). It waits for the turn, for
// ctx, or for the actor to stop. It is for a hot path whose mailbox round
// trip (two goroutine handoffs) would cost more than the work: the actor
// still owns its state, fn borrows it for the turn. fn must not Ask the
// same actor (it would wait for its own turn).
func Enter(ctx context.Context, r Ref, fn func() error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, e := r.sys, r.e
	if e == nil {
		return ErrStopped
	}
	checkOrder(r)
	select {
	case e.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return fmt.Errorf("%s: %w", e.name, ErrStopped)
	}
	defer func() { <-e.turn }()
	// The actor may have stopped, or failed, while the caller waited.
	select {
	case <-e.done:
		return fmt.Errorf("%s: %w", e.name, ErrStopped)
	default:
	}
	if e.failed.Load() {
		return fmt.Errorf("%s: %w", e.name, ErrFailed)
	}
	defer func() {
		if v := recover(); v != nil {
			perr := s.panicked(e, v)
			err = perr
			if s.opts.OnPanic != nil {
				s.opts.OnPanic(perr)
			}
		}
	}()
	return fn()
}

// panicked fails the actor e after a panic with value v and reports it.
func (s *System) panicked(e *entry, v any) *PanicError {
	e.failed.Store(true)
	perr := &PanicError{Actor: e.name, Value: v, Stack: string(debug.Stack())}
	s.opts.Logger.Error("actor panicked", "actor", e.name, "panic", v)
	return perr
}

// Stop ends Stopping, then stops every actor, the last spawned first, and
// waits until each has run its onStop. Messages still queued are answered
// with ErrStopped. Calling Stop again does nothing.
func (s *System) Stop() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	actors := s.actors
	s.mu.Unlock()
	s.endStopping()
	for i := len(actors) - 1; i >= 0; i-- {
		e := actors[i]
		s.sys.Root.Stop(e.pid)
		<-e.done
	}
	s.sys.Shutdown()
	for _, e := range actors {
		e.disp.stop()
	}
}

// guard runs a Handler inside protoactor, containing panics.
type guard struct {
	sys    *System
	e      *entry
	handle Handler
	onStop func()
}

func (g *guard) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *actor.Started, *actor.Restarting, *actor.Stopping:
		return
	case *actor.Stopped:
		g.e.turn <- struct{}{}
		if g.onStop != nil {
			g.run(func() { g.onStop() }, nil)
		}
		close(g.e.done) // before the turn is free: an Enter waiting for it sees the actor stopped
		<-g.e.turn
		return
	default:
		g.e.turn <- struct{}{}
		defer func() { <-g.e.turn }()
		if g.e.failed.Load() {
			if f, ok := msg.(failer); ok {
				f.Fail(fmt.Errorf("%s: %w", g.e.name, ErrFailed))
			}
			return
		}
		g.run(func() { g.handle(msg) }, msg)
	}
}

func (g *guard) run(fn func(), msg any) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		perr := g.sys.panicked(g.e, v)
		if f, ok := msg.(failer); ok {
			f.Fail(perr)
		}
		if g.sys.opts.OnPanic != nil {
			g.sys.opts.OnPanic(perr)
		}
	}()
	fn()
}
