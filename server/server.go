// Package server is the syncdb sync server: the remote that syncdb clients and
// Turso's own sync SDKs (@tursodatabase/sync) pull from and push to.
//
// One Server holds many databases under one data directory, each in its own
// subdirectory: the SQLite file (WAL mode, 4096-byte pages) and its page
// history (see package history). It speaks two endpoints per database:
//
//	POST /pull-updates   physical pull: protobuf request, a length-delimited
//	                     header followed by the pages (package wire)
//	POST /v2/pipeline    logical push: Hrana v2 over HTTP, JSON (package hrana)
//
// URLs: http://HOST:PORT/ is database "default"; http://HOST:PORT/db/NAME/ is
// database NAME. GET /healthz answers "ok"; GET /metrics serves Prometheus
// metrics.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/syncdb/syncdb/server/stream"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/syncdb/syncdb/server/coord"
)

// Config configures a Server. The zero value of every field but DataDir has
// a sensible default.
type Config struct {
	DataDir      string   // where databases live; created if missing
	AuthTokens   []string // if any token is set, every request needs one (read-write)
	ReadTokens   []string // tokens that may pull but not push
	NoAutoCreate bool     // refuse databases that do not exist yet
	Databases    []string // databases to create at start

	MaxPullRequestBytes     int64 // default 4 MiB
	MaxPipelineRequestBytes int64 // default 256 MiB
	// MaxResponseBytes bounds a pipeline response and the size of one
	// string or blob a client statement may make or store. Default 64 MiB.
	MaxResponseBytes int64
	MaxLongPoll      time.Duration // cap on long_poll_timeout_ms; default 5 min
	StatementTimeout time.Duration // per pipeline request and query selector; default 60 s
	HistoryRetention time.Duration // 0 = keep every revision; default set by the command line
	CheckpointFrames int           // checkpoint a database when its WAL has this many frames; default 1000

	// Hrana streams (see hrana.go).
	StreamIdleTimeout time.Duration // an idle stream expires after this; default 10 s (sqld's)
	StreamBusyTimeout time.Duration // how long a request waits for a writer another stream keeps; default 10 s
	StreamTxnTimeout  time.Duration // an idle stream's transaction may be rolled back after this if another stream waits; default 5 s
	MaxStreams        int           // streams open at once, all databases; default 10000
	// SnapshotCacheMinBytes: the second bootstrap (whole raw snapshot) of
	// one revision of a database at least this big is kept as a file, and
	// later bootstraps of that revision are served from it. Default 4 MiB;
	// negative: never. It costs up to one copy of each such database on
	// disk.
	SnapshotCacheMinBytes int64

	Logger   *slog.Logger
	Registry prometheus.Registerer // default: a fresh registry served at /metrics

	// For tests and the simulator.
	VFS                 string        // SQLite VFS for the databases and histories ("" = default)
	NewID               func() string // makes history identities (default: random)
	MaintenanceInterval time.Duration // how often to checkpoint and compact (default 2 s; negative: only through Maintain)
	// After, if set, times long polls instead of the wall clock (the
	// simulator\'s virtual time).
	After func(time.Duration) <-chan time.Time
}

// Server serves databases over HTTP. Create it with New, serve Handler, and
// call Close after the HTTP server has stopped.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	gather  prometheus.Gatherer
	lock    *os.File // flock on the data directory
	coord   coord.Coordinator

	streams *stream.Registry[*hranaStream]
	wsConns wsSet

	mu       sync.Mutex
	dbs      map[string]*database
	opening  map[string]chan struct{}
	shutdown bool
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrDataDirInUse reports that another server holds the data directory.
var ErrDataDirInUse = errors.New("data directory is in use by another syncdb server")

