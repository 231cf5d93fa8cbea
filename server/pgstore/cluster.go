// Package pgstore keeps the page histories of many syncdb serve nodes in one
// PostgreSQL database, and coordinates the nodes through it: one writer per
// database under a lease whose epoch fences every append, and wake-ups of
// long polls by LISTEN/NOTIFY. See docs in the README ("Scale-out").
//
// Liveness is per node: each node renews its row in syncdb_node (PostgreSQL's
// clock) and holds a session advisory lock on a connection of its own, which
// PostgreSQL releases the moment that session ends. Ownership is per
// database: syncdb_db.writer names the node, syncdb_db.epoch is bumped by
// every new holder. A node takes a database over when its holder's row
// expired, or at once when the holder's advisory lock is free (it crashed).
package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

var (
	// ErrSchema reports a store whose schema this build cannot use.
	ErrSchema = errors.New("pgstore: schema")
	// ErrNodeLapsed reports that this node's own lease lapsed (it could not
	// renew it in time): it may not take or use database leases until it
	// renewed again.
	ErrNodeLapsed = errors.New("pgstore: this node's lease lapsed")
)

// Config configures a Cluster.
type Config struct {
	URL       string // postgres://...
	Advertise string // this node's URL, where other nodes forward writes
	// TTL is the node lease: a node that has not renewed it for this long
	// loses its databases to other nodes. Default 5 s; renewed every TTL/5.
	TTL time.Duration
	// Recheck is how often long polls re-read the revision counter, in case
	// a notification was lost. Default 5 s.
	Recheck time.Duration
	Logger  *slog.Logger
	// Registry receives the store's metrics (nil: none).
	Registry prometheus.Registerer
}

// selfCheck is the failpoint that switches the lease self-check off, so
// that a test can show that the store's fence alone keeps a node whose
// leases lapsed from recording anything.
const selfCheck = "pgstore.lease-self-check"

// advisoryClass is the first key of every node's advisory lock.
const advisoryClass = 0x73796e64 // "synd"

// Cluster is one node's connection to the shared store: the factory of
// database histories and the coordinator.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	node    string
	self    *url.URL
	lockKey int32
	m       *metrics

	lmu      sync.Mutex
	lockConn *pgx.Conn // holds the advisory lock; renews the node lease
	// validUntil is when this node's lease ends by its own monotonic clock,
	// counted from when the last successful renewal was sent.
	validUntil time.Time
	gen        int64 // bumped when the lease lapsed: older leases are void

	mu     sync.Mutex
	byName map[string]*dbState
	byID   map[int64]*dbState
	closed bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// dbState is what this node knows of one database. Its fields are guarded
// by mu.
type dbState struct {
	name string

	mu        sync.Mutex
	id        int64 // 0: not created yet
	historyID string
	latest    history.Revision
	horizon   int64
	changed   chan struct{}
	cursor    history.Cursor
	// base is the revision this node's next append builds on: set when it
	// creates the database, takes the lease and appends; never by what it
	// hears of other nodes, so that a retried append is told apart from a
	// new one (see Append).
	base int64

	// The writer as last seen: cached until a syncdb_lease notification,
	// an unreachable holder, or writerAge passes.
	writer    string
	writerURL *url.URL
	seen      time.Time
	held      *lease // this node's lease, if it holds one
}

// writerAge bounds how long a node trusts its knowledge of another holder.
func (c *Cluster) writerAge() time.Duration { return c.cfg.TTL }

var _ coord.Coordinator = (*Cluster)(nil)

