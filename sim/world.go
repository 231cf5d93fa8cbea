// Package sim is syncdb's deterministic simulation: one seed decides how
// many clients there are, what they do (writes, schema changes,
// transactions, reads, push, pull, sync, checkpoint, reopen), which network
// faults hit which requests, and where processes crash — at a failpoint
// inside an operation, as a process death or a power loss — when the
// server crashes and restarts, which writes of a client's -info file or of
// the server's page history fail with an error the process survives,
// when a bootstrap runs beside a push (serverio.go), when a pull starts
// right after a checkpoint and loses power before its first transaction
// (the checkpointed WAL comes back: staleWAL), and when the background
// prefetches of partial replicas that bootstrapped late run (after a pull
// and a checkpoint made some of their pages present: prefetch.go), and
// power losses of SyncNormal clients too, which take back exactly the local
// commits no WAL sync covered (syncnormal.go). The
// server and the clients run in one process; the network is an
// http.RoundTripper; time is virtual (a long poll that a commit is planned
// to wake really blocks: longpoll.go).
//
// After every operation and at quiescence it checks the invariants:
// integrity of every database, no lost acknowledged write (unless a
// recorded conflict holds it), every recorded conflict matching a change
// another client committed in the revisions the replica pulled and holding
// no write the server already had (last writer wins: a pull must not
// replay a pushed change over what landed since), no push deleting or
// replacing a row that holds a value another client wrote after the
// pusher's synced revision (gone without a conflict), convergence of every
// replica with the server, the server equal to a
// reference model of the committed pushes, every local transaction landing
// on the server in one batch and every write landing once (unless keeping
// the local side of a conflict resends it), each client's synced base
// byte-identical to the server's pages at its revision, monotonic
// revisions, each replica's metadata as its -info file says (a failed write
// moves neither), every retained revision's pages unchanged by a
// compaction of the server's history (the sim compacts, at maintenance, up
// to the oldest revision a client holds), every long poll woken by a commit
// that lands while it waits, every bootstrap serving exactly its
// revision's pages (one started between a push's commit and its recording,
// with a checkpoint while it reads), a SyncNormal power loss losing only
// unsynced commits and never one the server has (no ErrClientCloned), no
// lost write coming back, no goroutine leak.
//
// Run it with go test ./sim (see sim_test.go for the flags); a failing run
// prints the command that replays it.
package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/testhooks"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/server"
)

// config is one run.
type config struct {
	seed     uint64
	ops      int
	faults   bool // network faults
	crashes  bool // client and server crashes
	partial  bool // some clients are partial replicas
	ioFaults bool // write errors the client survives (its -info file)
	verbose  bool
}

// world is everything one seed runs.
type world struct {
	t    testing.TB
	cfg  config
	rng  *rand.Rand
	frng *rand.Rand // I/O faults: a stream of their own, so that the other choices stay as they were
	srng *rand.Rand // the server's I/O faults and interleavings: another one
	grng *rand.Rand // pulls right after a checkpoint, cut by a power loss (see staleWAL): another one
	krng *rand.Rand // prefetching clients and their reads (prefetch.go): another one
	// padded: kv rows carry padding (a client prefetches); bgCond is
	// signalled when a prefetch was written (on mu).
	padded bool
	bgCond *sync.Cond
	dir    string
	vfs    string
	model  *model
	tr     *transport
	clock  *simClock
	ids    *seededIDs

	srv *server.Server
	// compactAt, if not 0, is the server's time (unix ns) during a
	// compaction; commitTimes is the virtual time of each revision a push
	// made (guarded by mu). See maintain.
	compactAt   atomic.Int64
	commitTimes map[int64]time.Time
	maintains   atomic.Int64 // maintain calls so far (every other one compacts past the clients)
	compactedTo atomic.Int64 // the revision maintain compacted up to last
	srvDir      string
	srvRec      *shimvfs.Recorder
	hfault      historyFault // see serverio.go

	clients []*client

	mu   sync.Mutex // guards plan, log, failures (failpoints fire on actor goroutines)
	plan *crashPlan
	wake *wakePlan // see longpoll.go
	boot *bootPlan // see serverio.go
	log  strings.Builder
	bad  []string
}

