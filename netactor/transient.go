package netactor

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/syncdb/syncdb/actors"
)

// IsTransient is syncdb's one rule for "worth another attempt", used by
// this actor for each request and by syncactor for each workflow (and by
// the live loop to choose how long to wait). It decides by type, never by
// an error's text (which may quote the server or the SQL):
//
//   - never transient: a nil error, the caller's context ending
//     (context.Canceled, context.DeadlineExceeded), the actors stopping
//     (actors.ErrStopped), ErrNoURL, ErrUnauthorized, ErrRevisionGone, an
//     *HTTPError whose status is not Temporary (4xx, 501, 505), a TLS
//     certificate that does not verify and a host name that does not
//     resolve;
//   - transient: an *HTTPError with a Temporary status (408, 429, 5xx), a
//     request that got no answer (ErrUnreachable), a response that was
//     cut short on the way (this actor marks it, see lost), an error
//     marked with Transient, and the network's own errors (a failed
//     *net.OpError, a net.Error that timed out, a reset, refused or
//     aborted connection, a broken pipe);
//   - everything else is not: a malformed answer (ErrBadStream,
//     hrana.ErrInvalid) comes back the same way, and io.EOF alone says
//     nothing about where it came from (a local file read ends the same
//     way), so only netactor's mark makes an end of stream transient.
//
// The first two lists are checked in that order: a refusal wrapping a
// network error is still a refusal.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, actors.ErrStopped) || errors.Is(err, ErrNoURL) || errors.Is(err, ErrUnauthorized) ||
		errors.Is(err, ErrRevisionGone) || badCertificate(err) || hostNotFound(err) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Temporary()
	}
	var te *transientError
	if errors.As(err, &te) || errors.Is(err, ErrUnreachable) {
		return true
	}
	var op *net.OpError
	var timeout interface{ Timeout() bool }
	if errors.As(err, &op) || errors.As(err, &timeout) && timeout.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}

// Transient marks err as worth another attempt (IsTransient), whatever it
// wraps; errors.Is and errors.As still see err. Callers use it for their
// own failures that a retry can fix, e.g. a push the server took out of
// order.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// lost marks the failure to read a response this actor had started to
// receive: the answer was cut short on the way (io.ErrUnexpectedEOF, a
// reset), so another attempt may get it whole.
func lost(err error) error { return Transient(err) }

func hostNotFound(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns) && dns.IsNotFound
}

// Retry runs op until it succeeds, or fails with an error that is not
// IsTransient or is marked backoff.Permanent (returned without the mark),
// or the policy gives up (p.MaxAttempts, p.MaxElapsedTime on clock), or ctx
// ends. A zero or negative p.MaxElapsedTime, p.MaxAttempts 1 or p.Disabled
// run op once. Zero fields of p take their defaults. notify, if set, is
// told of each failure before the wait that follows it. If ctx ends
// during a wait, the error joins op's last error and ctx's.
//
// It is the one retry loop of syncdb: this actor's per request, syncactor's
// per workflow.
func Retry(ctx context.Context, clock actors.Clock, p RetryPolicy, op func() error, notify func(attempt int, err error, wait time.Duration)) error {
	if clock == nil {
		clock = actors.RealClock{}
	}
	maxElapsed := p.MaxElapsedTime
	p = p.withDefaults()
	var last error
	attempt := 0
	try := func() error {
		attempt++
		var marked bool
		last, marked = unmark(op())
		if last != nil && (marked || !IsTransient(last) || ctx.Err() != nil) {
			return backoff.Permanent(last)
		}
		return last
	}
	if p.Disabled || p.MaxAttempts == 1 || maxElapsed < 0 {
		err, _ := unmark(try())
		return err
	}
	eb := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
		MaxElapsedTime:      p.MaxElapsedTime,
		Stop:                backoff.Stop,
		Clock:               clock,
	}
	var b backoff.BackOff = backoff.WithContext(eb, ctx)
	if p.MaxAttempts > 1 {
		b = backoff.WithMaxRetries(b, uint64(p.MaxAttempts-1))
	}
	waited := false // the last thing done was a wait, not an attempt
	err := backoff.RetryNotifyWithTimer(func() error { waited = false; return try() }, b, func(err error, wait time.Duration) {
		waited = true
		if notify != nil {
			notify(attempt, err, wait)
		}
	}, &actors.BackoffTimer{Clock: clock})
	if waited && err != nil && last != nil {
		// ctx ended while waiting: say what failed before.
		return errors.Join(last, err)
	}
	return err
}

// unmark strips a backoff.Permanent mark (op's own, for a request that
// must not be sent again), so that no caller sees it.
func unmark(err error) (error, bool) {
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return perm.Err, true
	}
	return err, false
}
