package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The generated databases, by scenario.
func (e *benchEnv) bigSpec() tableSpec {
	return tableSpec{table: "big", bytes: int64(e.o.bigMiB) << 20, vBytes: 400}
}
func (e *benchEnv) incSpec() tableSpec {
	return tableSpec{table: "inc", rows: e.o.pullBaseRows, vBytes: 100}
}
func (e *benchEnv) localSpec() tableSpec {
	return tableSpec{table: "local", rows: e.o.localRows, vBytes: 200}
}

// sharedServer starts (once) the server that every client comparison uses,
// with the generated databases the enabled scenarios need in place.
func (e *benchEnv) sharedServer() (*serverProc, error) {
	if e.srv != nil {
		return e.srv, nil
	}
	data := filepath.Join(e.run, "server-data")
	var dbs []string
	place := func(name string, spec tableSpec) error {
		src, _, err := e.cachedDB(spec)
		if err != nil {
			return err
		}
		dbs = append(dbs, name)
		return placeDB(data, name, src)
	}
	if e.o.enabled("bootstrap") || e.o.enabled("partial") || e.o.enabled("wan") {
		if err := place("big", e.bigSpec()); err != nil {
			return nil, err
		}
	}
	if e.o.enabled("pull") || e.o.enabled("wan") {
		if err := place("inc", e.incSpec()); err != nil {
			return nil, err
		}
	}
	if e.o.enabled("local") {
		if err := place("local", e.localSpec()); err != nil {
			return nil, err
		}
	}
	t := time.Now()
	srv, err := e.startServer(data, dbs...)
	if err != nil {
		return nil, err
	}
	logf("server %s up in %.1fs (pid %d; adopting %v builds their page histories)", srv.URL, since(t), srv.pid(), dbs)
	e.srv = srv
	return srv, nil
}

func (e *benchEnv) dir(name string) (string, error) {
	d := filepath.Join(e.run, name)
	return d, os.MkdirAll(d, 0o755)
}

// removeReplica deletes a replica's files (path, path-wal, path-info, ...).
func removeReplica(path string) {
	matches, _ := filepath.Glob(path + "*")
	for _, m := range matches {
		os.RemoveAll(m)
	}
}

// side is one contender of a comparison: it runs once and returns its
// process.
type side struct {
	name string // key in the report: go, turso, floor, ...
	run  func(rep int) (*child, error)
}

// alternate runs the sides in turn, reps times (A B A B ...), recording
// each process's numbers under group/side/... and the server's CPU time
// spent during it.
func (e *benchEnv) alternate(r *report, group string, reps int, sides []side, record func(rep int, s side, c *child)) error {
	for rep := 0; rep < reps; rep++ {
		for _, s := range sides {
			// Each side starts with no dirty pages left by the one before,
			// whose writeback would otherwise slow its fsyncs.
			syscall.Sync()
			var cpu0 float64
			if e.srv != nil {
				cpu0, _ = procCPU(e.srv.pid())
			}
			c, err := s.run(rep)
			if err != nil {
				return fmt.Errorf("%s, %s, repetition %d: %w", group, s.name, rep+1, err)
			}
			key := group + "/" + s.name
			if e.srv != nil && group != "local" {
				cpu1, _ := procCPU(e.srv.pid())
				r.add(key+"/server_cpu", cpu1-cpu0)
			}
			if _, ok := c.result["seconds"]; ok {
				r.add(key+"/seconds", c.num("seconds"))
			}
			r.add(key+"/maxrss", float64(c.maxRSSKB)*1024)
			r.add(key+"/cpu", c.cpu)
			r.add(key+"/wall", c.wall)
			if _, ok := c.result["bytes"]; ok {
				r.add(key+"/bytes", c.num("bytes"))
			}
			if c.link != nil {
				r.add(key+"/requests", float64(c.link.requests))
				r.add(key+"/conns", float64(c.link.conns))
				if first, second := c.linkParts[0], c.linkParts[1]; first != nil {
					r.add(key+"/open_requests", float64(first.requests))
					r.add(key+"/lookup_requests", float64(second.requests))
				}
			}
			if record != nil {
				record(rep, s, c)
			}
			logf("  %s %s #%d: %.3fs, peak RSS %.1f MiB", group, s.name, rep+1, c.num("seconds"), float64(c.maxRSSKB)/1024)
		}
	}
	return nil
}

