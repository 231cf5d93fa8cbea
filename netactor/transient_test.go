package netactor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
)

// IsTransient is the one rule: by type, refusals before the network's
// errors, and never by text.
func TestIsTransient(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timeout := &net.DNSError{Err: "i/o timeout", Name: "db.example", IsTimeout: true}
	notFound := &net.DNSError{Err: "no such host", Name: "db.invalid", IsNotFound: true}
	unreachable := func(err error) error { return &unreachableError{url: "http://127.0.0.1:1", err: err} }
	status := func(code int) error { return &HTTPError{Status: code, Endpoint: EndpointPipeline} }
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},

		// HTTP statuses.
		{"500", status(500), true},
		{"502", status(502), true},
		{"503", status(503), true},
		{"504", status(504), true},
		{"429", status(429), true},
		{"408", status(408), true},
		{"501 (will not be implemented by waiting)", status(501), false},
		{"505", status(505), false},
		{"400", status(400), false},
		{"404", status(404), false},
		{"409", status(409), false},
		{"401 is ErrUnauthorized", status(401), false},
		{"403 is ErrUnauthorized", status(403), false},
		{"ErrUnauthorized", fmt.Errorf("push: %w", ErrUnauthorized), false},
		{"410 on a pull is ErrRevisionGone", fmt.Errorf("%w: %w", ErrRevisionGone, &HTTPError{Status: 410, Endpoint: EndpointPull}), false},
		{"wrapped 503", fmt.Errorf("bootstrap: %w", status(503)), true},

		// The network.
		{"connection refused, as post returns it", unreachable(refused), true},
		{"connection reset", fmt.Errorf("pipeline: %w", reset), true},
		{"refused", refused, true},
		{"broken pipe", fmt.Errorf("send: %w", syscall.EPIPE), true},
		{"aborted", syscall.ECONNABORTED, true},
		{"deadline of a connection", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), true},
		{"DNS timeout", unreachable(timeout), true},
		{"host not found", unreachable(notFound), false},
		{"bad certificate", unreachable(x509.UnknownAuthorityError{}), false},
		{"unreachable", fmt.Errorf("push: %w", ErrUnreachable), true},

		// A response cut short, as this actor marks it, and an end of
		// stream it did not mark (a local file's, say).
		{"stream cut after the header", lost(fmt.Errorf("stream cut after 3 pages: %w", io.ErrUnexpectedEOF)), true},
		{"pipeline body cut", fmt.Errorf("push: %w", lost(fmt.Errorf("read pipeline response: %w", io.ErrUnexpectedEOF))), true},
		{"io.ErrUnexpectedEOF alone", fmt.Errorf("read -changes: %w", io.ErrUnexpectedEOF), false},
		{"io.EOF alone", io.EOF, false},

		// Protocol errors: a malformed answer comes back the same way.
		{"bad stream", fmt.Errorf("%w: %w", ErrBadStream, wire.ErrBadFrame), false},
		{"bad pipeline JSON", fmt.Errorf("pipeline response: %w", hrana.ErrInvalid), false},

		// The caller's and the actors' ends.
		{"canceled", fmt.Errorf("pull: %w", context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		{"canceled during a reset", errors.Join(reset, context.Canceled), false},
		{"actor stopped", errStopping, false},
		{"actors stopped", fmt.Errorf("ask: %w", actors.ErrStopped), false},
		{"no URL", ErrNoURL, false},

		// Marks.
		{"marked transient", fmt.Errorf("push: %w", Transient(errors.New("out of order"))), true},
		{"marked transient, but canceled", fmt.Errorf("%w: %w", context.Canceled, Transient(errors.New("out of order"))), false},
		{"a refusal wrapping a reset", fmt.Errorf("%w: %w", ErrUnauthorized, reset), false},

		// Text never counts.
		{"reset only in the text", errors.New("read tcp: connection reset by peer"), false},
		{"503 only in the text", errors.New("POST /v2/pipeline: HTTP 503 Service Unavailable"), false},
		{"EOF only in the text", errors.New(`the server refused "SELECT 'EOF'": unexpected EOF`), false},
	} {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// A pipeline body that ends early is a lost response; one that is whole
// but not what was expected is malformed.
func TestCutShort(t *testing.T) {
	whole := `{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"close"}}]}`
	for n := 0; n < len(whole); n++ {
		if !cutShort([]byte(whole[:n])) {
			t.Errorf("the first %d bytes are not cut short: %q", n, whole[:n])
		}
	}
	for _, b := range []string{whole, `{"results":[{"type":"weird"}]}`, `{"baton":null,x`, `[1,2]]`, "<html>"} {
		if cutShort([]byte(b)) {
			t.Errorf("%q is cut short", b)
		}
	}
}

// A zero Config gets the documented defaults (RetryPolicy's included);
// set fields stay.
func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	want := RetryPolicy{InitialInterval: 200 * time.Millisecond, MaxInterval: 5 * time.Second, MaxElapsedTime: 30 * time.Second, Multiplier: 2, Jitter: 0.5}
	if c.Clock != (actors.RealClock{}) || c.Retry != want || c.MaxMessage != wire.DefaultMaxMessage ||
		c.MaxPipelineResponse != DefaultMaxPipelineResponse || c.UserAgent != DefaultUserAgent || c.Logger == nil || c.HTTPClient != nil {
		t.Fatalf("zero Config: %+v", c)
	}
	if p := (RetryPolicy{NoJitter: true, MaxAttempts: 2}).withDefaults(); p.Jitter != 0 || p.MaxAttempts != 2 {
		t.Fatalf("NoJitter policy: %+v", p)
	}
}
