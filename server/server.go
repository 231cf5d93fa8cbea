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
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/syncdb/syncdb/server/stream"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/syncdb/syncdb/internal/flock"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

// Config configures a Server. The zero value of every field but DataDir has
// a sensible default.
type Config struct {
	DataDir    string   // where databases live; created if missing
	AuthTokens []string // if any token is set, every request needs one (read-write)
	ReadTokens []string // tokens that may pull but not push
	// JWTKeys verify Ed25519-signed JWTs scoped to databases and access
	// (see auth.go; LoadJWTKeys reads them from a file).
	JWTKeys []ed25519.PublicKey
	// MaxDatabases bounds how many databases may exist; creating one more
	// is refused (403). Default 1000; negative: no bound.
	MaxDatabases int
	// IdleTimeout closes a database no request used for this long (it
	// opens again on the next request). Default 10 min; negative: never.
	IdleTimeout time.Duration
	// MaxRequestsPerDatabase bounds the requests one database serves at
	// once (long polls count only while they are not waiting); more get
	// 503 with Retry-After. Default 256.
	MaxRequestsPerDatabase int
	NoAutoCreate           bool     // refuse databases that do not exist yet
	Databases              []string // databases to create at start

	MaxPullRequestBytes     int64 // default 4 MiB
	MaxPipelineRequestBytes int64 // default 256 MiB
	// MaxResponseBytes bounds a pipeline response and the size of one
	// string or blob a client statement may make or store. Default 64 MiB.
	MaxResponseBytes int64
	MaxLongPoll      time.Duration // cap on long_poll_timeout_ms; default 5 min
	// IOTimeout drops a client that sends nothing of its request body, or
	// reads nothing of the response, for this long. Default 30 s.
	IOTimeout time.Duration
	// MaxInflightBytes bounds the request bodies and pipeline responses
	// held in memory at once, over all requests; beyond it requests get
	// 503 (bodies) or a statement error (responses). Default 1 GiB.
	MaxInflightBytes int64
	// StatementTimeout bounds an HTTP pipeline or cursor request's
	// statements, and a WebSocket request's (a cursor's while it runs, not
	// while it waits for fetches), from when they have their connection
	// (the wait for one is bounded by StreamBusyTimeout), and a query
	// selector. Default 60 s.
	StatementTimeout time.Duration
	HistoryRetention time.Duration // 0 = keep every revision; default set by the command line
	CheckpointFrames int           // checkpoint a database when its WAL has this many frames; default 1000

	// Hrana streams (see hrana.go).
	StreamIdleTimeout time.Duration // an idle stream expires after this; default 10 s (sqld's)
	StreamBusyTimeout time.Duration // how long a request waits for a writer another stream keeps, or a cursor for a reader connection; default 10 s
	StreamTxnTimeout  time.Duration // an idle stream's transaction (or a WebSocket cursor waiting for fetches on the writer) may be ended after this if another stream waits, a busy one's after twice this; default 5 s
	MaxStreams        int           // streams open at once, all databases; default 10000
	// SnapshotCacheMinBytes: the second bootstrap (whole raw snapshot) of
	// one revision of a database at least this big is kept as a file, and
	// later bootstraps of that revision are served from it. Default 4 MiB;
	// negative: never. It costs up to one copy of each such database on
	// disk.
	SnapshotCacheMinBytes int64

	Logger   *slog.Logger
	Registry prometheus.Registerer // default: a fresh registry served at /metrics

	// Cluster, if set, serves the databases of a store shared with other
	// nodes (server/pgstore): the page histories live there, writes are
	// forwarded to each database's lease holder, and DataDir holds only
	// caches. Nil: this node alone serves DataDir.
	Cluster Cluster

	// For tests and the simulator.
	VFS                 string        // SQLite VFS for the databases and histories ("" = default)
	NewID               func() string // makes history identities (default: random)
	MaintenanceInterval time.Duration // how often to checkpoint and compact (default 2 s; negative: only through Maintain)
	// After, if set, times long polls instead of the wall clock (the
	// simulator\'s virtual time).
	After func(time.Duration) <-chan time.Time
	// Now, if set, is the time of the history (revision timestamps and the
	// retention of HistoryRetention) instead of the wall clock.
	Now func() time.Time
}