// New prepares a server over cfg.DataDir.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: DataDir is required")
	}
	if cfg.MaxPullRequestBytes <= 0 {
		cfg.MaxPullRequestBytes = 4 << 20
	}
	if cfg.MaxPipelineRequestBytes <= 0 {
		cfg.MaxPipelineRequestBytes = 256 << 20
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 64 << 20
	}
	if cfg.MaxLongPoll <= 0 {
		cfg.MaxLongPoll = 5 * time.Minute
	}
	if cfg.StatementTimeout <= 0 {
		cfg.StatementTimeout = time.Minute
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = 10 * time.Second
	}
	if cfg.StreamBusyTimeout <= 0 {
		cfg.StreamBusyTimeout = 10 * time.Second
	}
	if cfg.StreamTxnTimeout <= 0 {
		cfg.StreamTxnTimeout = 5 * time.Second
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 10000
	}
	if cfg.CheckpointFrames <= 0 {
		cfg.CheckpointFrames = 1000
	}
	if cfg.SnapshotCacheMinBytes == 0 {
		cfg.SnapshotCacheMinBytes = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.DataDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %s", ErrDataDirInUse, cfg.DataDir)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, lock: lock, coord: coord.NewLocal(), dbs: map[string]*database{}, opening: map[string]chan struct{}{}}
	reg := cfg.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gather = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gather = g
	}
	s.metrics = newMetrics(reg)
	s.streams = stream.NewRegistry(stream.Config[*hranaStream]{Idle: cfg.StreamIdleTimeout, Max: cfg.MaxStreams, Expire: expireStream})
	for _, name := range cfg.Databases {
		if !nameRE.MatchString(name) {
			s.Close()
			return nil, fmt.Errorf("bad database name %q: want [A-Za-z0-9_-]{1,64}", name)
		}
		if _, err := s.database(context.Background(), name, true); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) dbOptions() dbOptions {
	return dbOptions{
		vfs:              s.cfg.VFS,
		newID:            s.cfg.NewID,
		after:            s.cfg.After,
		interval:         s.cfg.MaintenanceInterval,
		retention:        s.cfg.HistoryRetention,
		checkpointFrames: s.cfg.CheckpointFrames,
		stmtTimeout:      s.cfg.StatementTimeout,
		maxValueBytes:    int(min(s.cfg.MaxResponseBytes, 1<<30)),
		onRevisions:      func(n int) { s.metrics.revisions.Add(float64(n)) },
		onCheckpoint:     s.metrics.checkpoints.Inc,
		snapshotMinBytes: s.cfg.SnapshotCacheMinBytes,
		coord:            s.coord,
		openHistory:      openFileHistory(s.cfg.VFS),
	}
}

var errNoDatabase = errors.New("no such database")

// database returns the open database name, opening or creating it.
func (s *Server) database(ctx context.Context, name string, create bool) (*database, error) {
	for {
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			return nil, errors.New("server is shutting down")
		}
		if d := s.dbs[name]; d != nil {
			s.mu.Unlock()
			return d, nil
		}
		if wait := s.opening[name]; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		dir := filepath.Join(s.cfg.DataDir, name)
		if _, err := os.Stat(filepath.Join(dir, mainFile)); err != nil && !create {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %q", errNoDatabase, name)
		}
		done := make(chan struct{})
		s.opening[name] = done
		s.mu.Unlock()

		d, err := openDatabase(ctx, name, dir, s.dbOptions(), s.log)
		s.mu.Lock()
		delete(s.opening, name)
		close(done)
		if err == nil {
			s.dbs[name] = d
			s.metrics.databases.Set(float64(len(s.dbs)))
		}
		s.mu.Unlock()
		return d, err
	}
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", s.authorize(false, promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{})))
	mux.HandleFunc("/", s.route)
	return s.instrument(mux)
}