// Open connects to the store, creates or migrates its schema, and registers
// this node.
func Open(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	self, err := url.Parse(cfg.Advertise)
	if err != nil || self.Scheme == "" || self.Host == "" {
		return nil, fmt.Errorf("pgstore: advertise URL %q: want http://HOST:PORT", cfg.Advertise)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if pcfg.MaxConns < 32 {
		pcfg.MaxConns = 32
	}
	if _, set := pcfg.ConnConfig.RuntimeParams["jit"]; !set {
		// Every statement is a short index lookup or scan; compiling the
		// big page scans would add tens of milliseconds to each.
		pcfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	var inc [4]byte
	rand.Read(inc[:])
	c := &Cluster{
		cfg:    cfg,
		log:    cfg.Logger,
		pool:   pool,
		node:   self.Host + "#" + hex.EncodeToString(inc[:]),
		self:   self,
		m:      newMetrics(cfg.Registry),
		byName: map[string]*dbState{},
		byID:   map[int64]*dbState{},
	}
	c.log = c.log.With("node", c.node)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.register(ctx); err != nil {
		c.cancel()
		pool.Close()
		return nil, err
	}
	c.wg.Add(2)
	go c.renewLoop()
	go c.listenLoop()
	return c, nil
}

// Node is this node's identity in the store.
func (c *Cluster) Node() string { return c.node }

// register inserts this node's row and takes its advisory lock on a
// connection of its own.
func (c *Cluster) register(ctx context.Context) error {
	cc := c.pool.Config().ConnConfig.Copy()
	// A renewal need not wait for the store's WAL flush (slow on a busy
	// store: a bulk append, a slow disk). If the store crashes and loses
	// it, other nodes see this lease end sooner than this node does; the
	// fence, not the renewal, keeps a writer that has been replaced from
	// recording anything.
	cc.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	sent := time.Now()
	var key int32
	// Again after a lost lock session: the row stays, under a new lock.
	err = conn.QueryRow(ctx, `INSERT INTO syncdb_node(node, url, lock_key, lease_until)
		VALUES ($1, $2, nextval('syncdb_node_lock'), now() + $3::interval)
		ON CONFLICT (node) DO UPDATE SET lock_key = excluded.lock_key, lease_until = excluded.lease_until RETURNING lock_key`,
		c.node, c.self.String(), c.cfg.TTL.String()).Scan(&key)
	if err == nil {
		_, err = conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, advisoryClass, key)
	}
	if err != nil {
		conn.Close(ctx)
		return fmt.Errorf("pgstore: register node: %w", err)
	}
	c.lmu.Lock()
	c.lockConn, c.lockKey = conn, key
	c.validUntil = sent.Add(c.cfg.TTL - c.margin())
	c.lmu.Unlock()
	return nil
}

// margin is how much earlier than PostgreSQL a node considers its own lease
// over: room for clock-rate differences and the renewal's own latency.
func (c *Cluster) margin() time.Duration { return c.cfg.TTL / 4 }

// renewLoop renews the node lease every TTL/5 and reconnects the lock
// connection when it broke.
func (c *Cluster) renewLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.TTL / 5)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.lapsed() // a pause past the lease voids the leases, even if renewing works now
		if err := c.renew(); err != nil && c.ctx.Err() == nil {
			c.log.Warn("node lease renewal failed", "err", err)
		}
	}
}

func (c *Cluster) renew() error {
	// A renewal may take a whole TTL: a slow store is not a dead one.
	// Giving up sooner closes the lock session (pgx closes a connection
	// whose statement it abandons), and with it this node gives up every
	// database it holds, although the store still counts its lease as
	// current. Meanwhile the node's own lease lapses on time by its clock
	// (lapsed): that, and the fence, keep it from writing once it could
	// have been replaced, not this deadline. After a TTL the store counts
	// the lease over anyway.
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.TTL)
	defer cancel()
	c.lmu.Lock()
	conn := c.lockConn
	c.lmu.Unlock()
	if conn == nil || conn.IsClosed() {
		// The session holding the advisory lock is gone, and with it this
		// node's claim to be alive: other nodes may have taken over.
		c.voidLeases("lock session lost")
		if conn != nil {
			conn.Close(ctx)
		}
		c.m.reconnects.WithLabelValues("lock").Inc()
		return c.register(ctx)
	}
	sent := time.Now()
	start := time.Now()
	tag, err := conn.Exec(ctx, `UPDATE syncdb_node SET lease_until = now() + $2::interval WHERE node = $1`, c.node, c.cfg.TTL.String())
	c.m.observe("renew", start, err)
	if err != nil {
		conn.Close(context.Background())
		return err
	}
	if tag.RowsAffected() == 0 {
		// Someone removed this node's row (it was considered dead).
		c.voidLeases("node row removed")
		conn.Close(ctx)
		return c.register(ctx)
	}
	c.lmu.Lock()
	c.validUntil = sent.Add(c.cfg.TTL - c.margin())
	c.lmu.Unlock()
	return nil
}

// lapsed reports whether this node's lease ran out by its own clock, and
// if so voids every database lease it holds: they have to be taken again,
// through the store, which sees whether another node took them meanwhile.
func (c *Cluster) lapsed() bool {
	if failpoint.Skip(selfCheck, "") {
		return false
	}
	c.lmu.Lock()
	over := time.Now().After(c.validUntil)
	c.lmu.Unlock()
	if over {
		c.voidLeases("node lease lapsed")
	}
	return over
}

