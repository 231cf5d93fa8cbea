// Package stream keeps Hrana-over-HTTP streams alive between requests.
//
// HTTP has no connection to tie a stream's requests together, so each
// response carries a baton: an opaque token that names the stream and is
// good for exactly one next request. A Registry hands out batons, finds the
// stream again from the baton of the next request, and expires streams that
// stay idle too long, handing their state to a callback (which rolls back
// what they left open).
//
// A baton is 32 random bytes, base64url-encoded: 16 name the stream, 16 are
// a nonce that changes with every response. Nothing in it can be guessed or
// derived from an earlier baton, so no signature is needed. A baton whose
// stream is known but whose nonce is not the current one was already used
// (ErrBatonReused); a stream that expired is remembered for a while, so that
// its client learns why (ErrStreamExpired) rather than getting
// ErrBatonInvalid.
package stream

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of Acquire and New. The messages are sqld's, lower-cased.
var (
	ErrBatonInvalid  = errors.New("received an invalid baton")
	ErrBatonReused   = errors.New("received a baton that has already been used")
	ErrStreamExpired = errors.New("the stream has expired due to inactivity")
	ErrTooMany       = errors.New("too many open streams")
	ErrClosed        = errors.New("the server is shutting down")
)

// Config configures a Registry.
type Config[S any] struct {
	// Idle is how long a stream may wait for its next request before it
	// expires (sqld: 10 s). Every request restarts the wait.
	Idle time.Duration
	// Remember is how long an expired stream's name is kept so that a late
	// request gets ErrStreamExpired (sqld: 5 min).
	Remember time.Duration
	// Max bounds the streams that exist at once (0: no bound).
	Max int
	// Expire receives the state of a stream that expired or was dropped
	// by Close, never while a request holds the stream: on a goroutine of
	// its own, or, for a stream a request releases after Close, on that
	// request's, before Release (or Restore) returns.
	Expire func(S)
}

const (
	idLen    = 16
	nonceLen = 16
)

type id [idLen]byte
type nonce [nonceLen]byte

// Registry holds the streams. Create it with New; the zero value is not
// usable.
type Registry[S any] struct {
	cfg Config[S]

	mu      sync.Mutex
	streams map[id]*entry[S]
	expired map[id]time.Time // forgotten after this time
	swept   time.Time        // when expired was last pruned
	closed  bool
	wg      sync.WaitGroup // Expire callbacks in flight
}

type entry[S any] struct {
	id    id
	nonce nonce
	state S
	busy  bool        // a request holds it
	timer *time.Timer // idle expiry while not busy
	gen   uint64      // bumped on every release, so a stale timer does nothing
}

// NewRegistry makes a registry.
func NewRegistry[S any](cfg Config[S]) *Registry[S] {
	if cfg.Idle <= 0 {
		cfg.Idle = 10 * time.Second
	}
	if cfg.Remember <= 0 {
		cfg.Remember = 5 * time.Minute
	}
	return &Registry[S]{cfg: cfg, streams: map[id]*entry[S]{}, expired: map[id]time.Time{}}
}

// Handle is a stream held by one request. Exactly one of Release and
// Close must be called.
type Handle[S any] struct {
	r    *Registry[S]
	e    *entry[S]
	next *nonce // the nonce Release gives the stream, once chosen
}

// New creates a stream holding state, held by the caller.
func (r *Registry[S]) New(state S) (*Handle[S], error) {
	e := &entry[S]{state: state, busy: true}
	if _, err := rand.Read(e.id[:]); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.cfg.Max > 0 && len(r.streams) >= r.cfg.Max {
		return nil, fmt.Errorf("%w (at most %d)", ErrTooMany, r.cfg.Max)
	}
	r.streams[e.id] = e
	return &Handle[S]{r: r, e: e}, nil
}

// Acquire finds the stream of baton and holds it for the caller.
func (r *Registry[S]) Acquire(baton string) (*Handle[S], error) {
	raw, err := base64.RawURLEncoding.DecodeString(baton)
	if err != nil || len(raw) != idLen+nonceLen {
		return nil, ErrBatonInvalid
	}
	var sid id
	var n nonce
	copy(sid[:], raw[:idLen])
	copy(n[:], raw[idLen:])
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetExpired()
	e := r.streams[sid]
	switch {
	case e == nil && !r.expired[sid].IsZero():
		return nil, ErrStreamExpired
	case e == nil:
		return nil, ErrBatonInvalid
	case e.busy || e.nonce != n:
		return nil, ErrBatonReused
	}
	e.busy = true
	e.timer.Stop()
	return &Handle[S]{r: r, e: e}, nil
}

