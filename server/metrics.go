package server

import (
	"crypto/subtle"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	bytesIn         prometheus.Counter
	bytesOut        *prometheus.CounterVec
	revisions       prometheus.Counter
	checkpoints     prometheus.Counter
	snapshotHits    prometheus.Counter
	longPollWaiters prometheus.Gauge
	pullStreams     prometheus.Gauge
	databases       prometheus.Gauge
	localCopyPages  *prometheus.CounterVec // cluster: pages written into local copies
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncdb_http_requests_total", Help: "HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "syncdb_http_request_seconds", Help: "HTTP request latency by endpoint (long polls included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"endpoint"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_request_bytes_total", Help: "Request body bytes received.",
		}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncdb_response_bytes_total", Help: "Response body bytes sent, by endpoint.",
		}, []string{"endpoint"}),
		revisions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_revisions_total", Help: "Revisions (committed write transactions) recorded, over all databases.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_checkpoints_total", Help: "WAL checkpoints that emptied a database's WAL, over all databases.",
		}),
		snapshotHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncdb_snapshot_cache_hits_total", Help: "Bootstraps served from the snapshot cache.",
		}),
		longPollWaiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncdb_long_poll_waiters", Help: "Pull requests currently waiting for a change.",
		}),
		pullStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncdb_pull_streams", Help: "Pull responses currently streaming pages.",
		}),
		databases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "syncdb_open_databases", Help: "Databases currently open.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.bytesIn, m.bytesOut, m.revisions, m.checkpoints, m.snapshotHits, m.longPollWaiters, m.pullStreams, m.databases)
	m.localCopyPages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "syncdb_local_copy_pages_total", Help: "Cluster: pages written into this node's local database copies from the store, by build (full: a whole database; incremental: a warm copy catching up).",
	}, []string{"build"})
	reg.MustRegister(m.localCopyPages)
	return m
}

// instrument counts requests by endpoint and status.
func (s *Server) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// A deadline an earlier request on this connection left must not
		// cut this one (handlers set their own before they write).
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		ep := endpoint(r.URL.Path)
		if r.Header.Get(forwardedHeader) != "" {
			// Counted as the client's request by the node that forwarded
			// it: a cluster's requests add up to its clients'.
			ep = "forwarded"
		}
		defer func() {
			s.metrics.requests.WithLabelValues(ep, strconv.Itoa(sw.code)).Inc()
			s.metrics.duration.WithLabelValues(ep).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}

func endpoint(path string) string {
	switch {
	case strings.HasSuffix(path, "/pull-updates"):
		return "pull"
	case strings.HasSuffix(path, "/v2/pipeline"):
		return "pipeline"
	case path == "/healthz" || path == "/metrics":
		return path[1:]
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom keeps the server's sendfile path for io.Copy from a file.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
