package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncdb/syncdb/internal/pgtest"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/server/history/historytest"
)

func openCluster(t *testing.T, dsn string, mod func(*Config)) *Cluster {
	t.Helper()
	// The serve default TTL: no test here waits for a lease to expire by
	// itself, and a loaded CI machine must not make one lapse.
	cfg := Config{URL: dsn, Advertise: "http://127.0.0.1:1", TTL: 5 * time.Second, Recheck: time.Second, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randName() string {
	var b [4]byte
	rand.Read(b[:])
	return "db" + hex.EncodeToString(b[:])
}

func TestConformance(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	historytest.Run(t, historytest.Backends{
		New: func(t *testing.T) history.Backend {
			b, err := openCluster(t, dsn, nil).OpenHistory(t.Context(), randName())
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		// Another node (a fresh Cluster) opens the same history.
		Reopen: func(t *testing.T, b history.Backend) history.Backend {
			old := b.(*backend)
			old.c.Close()
			nb, err := openCluster(t, dsn, nil).OpenHistory(t.Context(), old.st.name)
			if err != nil {
				t.Fatal(err)
			}
			return nb
		},
	})
}

func initDB(t *testing.T, c *Cluster, name string) history.Backend {
	t.Helper()
	b, err := c.OpenHistory(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Init(t.Context(), "h"+name, historytest.Commit(1, map[uint32]int{1: 2}), history.Cursor{}, 1); err != nil {
		t.Fatal(err)
	}
	return b
}

func one(seed int) []history.Commit {
	return []history.Commit{historytest.Commit(1, map[uint32]int{1: seed})}
}

// Two nodes create the same database at once: one wins, the other gets
// ErrExists and then holds the winner's history.
func TestInitRace(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := openCluster(t, dsn, nil), openCluster(t, dsn, nil)
	ha, _ := a.OpenHistory(t.Context(), "x")
	hb, _ := b.OpenHistory(t.Context(), "x")
	if err := ha.Init(t.Context(), "first", historytest.Commit(1, map[uint32]int{1: 2}), history.Cursor{}, 1); err != nil {
		t.Fatal(err)
	}
	err := hb.Init(t.Context(), "second", historytest.Commit(1, map[uint32]int{1: 4}), history.Cursor{}, 1)
	if !errors.Is(err, history.ErrExists) || hb.ID() != "first" || hb.Latest().Seq != 1 {
		t.Fatalf("second Init: %v, id %q latest %+v", err, hb.ID(), hb.Latest())
	}
}

// The lease epoch fences appends inside PostgreSQL: once another node took
// the lease, the old holder's append records nothing, even though it never
// learned of the takeover.
func TestFencedAppendRecordsNothing(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, nil)
	b := openCluster(t, dsn, func(c *Config) { c.Advertise = "http://127.0.0.1:2" })
	ha := initDB(t, a, "d")
	la, fwd, err := a.Writer(t.Context(), "d")
	if err != nil || fwd != nil {
		t.Fatalf("a's lease: %v %v", fwd, err)
	}
	if _, err := ha.Append(t.Context(), history.Fence{Epoch: la.Epoch()}, one(4), history.Cursor{}, 2); err != nil {
		t.Fatal(err)
	}
	// b sees a as a live holder.
	l, fwd, err := b.Writer(t.Context(), "d")
	if err != nil || l != nil || fwd == nil || fwd.Host != "127.0.0.1:1" {
		t.Fatalf("b while a holds the lease: %v %v %v", l, fwd, err)
	}
	// a's node lease expires in the store (as if a were paused past it).
	a.cancel()
	a.wg.Wait()
	if _, err := a.pool.Exec(t.Context(), `UPDATE syncdb_node SET lease_until = now() - interval '1 s' WHERE node = $1`, a.node); err != nil {
		t.Fatal(err)
	}
	b.Unreachable("d", fwd)
	lb, fwd, err := b.Writer(t.Context(), "d")
	if err != nil || lb == nil || lb.Epoch() != la.Epoch()+1 {
		t.Fatalf("b's takeover: %v %v %v", lb, fwd, err)
	}
	_, err = ha.Append(t.Context(), history.Fence{Epoch: la.Epoch()}, one(6), history.Cursor{}, 3)
	if !errors.Is(err, history.ErrFenced) {
		t.Fatalf("stale append: %v", err)
	}
	var n int
	if err := a.pool.QueryRow(t.Context(), `SELECT count(*) FROM syncdb_rev WHERE epoch = $1 AND seq > 2`, la.Epoch()).Scan(&n); err != nil || n != 0 {
		t.Fatalf("revisions by the fenced writer: %d %v", n, err)
	}
	hb, _ := b.OpenHistory(t.Context(), "d")
	if rev, err := hb.Append(t.Context(), history.Fence{Epoch: lb.Epoch()}, one(8), history.Cursor{}, 4); err != nil || rev.Seq != 3 {
		t.Fatalf("new holder's append: %+v %v", rev, err)
	}
}

// An append whose outcome the writer could not learn is retried with the
// same commits: if it had committed, the retry records nothing twice.
func TestAppendRetryAfterUnknownOutcome(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, nil)
	h := initDB(t, a, "d")
	l, _, err := a.Writer(t.Context(), "d")
	if err != nil {
		t.Fatal(err)
	}
	f := history.Fence{Epoch: l.Epoch()}
	if _, err := h.Append(t.Context(), f, one(4), history.Cursor{}, 2); err != nil {
		t.Fatal(err)
	}
	// The writer did not learn of revision 2: it retries from 1.
	st := h.(*backend).st
	st.mu.Lock()
	st.base = 1
	st.mu.Unlock()
	rev, err := h.Append(t.Context(), f, one(4), history.Cursor{}, 2)
	if err != nil || rev.Seq != 2 {
		t.Fatalf("retry: %+v %v", rev, err)
	}
	var n int
	if err := a.pool.QueryRow(t.Context(), `SELECT count(*) FROM syncdb_rev`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("revisions after the retry: %d %v", n, err)
	}
}

// A crashed holder's session ends, its advisory lock is free, and another
// node takes over without waiting for the TTL.
func TestTakeoverWhenHolderSessionEnds(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour })
	b := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour; c.Advertise = "http://127.0.0.1:2" })
	initDB(t, a, "d")
	la, _, err := a.Writer(t.Context(), "d")
	if err != nil || la == nil {
		t.Fatal(err)
	}
	crash(a) // its node row stays (an hour)
	start := time.Now()
	var lb coord.Lease
	for time.Since(start) < 10*time.Second {
		b.Unreachable("d", nil)
		st, _ := b.state(t.Context(), "d")
		st.mu.Lock()
		st.seen = time.Time{}
		st.mu.Unlock()
		if lb, _, err = b.Writer(t.Context(), "d"); err != nil {
			t.Fatal(err)
		}
		if lb != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if lb == nil || lb.Epoch() != la.Epoch()+1 {
		t.Fatalf("no takeover after the holder's session ended: %v", lb)
	}
	t.Logf("takeover %v after the holder's session closed (TTL 1 h)", time.Since(start))
}

