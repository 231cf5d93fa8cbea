package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

// forwardedHeader marks a request one node forwarded to the writer: the
// writer answers 421 instead of forwarding it again if it is not the writer
// any more.
const forwardedHeader = "X-Syncdb-Forwarded"

// forwarder sends every request for a database that is not a pull to the
// node holding the database's writer lease. It works on HTTP, not on one
// endpoint: whatever a database serves besides /pull-updates (pipelines of
// any Hrana version, their streams, WebSocket upgrades) runs on the writer.
// A request is retried only where it surely did not run: the holder could
// not be dialled, or it answered 421.
type forwarder struct {
	s     *Server
	proxy *httputil.ReverseProxy

	requests *prometheus.CounterVec
	seconds  prometheus.Histogram
}

func newForwarder(s *Server, reg prometheus.Registerer) *forwarder {
	f := &forwarder{
		s: s,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncdb_forwarded_requests_total", Help: "Write requests forwarded to the lease holder, by outcome (ok, retried, failed).",
		}, []string{"outcome"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "syncdb_forward_seconds", Help: "Time of forwarded requests, including the holder's work.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	reg.MustRegister(f.requests, f.seconds)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: 2 * time.Second}).DialContext
	// A holder that accepted the request but does not answer (paused, or
	// cut off) must not hold the client forever; a working one answers
	// within its wait for the writer, the statement timeout (which starts
	// once it has the writer) and the time to record.
	tr.ResponseHeaderTimeout = s.cfg.StreamBusyTimeout + s.cfg.StatementTimeout + 30*time.Second
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			pr.SetXForwarded()
			pr.Out.Header.Set(forwardedHeader, "1")
		},
		Transport: tr,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusMisdirectedRequest {
				return errMisdirected
			}
			// The writer answered; the client has not seen it yet.
			name, _ := writeTarget(resp.Request)
			failpoint.Hit("forward.answered", name)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			*r.Context().Value(errKey{}).(*error) = err
		},
		FlushInterval: -1, // stream (long-lived responses, WebSockets)
	}
	return f
}

type (
	targetKey struct{}
	errKey    struct{}
	bodyKey   struct{} // the request body, read by the forwarder
)

var errMisdirected = errors.New("the node is not the writer any more")

// writeTarget returns the database of a request that must run on its
// writer.
func writeTarget(r *http.Request) (string, bool) {
	name, rest, err := databaseOf(r)
	if err != nil {
		return "", false
	}
	switch rest {
	case "/pull-updates", "/healthz", "/metrics":
		return "", false // any node serves these
	}
	return name, true
}

// wrap forwards write requests of a cluster node; a single node serves
// everything itself.
func (f *forwarder) wrap(next http.Handler) http.Handler {
	if f.s.cfg.Cluster == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := writeTarget(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		body, ok := f.s.readBody(w, r, f.s.cfg.MaxPipelineRequestBytes)
		if !ok {
			return
		}
		replay := func() {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		// Served here, the handler gets the body read already.
		local := r.WithContext(context.WithValue(r.Context(), bodyKey{}, body))
		forwarded := r.Header.Get(forwardedHeader) != ""
		var lastErr error
		for attempt := range 3 {
			lease, to, err := f.s.coord.Writer(r.Context(), name)
			switch {
			case errors.Is(err, coord.ErrUnknownDatabase), err == nil && lease != nil:
				next.ServeHTTP(w, local) // this node writes it (or creates it)
				return
			case err != nil:
				lastErr = err
			case forwarded:
				httpError(w, http.StatusMisdirectedRequest, "this node does not hold the writer lease of %q", name)
				return
			default:
				replay()
				start := time.Now()
				var perr error
				ctx, cancel := context.WithCancel(contextWith(r, to, &perr))
				sw := &startedWriter{ResponseWriter: w}
				moved := f.watch(ctx, cancel, name, to, &sw.started)
				f.proxy.ServeHTTP(sw, r.WithContext(ctx))
				cancel()
				if moved.Load() {
					// The holder stopped answering and lost the lease; it
					// cannot record this request any more: send it to the
					// new writer.
					perr = errMoved
				}
				if perr == nil {
					f.requests.WithLabelValues("ok").Inc()
					f.seconds.Observe(time.Since(start).Seconds())
					return
				}
				lastErr = perr
				if !retryable(perr) {
					f.requests.WithLabelValues("failed").Inc()
					f.s.log.Warn("forwarding a write failed", "db", name, "writer", to, "err", perr)
					w.Header().Set("Retry-After", "1")
					httpError(w, http.StatusServiceUnavailable, "forwarding to the writer %s failed: %v", to, perr)
					return
				}
				f.requests.WithLabelValues("retried").Inc()
				f.s.coord.Unreachable(name, to)
			}
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
			}
		}
		f.requests.WithLabelValues("failed").Inc()
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "no writer for database %q could be reached: %v", name, lastErr)
	})
}

func contextWith(r *http.Request, to *url.URL, perr *error) context.Context {
	return context.WithValue(context.WithValue(r.Context(), targetKey{}, to), errKey{}, perr)
}

// watch cancels a forwarded request once the lease of db moved away from
// to while it waited (the holder was paused or cut off past its lease).
func (f *forwarder) watch(ctx context.Context, cancel func(), db string, to *url.URL, started *atomic.Bool) *atomic.Bool {
	moved := &atomic.Bool{}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if started.Load() {
				return // the holder answers: let it finish
			}
			lease, now, err := f.s.coord.Writer(context.WithoutCancel(ctx), db)
			if err == nil && (lease != nil || now.String() != to.String()) && !started.Load() {
				moved.Store(true)
				cancel()
				return
			}
		}
	}()
	return moved
}

// startedWriter notes when the forwarded response started.
type startedWriter struct {
	http.ResponseWriter
	started atomic.Bool
}

func (w *startedWriter) WriteHeader(code int) {
	w.started.Store(true)
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.started.Store(true)
	return w.ResponseWriter.Write(p)
}

func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var errMoved = errors.New("the writer's lease moved to another node while it did not answer")

// retryable: the request surely did not run on the holder, or cannot be
// recorded by it any more.
func retryable(err error) bool {
	if errors.Is(err, errMisdirected) || errors.Is(err, errMoved) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// writeFailed answers a write that could not run or be recorded. In a
// cluster that is a problem of the lease or the store, and the client
// should retry (its retry applies exactly once: see the README).
func (s *Server) writeFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNotWriter) && r.Header.Get(forwardedHeader) != "":
		httpError(w, http.StatusMisdirectedRequest, "%v", err)
	case s.cfg.Cluster != nil || errors.Is(err, history.ErrFenced) || errors.Is(err, errNotWriter):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "write not recorded, retry: %v", err)
	default:
		httpError(w, http.StatusInternalServerError, "%v", err)
	}
}