type client struct {
	// cache is the replica's current metadata (metaactor's), as its
	// testhooks.Hooks.OnMeta last reported it; nil until it changes after
	// an open.
	cacheMu sync.Mutex
	cache   *messages.Meta
	i       int
	name    string
	dir     string
	path    string
	db      *syncdb.DB
	fs      *fsx.CrashFS
	rec     *shimvfs.Recorder
	// partial: a partial replica (prefix bootstrap, lazy pages)
	partial  *syncdb.PartialSync
	longPoll time.Duration
	// syncNormal: local commits do not wait for the disk; a power loss
	// takes back those no WAL sync followed (syncnormal.go): commitSyncs
	// (-1: none yet) and atRisk track them, lost holds the tokens it took
	// back unpushed. cloneCheck: c is to compare its change ids with the
	// server's mark once open; expectCloned: it lost commits the server has
	// under client id copyID, and must be refused as a copy; recover: open
	// it next with Config.Recover.
	syncNormal   bool
	commitSyncs  int64
	atRisk       []atRisk
	lost         map[string]bool
	cloneCheck   bool
	expectCloned bool
	copyID       string
	recover      bool
	seq          int
	tokens       []string // value tokens of local writes that committed and changed rows
	rev          int64    // revision sequence last seen (monotonic)
	// seenConflict is the last conflict id checked; heldTokens are the
	// tokens that conflicts hold back (see checkConflicts).
	seenConflict int64
	heldTokens   map[string]bool
	// conflictTokens are the tokens of every conflict c ever recorded:
	// keeping the local side sends them again (see checkLanding).
	conflictTokens map[string]bool
	// txns are the tokens of each committed local transaction that wrote
	// more than one: they must land on the server in one batch.
	txns [][]string
	// startAt: a prefetching client opens at this operation first; bg are
	// its queued prefetch downloads, bgSent those run and not yet written
	// (guarded by w.mu; see prefetch.go).
	startAt int
	probed  bool
	bg      []func()
	bgSent  int
	bgSince int // committed pushes when the first of bg was queued
}

// crashPlan arms a crash at the n-th hit of a failpoint of one owner.
type crashPlan struct {
	owner     string // a client's or the server's directory
	point     string // "" = any failpoint
	countdown int
	power     bool // a power loss, not just a process death
	fired     string
}

func newWorld(t testing.TB, cfg config) *world {
	vfs, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		t:           t,
		cfg:         cfg,
		rng:         rand.New(rand.NewPCG(cfg.seed, 0x5eed)),
		dir:         t.TempDir(),
		vfs:         vfs,
		model:       newModel(),
		commitTimes: map[int64]time.Time{},
		clock:       &simClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()},
	}
	w.frng = rand.New(rand.NewPCG(cfg.seed, 0xf5))
	w.srng = rand.New(rand.NewPCG(cfg.seed, 0x5e7))
	w.grng = rand.New(rand.NewPCG(cfg.seed, 0x3a1))
	w.krng = rand.New(rand.NewPCG(cfg.seed, 0x9f7))
	w.bgCond = sync.NewCond(&w.mu)
	w.ids = &seededIDs{rng: rand.New(rand.NewPCG(cfg.seed, 0x1d5))}
	w.tr = &transport{w: w, trace: fnv.New64a()}
	w.model.trace = func(tok string, n int, sql string) {
		if n > 1 {
			w.logf("model: %s written by a committed push for the %d. time: %s", tok, n, sql)
		}
	}
	if cfg.faults {
		w.tr.faultPct = 8
	}
	failpoint.Set(w.hook)
	w.srvDir = filepath.Join(w.dir, "server")
	os.MkdirAll(w.srvDir, 0o755)
	if w.srvRec, err = shimvfs.Record(w.srvDir); err != nil {
		t.Fatal(err)
	}
	w.srvRec.SetFull(w.historyWriteFails)
	w.startServer()
	n := 1 + w.rng.IntN(5)
	// Which clients are partial comes from a stream of its own, so that a
	// seed's other choices do not depend on it.
	prng := rand.New(rand.NewPCG(cfg.seed, 0x9a7))
	for i := 0; i < n; i++ {
		c := &client{i: i, name: fmt.Sprintf("c%d", i), fs: fsx.NewCrashFS(), commitSyncs: -1, lost: map[string]bool{}}
		c.syncNormal = cfg.partial && prng.IntN(4) == 0
		if cfg.partial && prng.IntN(3) == 0 {
			// Long polls: with virtual time, one that finds nothing new
			// expires at once.
			c.longPoll = time.Duration(1+prng.IntN(30)) * time.Second
		}
		if cfg.partial && prng.IntN(10) < 3 {
			// No prefetch here: its requests would run beside the query's and
			// make the order of network faults depend on scheduling (the
			// prefetching clients below queue them: prefetch.go).
			c.partial = &syncdb.PartialSync{PrefixBytes: int64(4096 * (1 + prng.IntN(4))), SegmentSize: 4096 * (1 + prng.IntN(4))}
			if w.krng.IntN(2) == 0 {
				// A prefetching client (prefetch.go): it bootstraps late, with a
				// prefix of page 1 only.
				c.partial.PrefixBytes, c.partial.SegmentSize, c.partial.Prefetch = 4096, 4096*(2+w.krng.IntN(3)), true
				c.startAt = 40 + w.krng.IntN(60)
				w.padded = true
			}
		}
		c.dir = filepath.Join(w.dir, c.name)
		c.path = filepath.Join(c.dir, "app.db")
		os.MkdirAll(c.dir, 0o755)
		if c.rec, err = shimvfs.Record(c.dir); err != nil {
			t.Fatal(err)
		}
		w.clients = append(w.clients, c)
	}
	partial := 0
	for _, c := range w.clients {
		if c.partial != nil {
			partial++
		}
	}
	w.logf("seed %d: %d clients, %d partial, padded %v", cfg.seed, n, partial, w.padded)
	return w
}