// 1. Bootstrap of the big database: our Go client (raw pages, and zstd
// pages) vs Turso's client vs a plain HTTP download of the same file.
func benchBootstrap(e *benchEnv, r *report) error {
	srv, err := e.sharedServer()
	if err != nil {
		return err
	}
	src, rows, err := e.cachedDB(e.bigSpec())
	if err != nil {
		return err
	}
	r.note("bootstrap", fmt.Sprintf("database `big`: %d rows, %s (%d pages)", rows, mib(fileSize(src)), fileSize(src)/4096))
	url := srv.URL + "/db/big"
	// The floor: the same bytes from a static file server on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, src) })}
	go fsrv.Serve(ln)
	defer fsrv.Close()
	dir, err := e.dir("bootstrap")
	if err != nil {
		return err
	}
	// The client-only floor of the protocol: the server's own bootstrap
	// response, recorded once and replayed from a file by a handler that
	// does nothing else. Clients bootstrapping from it pay only their own
	// costs.
	replayFile := filepath.Join(dir, "replay.bin")
	if err := recordPull(url, replayFile, false); err != nil {
		return err
	}
	// The server caches a revision's bootstrap when it is asked for it a
	// second time, raw and zstd apart; ask now, so that the rows below
	// measure the cached case (go_cold and go_zstd_cold measure the other
	// one).
	if err := warmSnapshots(url, 1, 2); err != nil {
		return err
	}
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if !strings.HasSuffix(r.URL.Path, "/pull-updates") || r.Method != http.MethodPost {
			http.Error(w, "the replay server answers only POST /pull-updates", http.StatusNotFound)
			return
		}
		f, err := os.Open(replayFile)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/protobuf")
		w.Header().Set("Content-Length", strconv.FormatInt(fileSize(replayFile), 10))
		io.Copy(w, f) // sendfile
	})}
	go rsrv.Serve(rln)
	defer rsrv.Close()
	replayURL := "http://" + rln.Addr().String()
	ctx := context.Background()
	check := func(c *child) error {
		if got := int(c.num("max_id")); got != rows {
			return fmt.Errorf("the bootstrapped replica's max(id) is %d, want %d", got, rows)
		}
		return nil
	}
	// The new revision comes from rotating one row's text by one
	// character (a write of the same bytes would change no page).
	cold := func(zstd bool) (*child, error) {
		if err := remoteExec(url, stmt{sql: "UPDATE big SET v = substr(v, 2) || substr(v, 1, 1) WHERE id = 1"}); err != nil {
			return nil, err
		}
		hits, err := metricValue(srv.URL, "syncdb_snapshot_cache_hits_total")
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, "gocold.db")
		defer removeReplica(p)
		args := []string{"-url", url, "-path", p, "-table", "big"}
		if zstd {
			args = append(args, "-zstd")
		}
		c, err := e.goWorker(ctx, "bootstrap", args...)
		if err == nil {
			err = check(c)
		}
		if after, merr := metricValue(srv.URL, "syncdb_snapshot_cache_hits_total"); err == nil && (merr != nil || after != hits) {
			err = fmt.Errorf("the cold bootstrap was served from the snapshot cache (hits %v -> %v, %v)", hits, after, merr)
		}
		if err == nil {
			raw, z := 2, 1 // the measured one was the first of its encoding
			if !zstd {
				raw, z = 1, 2
			}
			err = warmSnapshots(url, raw, z)
		}
		return c, err
	}
	sides := []side{
		{"go", func(rep int) (*child, error) {
			p := filepath.Join(dir, "go.db")
			defer removeReplica(p)
			c, err := e.goWorker(ctx, "bootstrap", "-url", url, "-path", p, "-table", "big")
			if err == nil {
				err = check(c)
			}
			return c, err
		}},
		{"turso", func(rep int) (*child, error) {
			p := filepath.Join(dir, "turso.db")
			defer removeReplica(p)
			c, err := e.nodeClient(ctx, "bootstrap", "--url", url, "--path", p, "--table", "big")
			if err == nil {
				err = check(c)
			}
			return c, err
		}},
		{"floor", func(rep int) (*child, error) {
			p := filepath.Join(dir, "floor.db")
			defer os.Remove(p)
			return e.goWorker(ctx, "download", "-url", "http://"+ln.Addr().String()+"/big.sqlite", "-out", p)
		}},
		{"go_replay", func(rep int) (*child, error) {
			p := filepath.Join(dir, "goreplay.db")
			defer removeReplica(p)
			c, err := e.goWorker(ctx, "bootstrap", "-url", replayURL, "-path", p, "-table", "big")
			if err == nil {
				err = check(c)
			}
			return c, err
		}},
		{"turso_replay", func(rep int) (*child, error) {
			p := filepath.Join(dir, "tursoreplay.db")
			defer removeReplica(p)
			c, err := e.nodeClient(ctx, "bootstrap", "--url", replayURL, "--path", p, "--table", "big")
			if err == nil {
				err = check(c)
			}
			return c, err
		}},
		{"go_zstd", func(rep int) (*child, error) {
			p := filepath.Join(dir, "gozstd.db")
			defer removeReplica(p)
			c, err := e.goWorker(ctx, "bootstrap", "-url", url, "-path", p, "-table", "big", "-zstd")
			if err == nil {
				err = check(c)
			}
			return c, err
		}},
		// The first bootstrap of a new revision: the server has no cached
		// snapshot of it and streams it from the database (raw, or
		// compressing as it goes). Then, not measured, more bootstraps have
		// the server cache it for the other sides.
		{"go_cold", func(rep int) (*child, error) { return cold(false) }},
		{"go_zstd_cold", func(rep int) (*child, error) { return cold(true) }},
	}
	return e.alternate(r, "bootstrap", e.o.reps, sides, nil)
}