// A node paused past its lease must not use its leases when it resumes,
// even before the store tells it anything.
func TestLapsedNodeVoidsItsLeases(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour }) // renews only when told (a.renew shares the loop's connection)
	initDB(t, a, "d")
	l, _, err := a.Writer(t.Context(), "d")
	if err != nil || !l.Valid() {
		t.Fatal(err)
	}
	a.lmu.Lock()
	a.validUntil = time.Now().Add(-time.Millisecond) // as after a pause
	a.lmu.Unlock()
	if l.Valid() {
		t.Fatal("lease valid after the node lease lapsed")
	}
	if err := a.renew(); err != nil {
		t.Fatal(err)
	}
	if l.Valid() {
		t.Fatal("a voided lease became valid again after a renewal")
	}
	l2, _, err := a.Writer(t.Context(), "d")
	if err != nil || l2 == nil || l2.Epoch() != l.Epoch() {
		t.Fatalf("re-taking the lease nobody else took: %v %v", l2, err)
	}
}

// A revision appended on one node wakes waiters on another through
// NOTIFY, and a node that missed notifications catches up on its recheck.
func TestNotifyWakesOtherNodes(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, nil)
	b := openCluster(t, dsn, nil)
	h := initDB(t, a, "d")
	hb, _ := b.OpenHistory(t.Context(), "d")
	l, _, _ := a.Writer(t.Context(), "d")
	ch := b.Changed("d")
	if _, err := h.Append(t.Context(), history.Fence{Epoch: l.Epoch()}, one(4), history.Cursor{}, 2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("b was not woken")
	}
	if hb.Latest().Seq != 2 {
		t.Fatalf("b's latest after the wake-up: %+v", hb.Latest())
	}
	// The listener's session is killed: b reconnects and re-reads.
	if _, err := a.pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	ch = b.Changed("d")
	if _, err := h.Append(t.Context(), history.Fence{Epoch: l.Epoch()}, one(6), history.Cursor{}, 3); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("b was not woken after its listener was killed")
	}
	if hb.Latest().Seq != 3 {
		t.Fatalf("b's latest: %+v", hb.Latest())
	}
}