// logf appends to the operation log. Paths are written relative to the
// run's directory, so that two runs of a seed log the same bytes.
func (w *world) logf(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), w.dir, "$SIM")
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log.WriteString(msg + "\n")
	if w.cfg.verbose {
		w.t.Log(msg)
	}
}

// fail records an invariant violation.
func (w *world) fail(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), w.dir, "$SIM")
	w.mu.Lock()
	w.bad = append(w.bad, msg)
	fmt.Fprintf(&w.log, "VIOLATION %s\n", msg)
	w.mu.Unlock()
}

func (w *world) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.bad) > 0
}

// hook is the failpoint hook: it fires the armed crash plan.
func (w *world) hook(name, owner string) {
	switch {
	case name == "pages.wait":
		if c := w.clientAt(owner); c != nil {
			w.runPrefetches(c)
		}
		return
	case name == "pages.prefetched":
		w.prefetched(owner)
		return
	case strings.HasPrefix(name, "server.long-poll"):
		w.longPollHook(name)
		return
	case name == "server.committed":
		w.bootHook()
		return
	case name == "server.live-read":
		w.liveReadHook()
		return
	case name == "write.committed":
		w.noteCommit(owner) // and a crash plan may fire here
	}
	w.mu.Lock()
	p := w.plan
	if p == nil || p.fired != "" || !strings.HasPrefix(owner, p.owner+string(filepath.Separator)) && owner != p.owner ||
		p.point != "" && p.point != name {
		w.mu.Unlock()
		return
	}
	p.countdown--
	if p.countdown > 0 {
		w.mu.Unlock()
		return
	}
	p.fired = name
	w.mu.Unlock()
	w.freeze(p.owner)
	panic(failpoint.Crash{Name: name, Owner: owner})
}

// freeze stops all I/O of a process: it has died.
func (w *world) freeze(owner string) {
	if owner == w.srvDir {
		w.srvRec.Crash()
		return
	}
	for _, c := range w.clients {
		if c.dir == owner {
			c.fs.Freeze()
			c.rec.Crash()
		}
	}
}

func (w *world) startServer() {
	srv, err := server.New(server.Config{
		DataDir: w.srvDir, Logger: slog.New(slog.DiscardHandler), VFS: w.vfs, NewID: w.ids.next,
		MaintenanceInterval: -1, CheckpointFrames: 1 + w.rng.IntN(200), After: w.serverAfter, Now: w.serverNow, HistoryRetention: retention,
		// Even seeds serve repeated bootstraps from the snapshot cache (not
		// drawn from rng, so that the seeds' other choices stay as they were).
		SnapshotCacheMinBytes: map[bool]int64{true: 1, false: -1}[w.cfg.seed%2 == 0],
	})
	if err != nil {
		w.fail("server start: %v", err)
		return
	}
	w.srv = srv
	w.tr.setHandler(srv.Handler())
}

// crashServer kills the server (optionally with a power loss) and starts
// it again.
func (w *world) crashServer(power bool) {
	w.logf("server crash power=%v", power)
	w.tr.setHandler(nil)
	w.srvRec.Crash()
	w.srv.BeginShutdown()
	w.srv.Close()
	w.restartRecorder(w.srvRec, power)
	w.startServer()
}

func (w *world) restartRecorder(r *shimvfs.Recorder, power bool) {
	if power {
		if err := r.PowerLoss(); err != nil {
			w.fail("power loss: %v", err)
		}
	} else {
		r.Resume()
	}
}