// 2. Incremental pull: the server changes pullRows rows (one UPDATE of a
// random range), then each client pulls once. Both replicas were
// bootstrapped before and pull the same revisions.
func benchPull(e *benchEnv, r *report) error {
	srv, err := e.sharedServer()
	if err != nil {
		return err
	}
	_, rows, err := e.cachedDB(e.incSpec())
	if err != nil {
		return err
	}
	url := srv.URL + "/db/inc"
	dir, err := e.dir("pull")
	if err != nil {
		return err
	}
	ctx := context.Background()
	goPath, tursoPath := filepath.Join(dir, "go.db"), filepath.Join(dir, "turso.db")
	if _, err := e.goWorker(ctx, "open", "-url", url, "-path", goPath); err != nil {
		return err
	}
	if _, err := e.nodeClient(ctx, "bootstrap", "--url", url, "--path", tursoPath, "--table", "inc"); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(2, 2))
	change := func(n int) (int, error) {
		lo := 1 + rnd.IntN(rows-n+1)
		return lo, remoteExec(url, stmt{"UPDATE inc SET v = hex(randomblob(100)) WHERE id BETWEEN ? AND ?", []any{lo, lo + n - 1}})
	}
	pullGo := func() (*child, error) { return e.goWorker(ctx, "pull", "-path", goPath) }
	pullTurso := func() (*child, error) {
		return e.nodeClient(ctx, "pull", "--url", url, "--path", tursoPath, "--table", "inc")
	}
	// A warm-up round (not recorded): each replica's first pull after its
	// bootstrap.
	if _, err := change(1); err != nil {
		return err
	}
	if _, err := pullGo(); err != nil {
		return err
	}
	if _, err := pullTurso(); err != nil {
		return err
	}
	r.note("pull", fmt.Sprintf("database `inc`: %d rows, %s; each repetition updates %d consecutive rows (a random range) with one UPDATE on the server, then each client pulls", rows, mib(fileSize(filepath.Join(e.run, "server-data", "inc", "db.sqlite"))), e.o.pullRows))
	for rep := 0; rep < e.o.reps; rep++ {
		if _, err := change(e.o.pullRows); err != nil {
			return err
		}
		if err := e.alternate(r, "pull", 1, []side{
			{"go", func(int) (*child, error) { return pullGo() }},
			{"turso", func(int) (*child, error) { return pullTurso() }},
		}, nil); err != nil {
			return err
		}
	}
	return nil
}

