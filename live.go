package syncdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/netactor"
)

// LiveSync keeps a replica following the server by itself (Config.Live):
// a pull waits at the server (a long poll) and applies whatever another
// replica pushes as soon as it is committed there; local writes are pushed
// PushDelay after the first of them, together with those that follow
// meanwhile. While the server cannot be reached, both are retried with
// exponential backoff and jitter, up to MaxBackoff apart, and resume by
// themselves; a failure that waiting does not fix (a refused token, a
// replica modified outside syncdb) is retried MaxBackoff apart. Explicit Pull, Push and Sync calls still work. Close stops it.
type LiveSync struct {
	// PushDelay batches local writes into one push (default 100 ms).
	PushDelay time.Duration
	// PollTimeout is how long one pull waits at the server for a change
	// (default 30 s).
	PollTimeout time.Duration
	// MaxBackoff caps the wait between attempts while offline (default 30 s).
	MaxBackoff time.Duration
	// OnError, if set, is told about every failed attempt (default: logged
	// as a warning with Config.Logger), and once about each new conflict
	// waiting to be resolved (an error wrapping ErrConflict: the loop
	// goes on, and pushes again after ResolveConflict). It runs on the
	// sync goroutine.
	OnError func(error)
}

func (l LiveSync) withDefaults() LiveSync {
	if l.PushDelay <= 0 {
		l.PushDelay = 100 * time.Millisecond
	}
	if l.PollTimeout <= 0 {
		l.PollTimeout = 30 * time.Second
	}
	if l.MaxBackoff <= 0 {
		l.MaxBackoff = 30 * time.Second
	}
	return l
}

// Change reports what one pull (or several, merged) changed in the
// replica. Reads that start after it was received see at least Revision.
type Change struct {
	Revision string   // the server revision the replica is at
	Tables   []string // the tables whose rows or schema changed, sorted
}

// Changes returns a channel that receives a Change after each pull that
// changed the database (a live replica's, or Pull and Sync calls'). A
// pull that brings back this replica's own pushed writes reports their
// tables too. A receiver that falls behind gets the missed changes merged
// into one (tables united, the latest revision), so pulls never wait for
// it. The channel is closed when ctx ends or the DB closes.
func (d *DB) Changes(ctx context.Context) <-chan Change {
	out := make(chan Change)
	s := &subscriber{notify: make(chan struct{}, 1)}
	d.subsMu.Lock()
	closed := d.subs == nil
	if !closed {
		d.subs[s] = struct{}{}
	}
	d.subsMu.Unlock()
	if closed {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		defer func() {
			d.subsMu.Lock()
			delete(d.subs, s)
			d.subsMu.Unlock()
		}()
		for {
			select {
			case <-s.notify:
			case <-ctx.Done():
				return
			case <-d.closing:
				return
			}
			s.mu.Lock()
			c := s.pending
			s.pending = nil
			s.mu.Unlock()
			if c == nil {
				continue
			}
			select {
			case out <- *c:
			case <-ctx.Done():
				return
			case <-d.closing:
				return
			}
		}
	}()
	return out
}

// subscriber is one Changes channel: what it has not received yet, merged.
type subscriber struct {
	notify  chan struct{}
	mu      sync.Mutex
	pending *Change
}

func (d *DB) subscribed() bool {
	d.subsMu.Lock()
	defer d.subsMu.Unlock()
	return len(d.subs) > 0
}

