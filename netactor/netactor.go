// Package netactor is syncdb's network actor: the one place that talks HTTP
// to the sync server. It owns the HTTP client (and its connection pool), the
// request headers (user agent, bearer token, encryption key and cipher,
// content types), the retry policy and the byte counters.
//
// It answers three messages (package messages):
//
//	PullUpdates  POST {URL}/pull-updates: protobuf request, a length-delimited
//	             header and PageData stream handed to the caller's callbacks
//	Pipeline     POST {URL}/v2/pipeline: Hrana v2 JSON
//	NetStats     request and response body bytes over all requests
//
// The actor never blocks on the network: each request runs in its own
// goroutine, so a long poll does not delay a lazy page fetch. The system's
// Stop cancels every request as it begins (actors.Stopping); stopping the
// actor waits for their goroutines.
//
// # Retries
//
// IsTransient is syncdb's one definition of a transient failure: network
// errors (except TLS certificate failures and unknown hosts), 408, 429 and
// 5xx answers (other than 501 and 505), and a response body that ends
// before it is complete. Retry is its one retry loop: exponential backoff
// and jitter (RetryPolicy), waiting on Config.Clock, until MaxElapsedTime
// has passed on that clock, MaxAttempts were made or the request's context
// ends. Every other failure (4xx, a malformed response, a callback's error)
// is returned at once. syncactor retries its workflows with the same two.
//
// A pull is retried only until its header has been handed to OnHeader. From
// then on the caller has seen part of the stream and holds state built from
// it, so a failure (a truncated stream, a bad page) is returned to the caller,
// which restarts the pull from its own synced revision.
//
// A pipeline request is retried only if the message says it is Retryable,
// meaning it has no effect when it runs twice (a read of the push high-water
// mark, for instance). A push batch is not: if its response is lost, the
// server may or may not have committed it, and sending it again could apply
// the same changes twice. After such a failure the caller re-reads the
// high-water mark (turso_sync_last_change_id) to learn what the server
// actually has, and pushes only what is missing.
//
// Apart from that rule, net/http may resend a request on a fresh connection
// when the first attempt was refused before a single byte of it was written
// (a stale keep-alive connection); this is safe for every request.
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package netactor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
)

// ErrNoURL is the error of every request when Config.URL is empty: the
// database was opened without a remote (local-only until one is configured).
var ErrNoURL = errors.New("no sync URL configured")

// ErrRevisionGone is wrapped, together with the *HTTPError, in the error of a
// /pull-updates request answered 410 Gone: the server cannot serve the
// request as of the client's revision. For a pull, the client must bootstrap
// again (database recreated, or a server that drops old revisions); for a
// page fetch as of a revision syncdb serve compacted, the page changed since
// and the next pull brings it.
var ErrRevisionGone = errors.New("server revision gone, bootstrap required")

// DefaultUserAgent is sent when Config.UserAgent is empty.
const DefaultUserAgent = "syncdb-go"

// DefaultMaxPipelineResponse bounds a /v2/pipeline response body.
const DefaultMaxPipelineResponse = 256 << 20

// Config configures the network actor.
type Config struct {
	// URL is the database's base URL, e.g. http://127.0.0.1:8080 or
	// http://host/db/name. libsql:// and turso:// become https://; a
	// trailing slash is trimmed; endpoint paths are appended. Empty means
	// no remote: every request fails with ErrNoURL.
	URL string
	// AuthToken, if not nil, is called for every request; its token is sent
	// as "Authorization: Bearer <token>" (an empty token sends nothing).
	AuthToken func() (string, error)
	// EncryptionKey and EncryptionCipher are sent as x-turso-encryption-key
	// and x-turso-encryption-cipher when not empty.
	EncryptionKey, EncryptionCipher string
	// HTTPClient defaults to a client with dial, TLS handshake and idle
	// timeouts but no overall timeout (long polls can take minutes); the
	// requests' contexts bound them instead.
	HTTPClient *http.Client
	// Clock is used for backoff waits and elapsed time; default
	// actors.RealClock{}.
	Clock actors.Clock
	// Retry is the backoff policy for transient failures.
	Retry RetryPolicy
	// ZstdPages asks the server for zstd-compressed pages, and takes a
	// zstd-compressed response (Content-Encoding: zstd), which syncdb
	// serve sends for bootstraps; either is decompressed before OnPage
	// sees the pages.
	ZstdPages bool
	// MaxMessage bounds one length-delimited message of a pull stream;
	// default wire.DefaultMaxMessage.
	MaxMessage int
	// MaxPipelineResponse bounds a /v2/pipeline response body; default
	// DefaultMaxPipelineResponse.
	MaxPipelineResponse int64
	// UserAgent defaults to DefaultUserAgent.
	UserAgent string
	Logger    *slog.Logger
}