// Cluster is a store shared by several nodes: the histories of every
// database, and the coordinator of the nodes.
type Cluster interface {
	coord.Coordinator
	// OpenHistory returns the history of database name; uninitialized if it
	// does not exist yet (Init creates it).
	OpenHistory(ctx context.Context, name string) (history.Backend, error)
	Exists(ctx context.Context, name string) (bool, error)
	// Databases counts the databases in the store.
	Databases(ctx context.Context) (int, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
}

// Server serves databases over HTTP. Create it with New, serve Handler, and
// call Close after the HTTP server has stopped.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	gather  prometheus.Gatherer
	unlock  func() error // releases the lock on the data directory
	coord   coord.Coordinator
	fwd     *forwarder

	mem *memBudget // request bodies and responses in flight

	stopIdle, idleDone chan struct{} // the idle closer's

	streams *stream.Registry[*hranaStream]
	wsConns wsSet

	// mu guards the maps and counts below, and only them: nothing holds it
	// across I/O (in a cluster a slow store would stall every request).
	mu       sync.Mutex
	existing int // databases in the data directory (a single node), counting those being created
	dbs      map[string]*database
	opening  map[string]chan struct{}
	shutdown bool
	served   bool // Serve was called (it serves once)

	// inUse counts the requests holding a database (acquire) and the
	// databases being opened: Close closes the databases once it is zero.
	// It grows only under mu while shutdown is false.
	inUse sync.WaitGroup
	// closing is canceled by Close: the requests in flight end.
	closing context.Context
	cancel  context.CancelFunc
}