// publish hands c to every subscriber without waiting for any.
func (d *DB) publish(c Change) {
	d.subsMu.Lock()
	defer d.subsMu.Unlock()
	for s := range d.subs {
		s.mu.Lock()
		if s.pending == nil {
			s.pending = &Change{Revision: c.Revision, Tables: slices.Clone(c.Tables)}
		} else {
			s.pending.Revision = c.Revision
			s.pending.Tables = slices.Compact(slices.Sorted(slices.Values(append(s.pending.Tables, c.Tables...))))
		}
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// pull runs one pull and tells the subscribers what it changed.
func (d *DB) pull(ctx context.Context, p *messages.Pull) (messages.PullResult, error) {
	if err := d.check(); err != nil {
		return messages.PullResult{}, err
	}
	p.Tables = d.subscribed()
	res, err := closed(d.sync.Pull(ctx, p))
	if res.Changed { // also when conflicts wait (ErrConflict): the pull was applied

		d.publish(Change{Revision: res.Revision, Tables: res.Tables})
	}
	return res, err
}

// interruptLive ends a live replica's long poll, if one is waiting, so
// that an explicit Pull or Push does not queue behind it for up to
// PollTimeout. The loop then pushes, which finds nothing or what is new.
func (d *DB) interruptLive() {
	if d.liveStop != nil {
		d.localCommit()
	}
}

// localCommit is the database actor's OnCommit: a live replica's pull
// loop wakes to push.
func (d *DB) localCommit() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// startLive starts the live loop if Config.Live asks for it and there is a
// server to follow.
func (d *DB) startLive() {
	if d.cfg.Live == nil || d.url == "" {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.liveStop = cancel
	d.liveDone = make(chan struct{})
	go d.live(ctx, d.cfg.Live.withDefaults())
}

// stopLive stops the live loop and waits for it.
func (d *DB) stopLive() {
	if d.liveStop != nil {
		d.liveStop()
		<-d.liveDone
	}
}

// live is the loop of a live replica: push what is waiting, then pull with
// a long poll that a local commit interrupts, and again.
func (d *DB) live(ctx context.Context, l LiveSync) {
	defer close(d.liveDone)
	clock := d.hooks.Clock
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = l.MaxBackoff
	b.MaxElapsedTime = 0 // never give up
	b.RandomizationFactor = 0.5
	b.Clock = clock
	b.Reset()
	tell := func(op string, err error, msg string) {
		err = fmt.Errorf("live %s: %w", op, err)
		if l.OnError != nil {
			l.OnError(err)
		} else {
			d.cfg.Logger.Warn(msg, "err", err)
		}
	}
	// wait sleeps for the next backoff interval after a transient failure
	// (netactor.IsTransient), MaxBackoff after another; false if the DB is
	// closing.
	wait := func(op string, err error) bool {
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return false
		}
		tell(op, err, "live sync failed; retrying")
		next := b.NextBackOff()
		if !netactor.IsTransient(err) {
			// The same request fails the same way until something else
			// changes (a token, the server, the file): the longest wait.
			next = l.MaxBackoff
		}
		select {
		case <-clock.After(next):
			return true
		case <-ctx.Done():
			return false
		}
	}
	// A conflict waiting for the application is news once, not a failure
	// to retry: the loop goes on pulling, and pushes again when a commit
	// (ResolveConflict's too) wakes it.
	var conflict string
	report := func(op string, err error) bool {
		if !errors.Is(err, ErrConflict) {
			return false
		}
		if msg := err.Error(); msg != conflict {
			conflict = msg
			tell(op, err, "live sync: a conflict waits to be resolved")
		}
		return true
	}
	push := true // writes from before this open may be waiting
	for ctx.Err() == nil {
		if push {
			select {
			case <-clock.After(l.PushDelay):
			case <-ctx.Done():
				return
			}
			select {
			case <-d.wake: // this push takes the writes so far
			default:
			}
			if err := d.push(ctx); err != nil && !report("push", err) {
				if !wait("push", err) {
					return
				}
				continue
			}
			push = false
		}
		_, err := d.pull(ctx, &messages.Pull{LongPoll: l.PollTimeout, Wake: d.wake})
		switch {
		case errors.Is(err, messages.ErrWoken):
			push = true
			continue
		case report("pull", err):
		case err != nil:
			if !wait("pull", err) {
				return
			}
			continue
		}
		b.Reset()
	}
}