// route maps a request to a database and endpoint. The database is named
// by the path (/db/NAME/...), else as sqld names its namespaces: the
// x-namespace header, or the first label of a Host NAME.localhost; else it
// is "default".
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	name, rest, err := databaseOf(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ep, hranaPath := hranaEndpoints[rest]
	switch {
	case rest == "/pull-updates" || hranaPath:
	case hranaVersions[rest] && r.Method == http.MethodGet:
		io.WriteString(w, "Hello, this is Hrana over HTTP ("+strings.TrimPrefix(rest, "/")+") of syncdb\n")
		return
	case rest == "/" && isWebSocket(r):
		s.serveWebSocket(w, r, name)
		return
	default:
		httpError(w, http.StatusNotFound, "not found: %s %s (endpoints: POST /pull-updates, POST /v2/pipeline, /v3/pipeline, /v3/cursor, /v3-protobuf/pipeline, /v3-protobuf/cursor; GET / with a WebSocket upgrade)", r.Method, r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpError(w, http.StatusMethodNotAllowed, "%s needs POST", rest)
		return
	}
	if !s.allowed(w, r, hranaPath) {
		return
	}
	d, ok := s.open(w, r.Context(), name)
	if !ok {
		return
	}
	if hranaPath {
		s.handleHrana(w, r, d, ep)
	} else {
		s.handlePull(w, r, d)
	}
}

// databaseOf names the database of r and the endpoint path within it.
func databaseOf(r *http.Request) (name, rest string, err error) {
	name, rest = "default", r.URL.Path
	if after, ok := strings.CutPrefix(r.URL.Path, "/db/"); ok {
		name, rest, _ = strings.Cut(after, "/")
		rest = "/" + rest
	} else if ns := r.Header.Get("x-namespace"); ns != "" {
		name = ns
	} else if host, _, _ := strings.Cut(r.Host, ":"); strings.HasSuffix(host, ".localhost") && strings.Count(host, ".") == 1 {
		name = strings.TrimSuffix(host, ".localhost")
	}
	if !nameRE.MatchString(name) {
		return "", "", fmt.Errorf("bad database name %q: want [A-Za-z0-9_-]{1,64}", name)
	}
	return name, rest, nil
}

// open opens the database name for a request, answering the error if it
// cannot.
func (s *Server) open(w http.ResponseWriter, ctx context.Context, name string) (*database, bool) {
	d, err := s.database(ctx, name, !s.cfg.NoAutoCreate)
	switch {
	case errors.Is(err, errNoDatabase):
		httpError(w, http.StatusNotFound, "%v", err)
		return nil, false
	case err != nil:
		s.log.Error("open database", "db", name, "err", err)
		httpError(w, http.StatusInternalServerError, "cannot open database %q (the server log has the details)", name)
		return nil, false
	}
	return d, true
}

func (s *Server) authorize(write bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.allowed(w, r, write) {
			h.ServeHTTP(w, r)
		}
	})
}

// allowed checks the bearer token. With no tokens configured, everyone may
// read and write.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, write bool) bool {
	if len(s.cfg.AuthTokens) == 0 && len(s.cfg.ReadTokens) == 0 {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		httpError(w, http.StatusUnauthorized, "authorization required: send Authorization: Bearer <token>")
		return false
	}
	for _, t := range s.cfg.AuthTokens {
		if constantTimeEqual(t, tok) {
			return true
		}
	}
	for _, t := range s.cfg.ReadTokens {
		if constantTimeEqual(t, tok) {
			if write {
				httpError(w, http.StatusForbidden, "this token may pull but not push")
				return false
			}
			return true
		}
	}
	httpError(w, http.StatusUnauthorized, "invalid token")
	return false
}

// readBody reads a request body up to limit, answering 413 beyond it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpError(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", limit)
		return nil, false
	case err != nil:
		httpError(w, http.StatusBadRequest, "read request body: %v", err)
		return nil, false
	}
	s.metrics.bytesIn.Add(float64(len(body)))
	return body, true
}

// writeBody writes a whole response body.
func (s *Server) writeBody(w http.ResponseWriter, b []byte) {
	w.Write(b)
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, format+"\n", args...)
}

// Maintain checkpoints every open database and compacts its history now
// (the server also does it on its own every MaintenanceInterval).
func (s *Server) Maintain(ctx context.Context) error {
	s.mu.Lock()
	dbs := make([]*database, 0, len(s.dbs))
	for _, d := range s.dbs {
		dbs = append(dbs, d)
	}
	s.mu.Unlock()
	var errs []error
	for _, d := range dbs {
		errs = append(errs, d.checkpoint(ctx))
		d.dropStaleSnapshot()
		if d.opts.retention > 0 {
			errs = append(errs, d.compact(ctx))
		}
	}
	return errors.Join(errs...)
}

// BeginShutdown releases long polls so that an HTTP server shutdown does not
// wait for them to time out.
func (s *Server) BeginShutdown() {
	s.mu.Lock()
	for _, d := range s.dbs {
		d.stop()
	}
	s.mu.Unlock()
	s.wsConns.closeAll()
}

// Close closes every database and releases the data directory. Call it
// after the HTTP server stopped; calling it again does nothing.
func (s *Server) Close() error {
	// Streams first: their open transactions are rolled back on the
	// databases' writers.
	s.wsConns.closeAll()
	s.streams.Close()
	s.mu.Lock()
	s.shutdown = true
	dbs, lock := s.dbs, s.lock
	s.dbs, s.lock = map[string]*database{}, nil
	s.mu.Unlock()
	var errs []error
	for _, d := range dbs {
		errs = append(errs, d.close())
	}
	if lock != nil {
		errs = append(errs, lock.Close())
	}
	return errors.Join(errs...)
}