// RetryPolicy is the exponential backoff for transient failures. Zero fields
// take their defaults.
type RetryPolicy struct {
	InitialInterval time.Duration // first wait; default 200ms
	MaxInterval     time.Duration // cap on one wait; default 5s
	MaxElapsedTime  time.Duration // give up after this long on Config.Clock; default 30s
	Multiplier      float64       // growth per attempt; default 2
	Jitter          float64       // randomization factor in [0, 1); default 0.5
	NoJitter        bool          // wait exactly the computed intervals
	MaxAttempts     int           // total attempts; 0 = limited by MaxElapsedTime only
	Disabled        bool          // never retry
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.InitialInterval <= 0 {
		p.InitialInterval = 200 * time.Millisecond
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = 5 * time.Second
	}
	if p.MaxElapsedTime <= 0 {
		p.MaxElapsedTime = 30 * time.Second
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.Jitter <= 0 || p.Jitter >= 1 {
		p.Jitter = 0.5
	}
	if p.NoJitter {
		p.Jitter = 0
	}
	return p
}

// withDefaults fills the zero fields that have a default, but HTTPClient
// (Spawn makes the actor's own, which it closes): Clock
// actors.RealClock, Retry's, MaxMessage wire.DefaultMaxMessage,
// MaxPipelineResponse DefaultMaxPipelineResponse, UserAgent
// DefaultUserAgent, a discarding Logger.
func (cfg Config) withDefaults() Config {
	if cfg.Clock == nil {
		cfg.Clock = actors.RealClock{}
	}
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = wire.DefaultMaxMessage
	}
	if cfg.MaxPipelineResponse <= 0 {
		cfg.MaxPipelineResponse = DefaultMaxPipelineResponse
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// NewHTTPClient returns the client used when Config.HTTPClient is nil: it
// bounds connecting, the TLS handshake and idle connections, but not a
// request as a whole.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   8,
		ExpectContinueTimeout: time.Second,
	}}
}

// NormalizeURL applies the base URL rules of Config.URL.
func NormalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	for _, scheme := range []string{"libsql://", "turso://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			s = "https://" + s[len(scheme):]
		}
	}
	s = strings.TrimRight(s, "/")
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("bad sync URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("bad sync URL %q: scheme must be http, https, libsql or turso", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("bad sync URL %q: no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("bad sync URL %q: query and fragment are not allowed", raw)
	}
	return s, nil
}

// errStopping is the cancellation cause of requests in flight when the actor
// stops.
var errStopping = fmt.Errorf("network requests stopped: %w", actors.ErrStopped)

type netActor struct {
	cfg       Config
	base      string // normalized URL; "" = ErrNoURL
	client    *http.Client
	ownClient bool
	log       *slog.Logger

	life   context.Context // canceled when the actor stops
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, received atomic.Int64

	// zstdRequests: the server's last pipeline answer said it takes zstd
	// request bodies (see pipeline.go).
	zstdRequests atomic.Bool

	zstdOnce sync.Once
	zstdDec  *zstd.Decoder
	zstdErr  error
}

// Spawn starts the network actor, named "net", in sys.
func Spawn(sys *actors.System, cfg Config) (Handle, error) {
	a := &netActor{cfg: cfg}
	if cfg.URL != "" {
		base, err := NormalizeURL(cfg.URL)
		if err != nil {
			return Handle{}, err
		}
		a.base = base
	}
	a.cfg = a.cfg.withDefaults()
	a.client = cfg.HTTPClient
	if a.client == nil {
		a.client, a.ownClient = NewHTTPClient(), true
	}
	a.log = a.cfg.Logger.With("actor", "net")
	// The requests end when the system begins to stop, not only when this
	// actor does: the actors that wait for them stop first.
	a.life, a.cancel = context.WithCancel(sys.Stopping())
	ref, err := sys.Spawn("net", actors.LevelNet, a.receive, a.stop)
	if err != nil {
		a.cancel()
		return Handle{}, err
	}
	return Handle{ref}, nil
}

func (a *netActor) receive(msg any) {
	switch m := msg.(type) {
	case *messages.PullUpdates:
		start(a, &m.Request, func(ctx context.Context) (messages.PullInfo, error) { return a.pull(ctx, m) })
	case *messages.Pipeline:
		start(a, &m.Request, func(ctx context.Context) (*hrana.PipelineRespBody, error) { return a.pipeline(ctx, m) })
	case *messages.NetStats:
		m.Respond(messages.NetCounters{SentBytes: a.sent.Load(), ReceivedBytes: a.received.Load()}, nil)
	default:
		if f, ok := msg.(interface{ Fail(error) }); ok {
			f.Fail(fmt.Errorf("unexpected message %T", msg))
		}
	}
}

// start runs one request in its own goroutine, tracked for stop.
func start[T any](a *netActor, r *actors.Request[T], run func(context.Context) (T, error)) {
	if err := r.Context().Err(); err != nil {
		r.Fail(err)
		return
	}
	if a.base == "" {
		r.Fail(ErrNoURL)
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	unlink := context.AfterFunc(a.life, func() { cancel(errStopping) })
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel(nil)
		defer unlink()
		v, err := run(ctx)
		if err != nil {
			if cerr := contextError(ctx); cerr != nil {
				err = cerr
			}
		}
		r.Respond(v, err)
	}()
}

// contextError is the error to report for a request whose context ended:
// the caller's own context error, or ErrStopped if the actor stopped.
func contextError(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStopping) {
		return cause
	}
	return ctx.Err()
}

func (a *netActor) stop() {
	a.cancel()
	a.wg.Wait()
	if a.ownClient {
		a.client.CloseIdleConnections()
	}
	if a.zstdDec != nil {
		a.zstdDec.Close()
	}
}

// decoder returns the zstd page decoder, created on first use. Decoded
// output is capped at one page, so a hostile frame cannot balloon.
func (a *netActor) decoder() (*zstd.Decoder, error) {
	a.zstdOnce.Do(func() {
		a.zstdDec, a.zstdErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(2),
			zstd.WithDecoderMaxMemory(wire.PageSize))
	})
	return a.zstdDec, a.zstdErr
}