// State is the stream's state.
func (h *Handle[S]) State() S { return h.e.state }

// Ref names the stream for ExpireIdle.
type Ref struct{ id id }

// Ref names h's stream.
func (h *Handle[S]) Ref() Ref { return Ref{h.e.id} }

// ExpireIdle expires the stream ref now if it is idle (no request holds
// it), as if its idle time had run out. It reports whether it did.
func (r *Registry[S]) ExpireIdle(ref Ref) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.streams[ref.id]
	if e == nil || e.busy {
		return false
	}
	e.timer.Stop()
	delete(r.streams, e.id)
	r.expired[e.id] = time.Now().Add(r.cfg.Remember)
	r.expireLocked(e)
	return true
}

// NextBaton chooses the baton that Release will give the stream, for a
// response that must carry it before the request ends.
func (h *Handle[S]) NextBaton() (string, error) {
	if h.next == nil {
		var n nonce
		if _, err := rand.Read(n[:]); err != nil {
			return "", err
		}
		h.next = &n
	}
	var b [idLen + nonceLen]byte
	copy(b[:idLen], h.e.id[:])
	copy(b[idLen:], h.next[:])
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Release makes the stream wait for its next request and returns the baton
// for it (the one NextBaton chose, if it was called). The idle timer starts
// now.
func (h *Handle[S]) Release() (string, error) {
	baton, err := h.NextBaton()
	if err != nil {
		h.Close()
		return "", err
	}
	h.release(*h.next)
	return baton, h.r.closedErr()
}

// Restore gives the stream back unchanged: its baton stays the one the
// request came with.
func (h *Handle[S]) Restore() { h.release(h.e.nonce) }

func (h *Handle[S]) release(n nonce) {
	r, e := h.r, h.e
	r.mu.Lock()
	if r.closed {
		// Close waited for the callbacks it started, not for this one:
		// it runs here, on the goroutine of the request that let the
		// stream go (an Add to r.wg now would race with Close's Wait).
		delete(r.streams, e.id)
		r.mu.Unlock()
		if r.cfg.Expire != nil {
			r.cfg.Expire(e.state)
		}
		return
	}
	defer r.mu.Unlock()
	e.nonce, e.busy = n, false
	e.gen++
	gen := e.gen
	e.timer = time.AfterFunc(r.cfg.Idle, func() { r.timeout(e, gen) })
}

func (r *Registry[S]) closedErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return nil
}

// Close forgets the stream (the client closed it, or the request failed in
// a way that ends it). The caller cleans its state up itself.
func (h *Handle[S]) Close() {
	h.r.mu.Lock()
	delete(h.r.streams, h.e.id)
	h.r.mu.Unlock()
}

// timeout expires e if it is still idle since the release that set gen.
func (r *Registry[S]) timeout(e *entry[S], gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streams[e.id] != e || e.busy || e.gen != gen {
		return
	}
	delete(r.streams, e.id)
	r.expired[e.id] = time.Now().Add(r.cfg.Remember)
	r.expireLocked(e)
}

// expireLocked hands e's state to the Expire callback. r.mu is held.
func (r *Registry[S]) expireLocked(e *entry[S]) {
	if r.cfg.Expire == nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.cfg.Expire(e.state)
	}()
}

// forgetExpired prunes expired names, at most once a second.
func (r *Registry[S]) forgetExpired() {
	now := time.Now()
	if now.Sub(r.swept) < time.Second {
		return
	}
	r.swept = now
	for k, until := range r.expired {
		if now.After(until) {
			delete(r.expired, k)
		}
	}
}

// Len is the number of streams, idle or held.
func (r *Registry[S]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}

// Close expires every idle stream now and refuses new ones; streams held
// by a request expire when it releases them. It waits for the Expire
// callbacks of the idle ones.
func (r *Registry[S]) Close() {
	r.mu.Lock()
	r.closed = true
	for k, e := range r.streams {
		if e.busy {
			continue
		}
		e.timer.Stop()
		delete(r.streams, k)
		r.expireLocked(e)
	}
	r.mu.Unlock()
	r.wg.Wait()
}