// 3. Push of pushRows local inserts, in one transaction and in pushTxs
// transactions: each side bootstraps a fresh replica (not measured),
// inserts (measured as local time), then pushes (measured).
func benchPush(e *benchEnv, r *report) error {
	srv, err := e.sharedServer()
	if err != nil {
		return err
	}
	dir, err := e.dir("push")
	if err != nil {
		return err
	}
	ctx := context.Background()
	for _, mode := range []struct {
		group string
		txs   int
	}{{"push1", 1}, {"pushN", e.o.pushTxs}} {
		url := srv.URL + "/db/" + mode.group
		if err := remoteExec(url, stmt{sql: "CREATE TABLE p(id INTEGER PRIMARY KEY, who TEXT, v TEXT)"}); err != nil {
			return err
		}
		n := e.o.pushRows
		args := func(rep, sideNo int, tag string) []string {
			start := 1 + (rep*2+sideNo)*n
			return []string{"-url", url, "-table", "p", "-tag", tag, "-start", strconv.Itoa(start),
				"-rows", strconv.Itoa(n), "-txs", strconv.Itoa(mode.txs)}
		}
		sides := []side{
			{"go", func(rep int) (*child, error) {
				p := filepath.Join(dir, fmt.Sprintf("%s-go-%d.db", mode.group, rep))
				defer removeReplica(p)
				return e.goWorker(ctx, "push", append(args(rep, 0, "go"), "-path", p)...)
			}},
			{"turso", func(rep int) (*child, error) {
				p := filepath.Join(dir, fmt.Sprintf("%s-turso-%d.db", mode.group, rep))
				defer removeReplica(p)
				return e.nodeClient(ctx, "push", dashdash(append(args(rep, 1, "turso"), "-path", p))...)
			}},
		}
		if err := e.alternate(r, mode.group, e.o.reps, sides, func(rep int, s side, c *child) {
			r.add(mode.group+"/"+s.name+"/local_seconds", c.num("local_seconds"))
		}); err != nil {
			return err
		}
	}
	r.note("push", fmt.Sprintf("%d rows of about 120 bytes (id, a short tag, a 105-character text) into table p; the many-transactions push splits them into %d transactions of %d rows", e.o.pushRows, e.o.pushTxs, e.o.pushRows/e.o.pushTxs))
	return nil
}

// dashdash turns Go-style -flag arguments into node-style --flag.
func dashdash(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

// 4. Partial-sync cold start: bootstrap the prefix, then one point lookup
// by primary key (the same random id for both sides of a repetition).
func benchPartial(e *benchEnv, r *report) error {
	srv, err := e.sharedServer()
	if err != nil {
		return err
	}
	_, rows, err := e.cachedDB(e.bigSpec())
	if err != nil {
		return err
	}
	url := srv.URL + "/db/big"
	dir, err := e.dir("partial")
	if err != nil {
		return err
	}
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(4, 4))
	ids := make([]int, e.o.reps)
	for i := range ids {
		ids[i] = 1 + rnd.IntN(rows)
	}
	prefix, segment := strconv.Itoa(e.o.prefixKiB<<10), strconv.Itoa(e.o.segmentKiB<<10)
	sides := []side{
		{"go", func(rep int) (*child, error) {
			p := filepath.Join(dir, "go.db")
			defer removeReplica(p)
			return e.goWorker(ctx, "partial", "-url", url, "-path", p, "-table", "big", "-prefix", prefix, "-segment", segment, "-id", strconv.Itoa(ids[rep]))
		}},
		{"turso", func(rep int) (*child, error) {
			p := filepath.Join(dir, "turso.db")
			defer removeReplica(p)
			return e.nodeClient(ctx, "partial", "--url", url, "--path", p, "--table", "big", "--prefix", prefix, "--segment", segment, "--id", strconv.Itoa(ids[rep]))
		}},
	}
	r.note("partial", fmt.Sprintf("database `big` (as in the bootstrap); prefix %d KiB, segment size %d KiB, no prefetch, for both clients; lookup `SELECT k FROM big WHERE id = ?` of a random id", e.o.prefixKiB, e.o.segmentKiB))
	return e.alternate(r, "partial", e.o.reps, sides, func(rep int, s side, c *child) {
		for _, k := range []string{"open_seconds", "lookup_seconds", "open_bytes"} {
			r.add("partial/"+s.name+"/"+k, c.num(k))
		}
	})
}