// DatabaseHeader names the response header that carries the identity of
// the database a request reached: it changes when a database is created
// anew under the same name.
const DatabaseHeader = "X-Syncdb-Database"

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
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 30 * time.Second
	}
	if cfg.MaxInflightBytes <= 0 {
		cfg.MaxInflightBytes = 1 << 30
	}
	if cfg.MaxDatabases == 0 {
		cfg.MaxDatabases = 1000
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxRequestsPerDatabase <= 0 {
		cfg.MaxRequestsPerDatabase = 256
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
	unlock, owner, err := flock.Lock(filepath.Join(cfg.DataDir, ".lock"))
	if errors.Is(err, flock.ErrLocked) {
		if owner > 0 {
			return nil, fmt.Errorf("%w (process %d): %s", ErrDataDirInUse, owner, cfg.DataDir)
		}
		return nil, fmt.Errorf("%w: %s", ErrDataDirInUse, cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, unlock: unlock, mem: &memBudget{limit: cfg.MaxInflightBytes}, coord: coord.NewLocal(), dbs: map[string]*database{}, opening: map[string]chan struct{}{}}
	if cfg.Cluster != nil {
		s.coord = cfg.Cluster
	}
	reg := cfg.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gather = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gather = g
	}
	s.metrics = newMetrics(reg)
	s.closing, s.cancel = context.WithCancel(context.Background())
	s.streams = stream.NewRegistry(stream.Config[*hranaStream]{Idle: cfg.StreamIdleTimeout, Max: cfg.MaxStreams, Expire: expireStream})
	s.fwd = newForwarder(s, reg)
	if cfg.Cluster == nil {
		s.existing = countDatabases(cfg.DataDir) // in a cluster the store counts them
	}
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
	// Idle databases are closed on the wall clock; the simulator, which
	// runs maintenance itself, keeps them open.
	if cfg.IdleTimeout > 0 && cfg.MaintenanceInterval >= 0 {
		s.stopIdle, s.idleDone = make(chan struct{}), make(chan struct{})
		go s.idleLoop(s.stopIdle, s.idleDone)
	}
	return s, nil
}

func (s *Server) dbOptions() dbOptions {
	o := dbOptions{
		vfs:              s.cfg.VFS,
		newID:            s.cfg.NewID,
		after:            s.cfg.After,
		now:              s.cfg.Now,
		interval:         s.cfg.MaintenanceInterval,
		walHoldLimit:     s.cfg.IOTimeout,
		retention:        s.cfg.HistoryRetention,
		checkpointFrames: s.cfg.CheckpointFrames,
		stmtTimeout:      s.cfg.StatementTimeout,
		maxValueBytes:    int(min(s.cfg.MaxResponseBytes, 1<<30)),
		onRevisions:      func(n int) { s.metrics.revisions.Add(float64(n)) },
		onCheckpoint:     s.metrics.checkpoints.Inc,
		onCopy: func(full bool, n int) {
			build := "incremental"
			if full {
				build = "full"
			}
			s.metrics.localCopyPages.WithLabelValues(build).Add(float64(n))
		},
		snapshotMinBytes: s.cfg.SnapshotCacheMinBytes,
		coord:            s.coord,
		openHistory:      openFileHistory(s.cfg.VFS),
	}
	if c := s.cfg.Cluster; c != nil {
		o.shared = true
		o.openHistory = func(ctx context.Context, name, _ string) (history.Backend, error) { return c.OpenHistory(ctx, name) }
	}
	return o
}

var errNoDatabase = errors.New("no such database")

// database returns the open database name, opening or creating it.
func (s *Server) database(ctx context.Context, name string, create bool) (*database, error) {
	return s.get(ctx, name, create, false)
}

var (
	errShuttingDown     = errors.New("server is shutting down")
	errTooManyDatabases = errors.New("the server has as many databases as it may hold (MaxDatabases)")
	errBusy             = errors.New("the database serves as many requests as it may at once; try again shortly")
)

// acquire returns database name for one request, opening or creating it,
// and counts the request until release is called: a database serves at
// most MaxRequestsPerDatabase at once, and is not closed as idle while
// any is in progress.
func (s *Server) acquire(ctx context.Context, name string, create bool) (d *database, release func(), err error) {
	d, err = s.get(ctx, name, create, true)
	if err != nil {
		return nil, nil, err
	}
	done := func() {
		d.lastUsed.Store(time.Now().UnixNano())
		d.active.Add(-1)
		s.inUse.Done()
	}
	if d.working.Add(1) > int64(s.cfg.MaxRequestsPerDatabase) {
		d.working.Add(-1)
		done()
		return nil, nil, errBusy
	}
	return d, func() { d.working.Add(-1); done() }, nil
}

// get returns the open database name, opening or creating it; hold counts
// a request on it (under s.mu, so that neither the idle closer nor Close
// closes a database a request was just handed; the caller calls
// s.inUse.Done when the request ends).
func (s *Server) get(ctx context.Context, name string, create, hold bool) (*database, error) {
	for {
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			return nil, errShuttingDown
		}
		if d := s.dbs[name]; d != nil {
			if hold {
				d.active.Add(1)
				s.inUse.Add(1)
			}
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
		done := make(chan struct{})
		s.opening[name] = done
		s.inUse.Add(1) // Close waits for the opening to end
		s.mu.Unlock()

		d, err := s.openOrCreate(ctx, name, create)
		s.mu.Lock()
		delete(s.opening, name)
		close(done)
		late := err == nil && s.shutdown // Close took the list of databases already
		if err == nil && !late {
			d.lastUsed.Store(time.Now().UnixNano())
			if hold {
				d.active.Add(1)
				s.inUse.Add(1)
			}
			s.dbs[name] = d
			s.metrics.databases.Set(float64(len(s.dbs)))
		}
		s.mu.Unlock()
		if late {
			if cerr := d.close(); cerr != nil {
				s.log.Warn("close database", "db", name, "err", cerr)
			}
			d, err = nil, errShuttingDown
		}
		s.inUse.Done()
		return d, err
	}
}

// openOrCreate opens database name, creating it if create allows and the bound on
// databases has room. The caller registered it in s.opening, so nobody
// else opens it meanwhile; it does not hold mu (the store may be slow).
func (s *Server) openOrCreate(ctx context.Context, name string, create bool) (*database, error) {
	dir := filepath.Join(s.cfg.DataDir, name)
	exists, err := s.exists(ctx, name, dir)
	switch {
	case err != nil:
		return nil, err
	case !exists && !create:
		return nil, fmt.Errorf("%w: %q", errNoDatabase, name)
	case !exists:
		release, err := s.reserve(ctx)
		if err != nil {
			return nil, err
		}
		d, err := openDatabase(ctx, name, dir, s.dbOptions(), s.log)
		release(err == nil)
		return d, err
	}
	return openDatabase(ctx, name, dir, s.dbOptions(), s.log)
}

// reserve makes room for one more database under MaxDatabases, or fails
// with errTooManyDatabases; release(created) ends the reservation. A
// single node counts its data directory; a cluster node counts the
// databases in the store (nodes creating databases at the same moment may
// each take the last place).
func (s *Server) reserve(ctx context.Context) (release func(created bool), err error) {
	limit := s.cfg.MaxDatabases
	if limit <= 0 {
		return func(bool) {}, nil
	}
	if c := s.cfg.Cluster; c != nil {
		n, err := c.Databases(ctx)
		if err != nil {
			return nil, fmt.Errorf("count the databases in the store: %w", err)
		}
		if n >= limit {
			return nil, fmt.Errorf("%w: %d", errTooManyDatabases, limit)
		}
		return func(bool) {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.existing >= limit {
		return nil, fmt.Errorf("%w: %d", errTooManyDatabases, limit)
	}
	s.existing++
	return func(created bool) {
		if !created {
			s.mu.Lock()
			s.existing--
			s.mu.Unlock()
		}
	}, nil
}

// exists reports whether database name exists: its file, or its row in
// the shared store.
func (s *Server) exists(ctx context.Context, name, dir string) (bool, error) {
	if s.cfg.Cluster != nil {
		ok, err := s.cfg.Cluster.Exists(ctx, name)
		if err != nil {
			return false, fmt.Errorf("look the database up in the store: %w", err)
		}
		return ok, nil
	}
	_, err := os.Stat(filepath.Join(dir, mainFile))
	return err == nil, nil
}

// closeIdle closes the databases no request used for IdleTimeout. While
// one closes, a request for it waits (as for one that opens), so that two
// instances never share the files.
func (s *Server) closeIdle() {
	now := time.Now().UnixNano()
	closing := map[string]*database{}
	s.mu.Lock()
	for name, d := range s.dbs {
		// A database whose writer is taken is in use: a stream keeps it
		// between two requests of a transaction.
		if d.active.Load() == 0 && now-d.lastUsed.Load() > int64(s.cfg.IdleTimeout) && d.tryWriter() {
			closing[name] = d
			delete(s.dbs, name)
			s.opening[name] = make(chan struct{})
		}
	}
	s.metrics.databases.Set(float64(len(s.dbs)))
	s.mu.Unlock()
	for name, d := range closing {
		if err := d.closeWriter(); err != nil {
			s.log.Warn("close idle database", "db", name, "err", err)
		}
		s.mu.Lock()
		close(s.opening[name])
		delete(s.opening, name)
		s.mu.Unlock()
	}
}

// idleLoop runs closeIdle until stop is closed.
func (s *Server) idleLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(min(max(s.cfg.IdleTimeout/4, 10*time.Millisecond), time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			s.closeIdle()
		}
	}
}

// countDatabases counts the databases in the data directory.
func countDatabases(dir string) int {
	names, _ := filepath.Glob(filepath.Join(dir, "*", mainFile))
	return len(names)
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.authorize(promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{})))
	mux.Handle("/", s.fwd.wrap(http.HandlerFunc(s.route)))
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
	g, ok := s.allowed(w, r, name, hranaPath)
	if !ok {
		return
	}
	d, release, ok := s.open(w, r.Context(), name, g)
	if !ok {
		return
	}
	defer release()
	// Close ends the request (see Server.Close).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()
	r = r.WithContext(ctx)
	// The database's identity (its history's), so that a client can tell
	// that a URL still serves the database its replica came from.
	w.Header().Set(DatabaseHeader, d.hist.ID())
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

// open opens the database name for a request with grant g, answering the
// error if it cannot. Only a credential that may write a database may
// create it. Call release when the request is done with it.
func (s *Server) open(w http.ResponseWriter, ctx context.Context, name string, g grant) (*database, func(), bool) {
	d, release, err := s.acquire(ctx, name, !s.cfg.NoAutoCreate && g.on(name) == writeAccess)
	switch {
	case errors.Is(err, errNoDatabase):
		httpError(w, http.StatusNotFound, "%v", err)
		return nil, nil, false
	case errors.Is(err, errTooManyDatabases):
		httpError(w, http.StatusForbidden, "%v", err)
		return nil, nil, false
	case errors.Is(err, errBusy), errors.Is(err, errShuttingDown):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "%v", err)
		return nil, nil, false
	case err != nil:
		s.log.Error("open database", "db", name, "err", err)
		httpError(w, http.StatusInternalServerError, "cannot open database %q (the server log has the details)", name)
		return nil, nil, false
	}
	return d, release, true
}