// A node's clean close releases its leases: another takes over at once.
func TestCloseReleasesLeases(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour })
	b := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour; c.Advertise = "http://127.0.0.1:2" })
	initDB(t, a, "d")
	if _, _, err := a.Writer(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	l, fwd, err := b.Writer(t.Context(), "d")
	if err != nil || l == nil {
		t.Fatalf("after a's close: %v %v %v", l, fwd, err)
	}
	var writer *string
	if err := b.pool.QueryRow(t.Context(), `SELECT writer FROM syncdb_db WHERE name = 'd'`).Scan(&writer); err != nil || writer == nil || *writer != b.node {
		t.Fatalf("writer %v %v", writer, err)
	}
}

func TestSchemaFromTheFutureIsRefused(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	openCluster(t, dsn, nil)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), `UPDATE syncdb_schema SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), Config{URL: dsn, Advertise: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("open a newer schema: %v", err)
	}
}

// Two nodes find the holder dead at the same moment: one takes the lease
// over, the other then sees the new holder alive and forwards to it (it
// does not take the lease from a live node: one epoch per failure).
func TestConcurrentTakeoversTakeOneEpoch(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour })
	initDB(t, a, "d")
	la, _, err := a.Writer(t.Context(), "d")
	if err != nil || la == nil {
		t.Fatal(err)
	}
	crash(a)
	b := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour; c.Advertise = "http://127.0.0.1:2" })
	c := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour; c.Advertise = "http://127.0.0.1:3" })
	for _, n := range []*Cluster{b, c} {
		if _, err := n.state(t.Context(), "d"); err != nil {
			t.Fatal(err)
		}
	}
	// Both take-overs wait on the database's row, then run one after the
	// other.
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM syncdb_db WHERE name = 'd' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	type got struct {
		l   coord.Lease
		err error
	}
	res := make(chan got, 2)
	for _, n := range []*Cluster{b, c} {
		go func() {
			l, _, err := n.Writer(ctx, "d")
			res <- got{l, err}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 2 {
			break
		}
		select {
		case r := <-res:
			// A take-over that returned without waiting for the row
			// (CI once saw only 1 of 2 waiting after 30 s under load).
			t.Fatalf("a take-over returned while the row was locked (%d waiting): lease %v, err %v", waiting, r.l, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d take-overs wait for the row", waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	leases := 0
	for range 2 {
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.l != nil {
			leases++
		}
	}
	var epoch int64
	if err := conn.QueryRow(ctx, `SELECT epoch FROM syncdb_db WHERE name = 'd'`).Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	if leases != 1 || epoch != la.Epoch()+1 {
		t.Fatalf("%d nodes took the lease; epoch %d after %d", leases, epoch, la.Epoch())
	}
}

// Renewing the node lease does not wait for the store's WAL flush (which
// a busy store may make slow: a bulk append, a slow disk; here every
// commit of the database waits 100 ms before its flush): the renewal is
// not what makes a write safe, the fence is.
func TestRenewalDoesNotWaitForTheWALFlush(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DO $$ BEGIN
		EXECUTE format('ALTER DATABASE %I SET commit_delay = 100000', current_database());
		EXECUTE format('ALTER DATABASE %I SET commit_siblings = 0', current_database());
	END $$`); err != nil {
		t.Fatal(err)
	}
	a := openCluster(t, dsn, func(c *Config) { c.TTL = time.Hour }) // renews only when told
	start := time.Now()
	tag, err := a.pool.Exec(ctx, `UPDATE syncdb_node SET lease_until = lease_until WHERE node = $1`, a.Node())
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatal(err)
	}
	durable := time.Since(start)
	// A renewal that waits for the flush cannot take less than the delay
	// (a sleep before every flush); one that does not can still be slowed
	// by a loaded machine now and then, so the fastest of five decides.
	fastest := time.Hour
	for range 5 {
		start := time.Now()
		if err := a.renew(); err != nil {
			t.Fatal(err)
		}
		fastest = min(fastest, time.Since(start))
	}
	t.Logf("a durable update %v, renewals from %v", durable.Round(time.Millisecond), fastest.Round(time.Millisecond))
	if durable < 100*time.Millisecond {
		t.Fatalf("a durable commit took %v: the store does not delay flushes, the test shows nothing", durable)
	}
	if fastest >= 100*time.Millisecond {
		t.Fatalf("every renewal took at least %v: they wait for the WAL flush", fastest)
	}
}