// 5. Local use: point lookups by 16 goroutines and single-row write
// transactions, through our facade (a bootstrapped replica) and through
// plain modernc database/sql on a copy of the same database file.
func benchLocal(e *benchEnv, r *report) error {
	srv, err := e.sharedServer()
	if err != nil {
		return err
	}
	src, rows, err := e.cachedDB(e.localSpec())
	if err != nil {
		return err
	}
	dir, err := e.dir("local")
	if err != nil {
		return err
	}
	ctx := context.Background()
	facade, plain := filepath.Join(dir, "facade.db"), filepath.Join(dir, "plain.db")
	if _, err := e.goWorker(ctx, "open", "-url", srv.URL+"/db/local", "-path", facade); err != nil {
		return err
	}
	if err := copyFile(plain, src); err != nil {
		return err
	}
	args := func(rep int) []string {
		return []string{"-table", "local", "-rows", strconv.Itoa(rows), "-start", strconv.Itoa(rows + 1 + rep*e.o.writes),
			"-lookups", strconv.Itoa(e.o.lookups), "-goroutines", strconv.Itoa(e.o.goroutines), "-writes", strconv.Itoa(e.o.writes)}
	}
	sides := []side{
		{"facade", func(rep int) (*child, error) {
			return e.goWorker(ctx, "local", append(args(rep), "-variant", "facade", "-path", facade)...)
		}},
		{"plain", func(rep int) (*child, error) {
			return e.goWorker(ctx, "local", append(args(rep), "-variant", "plain", "-path", plain)...)
		}},
	}
	r.note("local", fmt.Sprintf("database `local`: %d rows, %s; %d lookups `SELECT k FROM local WHERE id = ?` of random ids by %d goroutines, then %d single-row INSERTs, one transaction each", rows, mib(fileSize(src)), e.o.lookups, e.o.goroutines, e.o.writes))
	return e.alternate(r, "local", e.o.reps, sides, func(rep int, s side, c *child) {
		for _, k := range []string{"lookups_per_sec", "writes_per_sec", "write_p50_us", "write_p99_us"} {
			r.add("local/"+s.name+"/"+k, c.num(k))
		}
	})
}

// 6. Server load: a fresh server; clients replicas each looping insert,
// push, long-poll pull, for the measuring window, alternating two kinds of
// clients: our Go client (variant "go": a real replica each, applying
// pulls durably) and protocol-level clients (variant "wire": the same
// requests, nothing kept), which show what the server itself sustains. The
// server's RSS is sampled every 100 ms and its CPU time read around the
// window.
func benchLoad(e *benchEnv, r *report) error {
	// The comparisons' server is done: stop it so that it does not share
	// the machine with this one.
	if err := e.stopServer(); err != nil {
		return err
	}
	data := filepath.Join(e.run, "load-data")
	srv, err := e.startServer(data, "load")
	if err != nil {
		return err
	}
	defer srv.stop()
	url := srv.URL + "/db/load"
	if err := remoteExec(url, stmt{sql: "CREATE TABLE l(id INTEGER PRIMARY KEY, who TEXT, v TEXT)"},
		stmt{sql: "CREATE TABLE IF NOT EXISTS turso_sync_last_change_id (client_id TEXT PRIMARY KEY, pull_gen INTEGER, change_id INTEGER)"}); err != nil {
		return err
	}
	ctx := context.Background()
	n := 0
	for rep := 0; rep < e.o.reps; rep++ {
		for _, variant := range []string{"go", "wire"} {
			n++
			dir, err := e.dir(fmt.Sprintf("load-%d", n))
			if err != nil {
				return err
			}
			args := []string{"worker", "load", "-url", url, "-dir", dir, "-table", "l", "-start", strconv.Itoa(n * 1_000_000),
				"-clients", strconv.Itoa(e.o.clients), "-duration", e.o.loadTime.String(), "-long-poll", e.o.longPoll.String()}
			if variant == "wire" {
				args[1] = "loadwire"
			}
			if e.o.profile != "" {
				prof := filepath.Join(e.o.profile, fmt.Sprintf("%s-%d.pprof", args[1], time.Now().UnixNano()))
				args = append(args[:2], append([]string{"-cpuprofile", prof}, args[2:]...)...)
			}
			if err := e.loadOnce(ctx, r, srv, "load/"+variant, args); err != nil {
				return fmt.Errorf("%s clients, repetition %d: %w", variant, rep+1, err)
			}
			if !e.o.keep {
				os.RemoveAll(dir)
			}
		}
	}
	r.note("load", fmt.Sprintf("a separate fresh `syncdb serve`; %d clients loop for %s: insert one row, push it, pull with a %s long poll. "+
		"Go clients: one process, a real replica each. Protocol-level clients: one process, the same requests (high-water read, one transaction with the row and the high-water upsert, long-poll /pull-updates read to the end), no replica", e.o.clients, e.o.loadTime, e.o.longPoll))
	return srv.stop()
}