// healthz answers "ok", and in a cluster whether the store answers (503 if
// not: this node can serve neither pulls nor pushes then).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		io.WriteString(w, "ok\n")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Cluster.Ping(ctx); err != nil {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "store unreachable: %v", err)
		return
	}
	io.WriteString(w, "ok\nstore: reachable\n")
}

// authorize lets requests with any valid credential through.
func (s *Server) authorize(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.authenticate(r); err != nil {
			httpError(w, http.StatusUnauthorized, "%s", strings.TrimPrefix(err.Error(), ErrAuth.Error()+": "))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// errNoMemory is the answer when the requests in flight hold
// Config.MaxInflightBytes already.
const errNoMemory = "the server holds as much request and response data as it may (MaxInflightBytes); try again shortly"

// readBody reads a request body up to limit, answering 413 beyond it, 503
// when the in-flight memory budget has no room for it, and 408 when the
// client stops sending for IOTimeout. The body's memory stays reserved
// until the request ends.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if body, ok := r.Context().Value(bodyKey{}).([]byte); ok {
		return body, true // read once already, by the forwarder
	}
	rc := http.NewResponseController(w)
	in := &deadlineReader{r: http.MaxBytesReader(w, r.Body, limit), rc: rc, timeout: s.cfg.IOTimeout}
	var buf bytes.Buffer
	var reserved int64
	var err error
	for {
		if !s.mem.reserve(bodyChunk) {
			err = errBudget
			break
		}
		reserved += bodyChunk
		var n int64
		if n, err = io.CopyN(&buf, in, bodyChunk); err != nil || n < bodyChunk {
			break
		}
	}
	// Keep what the body uses, give back the rest when the request ends.
	s.mem.release(reserved - int64(buf.Len()))
	context.AfterFunc(r.Context(), func() { s.mem.release(int64(buf.Len())) })
	var tooBig *http.MaxBytesError
	var netErr net.Error
	if errors.Is(err, io.EOF) {
		// The deadline must not outlive the body: net/http's own
		// background read would hit it and cancel the request (a long
		// poll, say).
		rc.SetReadDeadline(time.Time{})
	} else {
		// The rest of the body is not read: the connection cannot serve
		// another request.
		w.Header().Set("Connection", "close")
	}
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, errBudget):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, errNoMemory)
		return nil, false
	case errors.As(err, &tooBig):
		httpError(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", limit)
		return nil, false
	case errors.As(err, &netErr) && netErr.Timeout():
		httpError(w, http.StatusRequestTimeout, "the request body stopped arriving for %v", s.cfg.IOTimeout)
		return nil, false
	case err != nil:
		httpError(w, http.StatusBadRequest, "read request body: %v", err)
		return nil, false
	}
	s.metrics.bytesIn.Add(float64(buf.Len()))
	return buf.Bytes(), true
}