func (w *world) open(c *client) error {
	cfg := syncdb.Config{
		Path: c.path, URL: "http://sim", ClientName: c.name, HTTPClient: &http.Client{Transport: w.tr},
		AutoCheckpointFrames: 20 + w.rng.IntN(200), PushBatchChanges: w.rng.IntN(3) * 10, Partial: c.partial, LongPollTimeout: c.longPoll, SyncNormal: c.syncNormal,
		Recover: c.recover,
	}
	c.cacheMu.Lock()
	c.cache = nil
	c.cacheMu.Unlock()
	hooks := testhooks.Hooks{
		// NoJitter: a retry waits the same virtual time in every replay.
		Clock: w.clock, NoJitter: true, IDs: w.ids.next, FS: c.fs, VFS: w.vfs, Background: w.background(c),
		OnMeta: func(m *messages.Meta) {
			c.cacheMu.Lock()
			c.cache = m
			c.cacheMu.Unlock()
		},
		OnPanic: func(err error) {
			var pe *actors.PanicError
			if errors.As(err, &pe) {
				if _, ok := pe.Value.(failpoint.Crash); ok {
					return
				}
			}
			w.fail("%s: actor panic: %v", c.name, err)
		},
	}
	db, err := syncdb.Open(testhooks.With(context.Background(), hooks), cfg)
	if err != nil {
		return err
	}
	c.db = db
	return nil
}

// crashed reports whether the armed plan fired, and disarms it.
func (w *world) takeCrash() *crashPlan {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.plan
	w.plan = nil
	if p != nil && p.fired != "" {
		return p
	}
	return nil
}

// crashClient kills c's process (its I/O is frozen already if a failpoint
// fired), optionally loses power, and brings it back.
func (w *world) crashClient(c *client, power bool, why string) {
	w.logf("%s crash at %s power=%v", c.name, why, power)
	w.dropPrefetches(c)
	c.fs.Freeze()
	c.rec.Crash()
	if c.db != nil {
		c.db.Close() // frozen: closing writes nothing
		c.db = nil
	}
	if power {
		w.losePower(c)
		if err := c.fs.PowerLoss(); err != nil {
			w.fail("%s: power loss: %v", c.name, err)
		}
	}
	c.fs.Thaw()
	w.restartRecorder(c.rec, power)
}

// armIOFault makes the n-th write, sync or rename of c's -info file (or
// its temporary file) fail, once, until disarmed.
func (w *world) armIOFault(c *client) {
	ops := []string{"write", "sync", "rename"}
	op, n := ops[w.frng.IntN(len(ops))], 1+w.frng.IntN(3)
	c.fs.SetFault(func(o, path string) error {
		if o != op || !strings.Contains(filepath.Base(path), "-info") || n == 0 {
			return nil
		}
		if n--; n > 0 {
			return nil
		}
		w.logf("%s: injected %s error on %s", c.name, op, filepath.Base(path))
		return fmt.Errorf("sim: injected %s error", op)
	})
}

// ensureOpen opens c if it is down, riding out crashes armed for its open.
func (w *world) ensureOpen(c *client) {
	for tries := 0; c.db == nil && tries < 5; tries++ {
		err := w.open(c)
		if p := w.takeCrash(); p != nil {
			w.crashClient(c, p.power, p.fired)
			continue
		}
		if err != nil {
			if isTransient(err) {
				w.logf("%s open: %v", c.name, err)
				continue
			}
			w.fail("%s: open: %v", c.name, err)
			return
		}
	}
	if c.db != nil {
		c.recover = false
		if c.cloneCheck {
			w.checkCopyState(context.Background(), c)
		}
	}
}

// isTransient: errors a faulty network or a down server explain.
func isTransient(err error) bool {
	s := err.Error()
	for _, sub := range []string{"sim: ", "status 503", "unexpected EOF", "truncated", "server down", "EOF"} {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// syncedSeq is the revision sequence that the client with this client
// id (its name, "-", ...) has synced, from its metadata; -1 if unknown.
func (w *world) syncedSeq(clientID string) int64 {
	name, _, _ := strings.Cut(clientID, "-")
	for _, c := range w.clients {
		if c.name != name {
			continue
		}
		meta, err := durableMeta(context.Background(), c)
		if err != nil {
			// A client that cannot be read now (it is being reopened):
			// its -info file, which may be older, so stricter.
			meta, err = metaactor.Load(fsx.OS, layout.For(c.path).Info)
		}
		if err != nil || meta.SyncedRevision == nil {
			return -1
		}
		return parseRevSeq(meta.SyncedRevision.Revision)
	}
	return -1
}

func parseRevSeq(rev string) int64 {
	i := strings.LastIndexByte(rev, '-')
	n, _ := strconv.ParseInt(rev[i+1:], 10, 64)
	return n
}