// loadOnce runs one load worker and records its numbers and the server's
// under key.
func (e *benchEnv) loadOnce(ctx context.Context, r *report, srv *serverProc, key string, args []string) error {
	var (
		mu         sync.Mutex
		cpu0, cpu1 float64
		maxRSS     int64
		stop       = make(chan struct{})
		sampled    = make(chan struct{})
	)
	sample := func() {
		defer close(sampled)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if rss, _, err := procStatus(srv.pid()); err == nil {
				mu.Lock()
				maxRSS = max(maxRSS, rss)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}
	started := false
	c, err := runChild(ctx, func(line string) {
		switch line {
		case "measure-start":
			cpu0, _ = procCPU(srv.pid())
			started = true
			go sample()
		case "measure-end":
			cpu1, _ = procCPU(srv.pid())
			close(stop)
		}
	}, e.self, args...)
	if started {
		<-sampled
	}
	if err != nil {
		return err
	}
	if !started {
		return fmt.Errorf("the load worker did not report its measuring window")
	}
	pushes := c.num("pushes")
	rssNow, hwm, _ := procStatus(srv.pid())
	for _, k := range []string{"pushes_per_sec", "pull_p50", "pull_p99", "push_p50", "push_p99"} {
		r.add(key+"/"+k, c.num(k))
	}
	r.add(key+"/server_rss_max", float64(maxRSS)*1024)
	r.add(key+"/server_rss_end", float64(rssNow)*1024)
	r.add(key+"/server_hwm", float64(hwm)*1024)
	r.add(key+"/server_cpu_per_push", (cpu1-cpu0)/pushes)
	r.add(key+"/server_cpu_util", (cpu1-cpu0)/c.num("seconds"))
	r.add(key+"/client_cpu_util", c.num("cpu_seconds")/c.num("seconds"))
	r.add(key+"/client_maxrss", float64(c.maxRSSKB)*1024)
	logf("  %s: %.0f pushes/s, pull p50 %.1f ms p99 %.1f ms, server RSS max %.1f MiB, %.2f ms server CPU/push, server CPU %.0f%%, clients' CPU %.0f%%",
		key, c.num("pushes_per_sec"), c.num("pull_p50")*1e3, c.num("pull_p99")*1e3, float64(maxRSS)/1024, (cpu1-cpu0)/pushes*1e3,
		(cpu1-cpu0)/c.num("seconds")*100, c.num("cpu_seconds")/c.num("seconds")*100)
	return nil
}

// warmSnapshots bootstraps the database raw times and zstd times, not
// measured: the second bootstrap of a revision in an encoding has the
// server cache it.
func warmSnapshots(url string, raw, zstd int) error {
	for i := 0; i < raw+zstd; i++ {
		if err := recordPull(url, os.DevNull, i >= raw); err != nil {
			return err
		}
	}
	return nil
}

// metricValue reads one unlabelled metric from the server's /metrics.
func metricValue(base, name string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("the server exports no metric %s", name)
}

// With zstd it asks as our client does with ZstdPages (zstd pages, and a
// zstd stream) and saves the body as it came.
// recordPull saves the body of a full-snapshot /pull-updates response (a
// request for the whole database at the latest revision).
func recordPull(url, path string, zstd bool) error {
	var body io.Reader
	accept := "application/protobuf"
	if zstd {
		// PullUpdatesReqProtoBody{encoding: ZSTD}: field 1, varint 1.
		body, accept = bytes.NewReader([]byte{0x08, 0x01}), "application/protobuf, zstd"
	}
	req, err := http.NewRequest(http.MethodPost, url+"/pull-updates", body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/protobuf")
	req.Header.Set("Accept-Encoding", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("record a bootstrap response: %s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