// bodyChunk is how much of a request body is read (and reserved) at once.
const bodyChunk = 64 << 10

var errBudget = errors.New("in-flight memory budget exhausted")

// writeBody writes a whole response body under the write deadline.
func (s *Server) writeBody(w http.ResponseWriter, b []byte) error {
	return newDeadlineWriter(w, s.cfg.IOTimeout).writeAll(b)
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
// after the HTTP server stopped; calling it again does nothing. Requests
// still in flight are ended (their contexts canceled; long polls and
// requests waiting for a writer return) and the databases closed once they
// are gone: a response being written to a client that does not read holds
// Close for IOTimeout at most. New requests get 503.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown = true // no request takes a database any more
	for _, d := range s.dbs {
		d.stop()
	}
	s.mu.Unlock()
	s.cancel()
	// Streams first: their open transactions are rolled back on the
	// databases' writers.
	s.wsConns.closeAll()
	s.streams.Close()
	s.mu.Lock()
	if s.stopIdle != nil {
		close(s.stopIdle)
		s.stopIdle = nil
		s.mu.Unlock()
		<-s.idleDone
		s.mu.Lock()
	}
	s.mu.Unlock()
	s.inUse.Wait()
	s.mu.Lock()
	dbs, unlock := s.dbs, s.unlock
	s.dbs, s.unlock = map[string]*database{}, nil
	s.mu.Unlock()
	var errs []error
	for _, d := range dbs {
		errs = append(errs, d.close())
	}
	if unlock != nil {
		errs = append(errs, unlock())
	}
	return errors.Join(errs...)
}