// A renewal held up by the store for longer than half the TTL (here a lock
// on the node's row) is waited for: the node keeps its lock session, and so
// its databases; giving up on the renewal would close the session, drop
// the node's leases, and free its advisory lock for others to take them,
// although the store still counts its lease as current.
func TestSlowRenewalKeepsTheSession(t *testing.T) {
	const ttl = 4 * time.Second
	dsn := pgtest.NewDatabase(t)
	ctx := t.Context()
	a := openCluster(t, dsn, func(c *Config) { c.TTL = ttl })
	b := openCluster(t, dsn, func(c *Config) { c.TTL = ttl; c.Advertise = "http://127.0.0.1:2" })
	initDB(t, a, "d")
	la, _, err := a.Writer(ctx, "d")
	if err != nil || la == nil {
		t.Fatal(err)
	}
	a.lmu.Lock()
	conn, key := a.lockConn, a.lockKey
	a.lmu.Unlock()
	renewed := func(after time.Time) time.Time {
		t.Helper()
		for deadline := time.Now().Add(2 * ttl); ; time.Sleep(5 * time.Millisecond) {
			var until time.Time
			if err := a.pool.QueryRow(ctx, `SELECT lease_until FROM syncdb_node WHERE node = $1`, a.node).Scan(&until); err != nil {
				t.Fatal(err)
			}
			if until.After(after) {
				return until
			}
			if time.Now().After(deadline) {
				t.Fatal("no renewal")
			}
		}
	}
	// Right after a renewal, so that the next one starts TTL/5 into the
	// lock and waits for it past TTL/2 (where renewals used to give up).
	last := renewed(time.Time{})
	last = renewed(last)
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM syncdb_node WHERE node = $1 FOR UPDATE`, a.node); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl * 9 / 10)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	renewed(last)
	time.Sleep(ttl / 4) // a tick, for a node that lost its session to notice
	a.lmu.Lock()
	same := a.lockConn == conn && a.lockKey == key
	a.lmu.Unlock()
	if !same {
		t.Fatal("the slow renewal cost the node its lock session")
	}
	// Its own lease lapsed meanwhile (its clock), so it takes the lease
	// again, with the same epoch: nobody else could take it.
	l, _, err := a.Writer(ctx, "d")
	if err != nil || l == nil || l.Epoch() != la.Epoch() {
		t.Fatalf("the node's lease after the slow renewal: %v %v", l, err)
	}
	if l, u, err := b.Writer(ctx, "d"); err != nil || l != nil || u == nil || u.String() != "http://127.0.0.1:1" {
		t.Fatalf("another node: lease %v, holder %v, %v", l, u, err)
	}
}

// crash stops n as a crash would: its renewals end and its lock session
// closes (its advisory locks are free), its node row stays in the store.
func crash(n *Cluster) {
	n.cancel()
	n.wg.Wait()
	n.lmu.Lock()
	n.lockConn.Close(context.Background())
	n.lmu.Unlock()
}