func (c *Cluster) voidLeases(why string) {
	c.lmu.Lock()
	c.gen++
	c.lmu.Unlock()
	c.mu.Lock()
	states := make([]*dbState, 0, len(c.byName))
	for _, st := range c.byName {
		states = append(states, st)
	}
	c.mu.Unlock()
	n := 0
	for _, st := range states {
		st.mu.Lock()
		if st.held != nil {
			st.held = nil
			n++
		}
		st.mu.Unlock()
	}
	if n > 0 {
		c.log.Warn("dropped database leases", "why", why, "leases", n)
		c.m.leasesHeld.Sub(float64(n))
	}
}

func (c *Cluster) currentGen() int64 {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	return c.gen
}

// Ping checks that the store answers.
func (c *Cluster) Ping(ctx context.Context) error {
	start := time.Now()
	err := c.pool.Ping(ctx)
	c.m.observe("ping", start, err)
	return err
}

// state returns what this node knows of database name, loading it from the
// store the first time (or while the database does not exist yet).
func (c *Cluster) state(ctx context.Context, name string) (*dbState, error) {
	c.mu.Lock()
	st := c.byName[name]
	if st == nil {
		st = &dbState{name: name, changed: make(chan struct{})}
		c.byName[name] = st
	}
	c.mu.Unlock()
	st.mu.Lock()
	id := st.id
	st.mu.Unlock()
	if id == 0 {
		if err := c.load(ctx, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// load reads the database's row into st (leaving st uncreated if there is
// none).
func (c *Cluster) load(ctx context.Context, st *dbState) error {
	var (
		id                   int64
		hid                  string
		latest, size, horizn int64
		writer, wurl         *string
	)
	start := time.Now()
	err := c.pool.QueryRow(ctx, `SELECT d.id, d.history_id, d.latest, d.db_size, d.horizon, d.writer, n.url
		FROM syncdb_db d LEFT JOIN syncdb_node n ON n.node = d.writer WHERE d.name = $1`, st.name).
		Scan(&id, &hid, &latest, &size, &horizn, &writer, &wurl)
	c.m.observe("read", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgstore: load database %q: %w", st.name, err)
	}
	st.mu.Lock()
	st.id, st.historyID, st.horizon, st.base = id, hid, horizn, latest
	st.setLatest(history.Revision{Seq: latest, DBSize: uint32(size)})
	st.mu.Unlock()
	c.mu.Lock()
	c.byID[id] = st
	c.mu.Unlock()
	return nil
}

// setLatest moves latest forward and wakes waiters. The caller holds st.mu.
func (st *dbState) setLatest(r history.Revision) {
	if r.Seq <= st.latest.Seq {
		return
	}
	st.latest = r
	close(st.changed)
	st.changed = make(chan struct{})
}

// Exists reports whether database name exists in the store.
func (c *Cluster) Exists(ctx context.Context, name string) (bool, error) {
	st, err := c.state(ctx, name)
	if err != nil {
		return false, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.id != 0, nil
}

// Databases counts the databases in the store.
func (c *Cluster) Databases(ctx context.Context) (int, error) {
	var n int
	start := time.Now()
	err := c.pool.QueryRow(ctx, `SELECT count(*) FROM syncdb_db`).Scan(&n)
	c.m.observe("read", start, err)
	return n, err
}

// OpenHistory returns the history of database name: uninitialized if the
// database does not exist yet (Init creates it).
func (c *Cluster) OpenHistory(ctx context.Context, name string) (history.Backend, error) {
	st, err := c.state(ctx, name)
	if err != nil {
		return nil, err
	}
	return &backend{c: c, st: st}, nil
}

// Changed returns the channel closed at db's next newer revision.
func (c *Cluster) Changed(db string) <-chan struct{} {
	c.mu.Lock()
	st := c.byName[db]
	if st == nil {
		st = &dbState{name: db, changed: make(chan struct{})}
		c.byName[db] = st
	}
	c.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.changed
}

// Published: the append itself notified every node, this one included;
// waiters here are woken by Append already.
func (c *Cluster) Published(string, int64) {}

// lease is this node's lease on one database.
type lease struct {
	c     *Cluster
	st    *dbState
	epoch int64
	gen   int64
}

func (l *lease) Epoch() int64 { return l.epoch }

// Valid reports whether the node's lease is current by its own clock and
// this lease was not voided or released since.
func (l *lease) Valid() bool {
	if failpoint.Skip(selfCheck, "") {
		return true
	}
	if l.c.lapsed() || l.c.currentGen() != l.gen {
		return false
	}
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	return l.st.held == l
}

// Release gives the lease up: in the store too, so that another node can
// take the database at once.
func (l *lease) Release() {
	st := l.st
	st.mu.Lock()
	mine := st.held == l
	if mine {
		st.held = nil
		st.seen = time.Time{}
	}
	id := st.id
	st.mu.Unlock()
	if mine {
		l.c.m.leasesHeld.Dec()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.c.pool.Exec(ctx, `WITH u AS (UPDATE syncdb_db SET writer = NULL WHERE id = $1 AND writer = $2 AND epoch = $3 RETURNING id)
		SELECT pg_notify('syncdb_lease', id::text) FROM u`, id, l.c.node, l.epoch)
	if err != nil {
		l.c.log.Warn("release lease", "db", st.name, "err", err)
	}
}

// Writer returns this node's lease on db, taking it if no live node holds
// it, or the URL of the node that does.
func (c *Cluster) Writer(ctx context.Context, db string) (coord.Lease, *url.URL, error) {
	st, err := c.state(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	gen := c.currentGen()
	st.mu.Lock()
	id, held := st.id, st.held
	cached := st.writer != "" && st.writer != c.node && st.writerURL != nil && time.Since(st.seen) < c.writerAge()
	u := st.writerURL
	st.mu.Unlock()
	if id == 0 {
		return nil, nil, fmt.Errorf("%w: %q", coord.ErrUnknownDatabase, db)
	}
	if held != nil && held.gen == gen && held.Valid() {
		return held, nil, nil
	}
	if cached {
		return nil, u, nil
	}
	return c.acquire(ctx, st, id, gen)
}

// Unreachable tells the coordinator that writes forwarded to holder could
// not be delivered: the next Writer checks whether it is still alive (its
// advisory lock) and takes over if not.
func (c *Cluster) Unreachable(db string, holder *url.URL) {
	c.mu.Lock()
	st := c.byName[db]
	c.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	if st.writerURL != nil && holder != nil && st.writerURL.String() == holder.String() {
		st.seen = time.Time{}
	}
	st.mu.Unlock()
}

// acquire reads the lease in the store and takes it if it is free, held by
// this node, or held by a node that is dead: its lease expired, or its
// advisory lock is free (its session ended).
func (c *Cluster) acquire(ctx context.Context, st *dbState, id, gen int64) (coord.Lease, *url.URL, error) {
	if c.lapsed() {
		return nil, nil, ErrNodeLapsed
	}
	start := time.Now()
	var (
		l        *lease
		holder   string
		hURL     *url.URL
		rev      history.Revision
		takeover bool
	)
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var (
			writer, wurl *string
			epoch        int64
			latest, size int64
			expired      *bool
			key          *int32
		)
		// The row first, then its holder's: joined in one statement, a
		// take-over that waited for another one's lock would see the new
		// holder's name with the old holder's liveness (a row locked for
		// update is re-read after the wait, the joined row is not) and
		// take the lease from a live node.
		err := tx.QueryRow(ctx, `SELECT writer, epoch, latest, db_size FROM syncdb_db WHERE id = $1 FOR UPDATE`, id).
			Scan(&writer, &epoch, &latest, &size)
		if err != nil {
			return err
		}
		if writer != nil {
			err := tx.QueryRow(ctx, `SELECT url, lease_until < now(), lock_key FROM syncdb_node WHERE node = $1`, *writer).
				Scan(&wurl, &expired, &key)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		rev = history.Revision{Seq: latest, DBSize: uint32(size)}
		free := writer == nil || *writer == c.node || wurl == nil || (expired != nil && *expired)
		if !free && key != nil {
			// The holder's row is current; is its session? Its advisory
			// lock is free the moment PostgreSQL saw the session end.
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, advisoryClass, *key).Scan(&free); err != nil {
				return err
			}
		}
		if !free {
			holder = *writer
			if hURL, err = url.Parse(*wurl); err != nil {
				return fmt.Errorf("holder %s has a bad URL %q: %w", holder, *wurl, err)
			}
			return nil
		}
		if writer == nil || *writer != c.node {
			takeover = writer != nil
			if err := tx.QueryRow(ctx, `UPDATE syncdb_db SET writer = $2, epoch = epoch + 1 WHERE id = $1 RETURNING epoch`, id, c.node).Scan(&epoch); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pg_notify('syncdb_lease', $1::text)`, strconv.FormatInt(id, 10)); err != nil {
				return err
			}
		}
		holder = c.node
		l = &lease{c: c, st: st, epoch: epoch, gen: gen}
		return nil
	})
	c.m.observe("lease", start, err)
	if err != nil {
		return nil, nil, fmt.Errorf("pgstore: writer lease of %q: %w", st.name, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.writer, st.writerURL, st.seen = holder, hURL, time.Now()
	if l == nil {
		if st.held != nil {
			st.held = nil
			c.m.leasesHeld.Dec()
		}
		return nil, hURL, nil
	}
	if st.held == nil {
		c.m.leasesHeld.Inc()
	}
	st.held = l
	st.writerURL = c.self
	st.setLatest(rev)
	st.base = rev.Seq
	c.m.acquired.Inc()
	if takeover {
		c.m.takeovers.Inc()
		c.log.Info("took over database", "db", st.name, "epoch", l.epoch)
	}
	return l, nil, nil
}

// listenLoop keeps a LISTEN connection: syncdb_rev moves a database's latest
// revision and wakes its waiters, syncdb_lease drops the cached writer.
// Notifications are not replayed, so after every (re)connect and every
// Recheck the latest revisions are read again.
func (c *Cluster) listenLoop() {
	defer c.wg.Done()
	backoff := 50 * time.Millisecond
	for c.ctx.Err() == nil {
		err := c.listen()
		if c.ctx.Err() != nil {
			return
		}
		c.m.reconnects.WithLabelValues("listen").Inc()
		c.log.Warn("notification listener disconnected", "err", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (c *Cluster) listen() error {
	conn, err := pgx.ConnectConfig(c.ctx, c.pool.Config().ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(c.ctx, `LISTEN syncdb_rev; LISTEN syncdb_lease`); err != nil {
		return err
	}
	c.recheck(c.ctx)
	next := time.Now().Add(c.cfg.Recheck)
	for {
		ctx, cancel := context.WithDeadline(c.ctx, next)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		switch {
		case err == nil:
			c.notified(n.Channel, n.Payload)
		case c.ctx.Err() != nil:
			return nil
		case time.Now().After(next) && !conn.IsClosed():
			c.recheck(c.ctx)
			next = time.Now().Add(c.cfg.Recheck)
		default:
			return err
		}
	}
}

// notified handles one notification: "id:seq:size" on syncdb_rev, "id" on
// syncdb_lease.
func (c *Cluster) notified(channel, payload string) {
	parts := strings.Split(payload, ":")
	id, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	st := c.byID[id]
	c.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch channel {
	case "syncdb_rev":
		if len(parts) != 3 {
			return
		}
		seq, err1 := strconv.ParseInt(parts[1], 10, 64)
		size, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 == nil && err2 == nil {
			st.setLatest(history.Revision{Seq: seq, DBSize: uint32(size)})
		}
	case "syncdb_lease":
		st.seen = time.Time{}
	}
}

// recheck reads the latest revision of every database this node knows.
func (c *Cluster) recheck(ctx context.Context) {
	c.mu.Lock()
	ids := make([]int64, 0, len(c.byID))
	for id := range c.byID {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	start := time.Now()
	rows, err := c.pool.Query(ctx, `SELECT id, latest, db_size FROM syncdb_db WHERE id = ANY($1)`, ids)
	if err != nil {
		c.m.observe("read", start, err)
		return
	}
	type row struct{ id, latest, size int64 }
	var got []row
	for rows.Next() {
		var r row
		if rows.Scan(&r.id, &r.latest, &r.size) == nil {
			got = append(got, r)
		}
	}
	rows.Close()
	c.m.observe("read", start, rows.Err())
	for _, r := range got {
		c.mu.Lock()
		st := c.byID[r.id]
		c.mu.Unlock()
		if st != nil {
			st.mu.Lock()
			st.setLatest(history.Revision{Seq: r.latest, DBSize: uint32(r.size)})
			st.mu.Unlock()
		}
	}
}

// Close releases every lease this node holds, removes its row and closes
// the connections.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var held []*lease
	for _, st := range c.byName {
		st.mu.Lock()
		if st.held != nil {
			held = append(held, st.held)
		}
		st.mu.Unlock()
	}
	c.mu.Unlock()
	for _, l := range held {
		l.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.pool.Exec(ctx, `DELETE FROM syncdb_node WHERE node = $1`, c.node); err != nil {
		c.log.Warn("remove node row", "err", err)
	}
	c.cancel()
	c.wg.Wait()
	c.lmu.Lock()
	if c.lockConn != nil {
		c.lockConn.Close(ctx)
	}
	c.lmu.Unlock()
	c.pool.Close()
	return nil
}
