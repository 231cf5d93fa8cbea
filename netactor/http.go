package netactor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
)

// Endpoints, appended to the base URL.
const (
	EndpointPull     = "/pull-updates"
	EndpointPipeline = "/v2/pipeline"
)

// Header names and values of the protocol.
const (
	headerEncryptionKey    = "x-turso-encryption-key"
	headerEncryptionCipher = "x-turso-encryption-cipher"
	contentTypeProtobuf    = "application/protobuf"
	contentTypeJSON        = "application/json"
	databaseHeader         = "X-Syncdb-Database" // server.DatabaseHeader
)

// maxErrorBody bounds how much of an error response is kept; errorShown
// bounds how much of it Error prints.
const (
	maxErrorBody = 64 << 10
	errorShown   = 512
)

// HTTPError is a response whose status is not 200. It matches
// ErrUnauthorized (errors.Is) for 401 and 403.
type HTTPError struct {
	Status   int
	Body     string // the start of the response body (at most 64 KiB)
	Endpoint string // EndpointPull or EndpointPipeline
	URL      string // the server's base URL
	Database string // the database's identity, if the server names it
}

// Is makes a 401 or 403 answer match ErrUnauthorized.
func (e *HTTPError) Is(target error) bool {
	return target == ErrUnauthorized && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s%s: HTTP %d", e.URL, e.Endpoint, e.Status)
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" " + t)
	}
	switch e.Status {
	case http.StatusUnauthorized:
		b.WriteString(" (the server rejected the credentials: check the auth token)")
	case http.StatusForbidden:
		b.WriteString(" (the auth token is not allowed to do this)")
	case http.StatusGone:
		if e.Endpoint == EndpointPull {
			b.WriteString(" (the server no longer serves this revision)")
		}
	}
	if body := strings.TrimSpace(e.Body); body != "" {
		if len(body) > errorShown {
			cut := errorShown
			for cut > 0 && !utf8.RuneStart(body[cut]) {
				cut--
			}
			body = body[:cut] + "…"
		}
		b.WriteString(": " + body)
	}
	return b.String()
}

// Temporary reports whether the status is one this package retries.
func (e *HTTPError) Temporary() bool { return retryableStatus(e.Status) }

func retryableStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusNotImplemented, status == http.StatusHTTPVersionNotSupported:
		return false
	default:
		return status >= 500 && status <= 599
	}
}

// ErrUnreachable is matched (errors.Is) by the error of a request that did
// not get an answer from the server: nothing listens, the name does not
// resolve, the connection failed or was cut before the response.
var ErrUnreachable = errors.New("cannot reach the server")

// ErrUnauthorized is matched by a 401 or 403 answer (*HTTPError): the token
// is missing, wrong, or not allowed to do this.
var ErrUnauthorized = errors.New("the server refused the credentials")

// unreachableError is a transport failure of a request to url.
type unreachableError struct {
	url string
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the server at %s: %v", e.url, e.err)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// counter counts the bytes read through it, into the actor's total and its
// own count.
type counter struct {
	r     io.Reader
	total *atomic.Int64
	n     int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.total.Add(int64(n))
	return n, err
}

// response is one HTTP response whose body reads are counted.
type response struct {
	*http.Response
	body *counter
}

func (r *response) Close() { r.Response.Body.Close() }

// post sends one POST. It returns a transport error as is (retryable unless
// it is about certificates), and a setup error as permanent.
func (a *netActor) post(ctx context.Context, endpoint, contentType string, body []byte, header http.Header) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+endpoint, nil)
	if err != nil {
		return nil, backoff.Permanent(fmt.Errorf("%w", err))
	}
	if len(body) > 0 {
		req.ContentLength = int64(len(body))
		// With GetBody set, net/http may resend a request that failed before
		// any of it was written (a stale keep-alive connection).
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(&counter{r: bytes.NewReader(body), total: &a.sent}), nil
		}
		req.Body, _ = req.GetBody()
	} else {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", a.cfg.UserAgent)
	if a.cfg.AuthToken != nil {
		tok, err := a.cfg.AuthToken()
		if err != nil {
			return nil, backoff.Permanent(fmt.Errorf("auth token: %w", err))
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	if a.cfg.EncryptionKey != "" {
		req.Header.Set(headerEncryptionKey, a.cfg.EncryptionKey)
	}
	if a.cfg.EncryptionCipher != "" {
		req.Header.Set(headerEncryptionCipher, a.cfg.EncryptionCipher)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, backoff.Permanent(ctx.Err())
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the method and URL
		}
		err = &unreachableError{url: a.base, err: err}
		// A certificate or a name that does not resolve will not get
		// better by waiting.
		var dns *net.DNSError
		if badCertificate(err) || errors.As(err, &dns) && dns.IsNotFound {
			return nil, backoff.Permanent(err)
		}
		return nil, err
	}
	c := &counter{r: resp.Body, total: &a.received}
	return &response{Response: resp, body: c}, nil
}

// badCertificate reports TLS verification failures, which retrying cannot
// fix.
func badCertificate(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &invalid) ||
		errors.As(err, &hostname) || errors.As(err, &verify)
}

// statusError reads the start of a non-200 response into an *HTTPError,
// marked permanent unless the status is transient.
func (a *netActor) statusError(r *response, endpoint string) error {
	body, _ := io.ReadAll(io.LimitReader(r.body, maxErrorBody))
	herr := &HTTPError{Status: r.StatusCode, Body: string(body), Endpoint: endpoint, URL: a.base, Database: r.Header.Get(databaseHeader)}
	var err error = herr
	if r.StatusCode == http.StatusGone && endpoint == EndpointPull {
		err = fmt.Errorf("%w: %w", ErrRevisionGone, herr)
	}
	if !herr.Temporary() {
		return backoff.Permanent(err)
	}
	return err
}

// retry runs op, one request, with Retry under the actor's policy, until
// (if set) has passed on the clock. With retryable false, op runs once.
// op marks backoff.Permanent the failures of a request that must not be
// sent again (a pull whose header the caller has seen).
func (a *netActor) retry(ctx context.Context, what string, retryable bool, until time.Time, op func() error) error {
	p := a.cfg.Retry
	if !until.IsZero() {
		p.MaxElapsedTime = min(p.MaxElapsedTime, until.Sub(a.cfg.Clock.Now()))
	}
	if !retryable || p.MaxElapsedTime <= 0 {
		p.MaxElapsedTime = -1 // once
	}
	return Retry(ctx, a.cfg.Clock, p, op, func(attempt int, err error, wait time.Duration) {
		a.log.Debug("retrying request", "request", what, "attempt", attempt, "wait", wait, "err", err)
	})
}
