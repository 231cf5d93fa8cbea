package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/server"
)

// worker runs one measured operation of our Go client (or the download
// floor, or a profiled server) in this process and prints its result as
// one JSON object on the last line of stdout. The parent process reads the
// process's peak RSS and CPU time from wait4.
func worker(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: bench worker MODE [flags]")
	}
	mode, args := args[0], args[1:]
	fs := flag.NewFlagSet("worker "+mode, flag.ContinueOnError)
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the operation to this file")
	memprofile := fs.String("memprofile", "", "write a heap profile (allocations of the whole run) to this file at the end")
	url := fs.String("url", "", "server URL of the database")
	path := fs.String("path", "", "local database path")
	zstd := fs.Bool("zstd", false, "Config.ZstdPages")
	out := fs.String("out", "", "download: the file to write")
	rows := fs.Int("rows", 0, "push: rows to insert; local: rows of the table")
	txs := fs.Int("txs", 1, "push: transactions the rows are split into")
	start := fs.Int("start", 1, "push/local: first id to insert")
	tag := fs.String("tag", "go", "push: the value of column who")
	table := fs.String("table", "", "the table")
	prefix := fs.Int64("prefix", 128<<10, "partial: prefix bytes")
	segment := fs.Int("segment", 128<<10, "partial: segment size")
	id := fs.Int("id", 1, "partial: the id to look up")
	variant := fs.String("variant", "facade", "local: facade or plain")
	lookups := fs.Int("lookups", 100000, "local: point lookups")
	goroutines := fs.Int("goroutines", 16, "local: concurrent readers")
	writes := fs.Int("writes", 1000, "local: single-row write transactions")
	clients := fs.Int("clients", 50, "load: clients")
	dur := fs.Duration("duration", 10*time.Second, "load: measuring window")
	longPoll := fs.Duration("long-poll", 5*time.Second, "load: long-poll timeout")
	dir := fs.String("dir", "", "load: directory for the replicas")
	var srvArgs []string
	if mode == "serve" {
		// serve takes syncdb serve's own flags after -cpuprofile.
		for i := 0; i < len(args); i++ {
			if args[i] == "-cpuprofile" && i+1 < len(args) {
				*cpuprofile = args[i+1]
				i++
				continue
			}
			srvArgs = append(srvArgs, args[i])
		}
	} else if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(*memprofile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	ctx := context.Background()
	var res any
	var err error
	switch mode {
	case "serve":
		return profiledServe(srvArgs)
	case "bootstrap":
		res, err = goBootstrap(ctx, *url, *path, *zstd, *table)
	case "download":
		res, err = download(*url, *out)
	case "open":
		res, err = goOpen(ctx, *url, *path)
	case "pull":
		res, err = goPull(ctx, *url, *path, *zstd)
	case "push":
		res, err = goPush(ctx, *url, *path, *table, *tag, *start, *rows, *txs)
	case "partial":
		res, err = goPartial(ctx, *url, *path, *table, *prefix, *segment, *id, *zstd)
	case "local":
		res, err = local(ctx, *variant, *path, *table, *rows, *start, *lookups, *goroutines, *writes)
	case "load":
		res, err = load(ctx, *url, *dir, *table, *start, *clients, *dur, *longPoll)
	case "loadwire":
		res, err = loadWire(ctx, *url, *table, *start, *clients, *dur, *longPoll)
	default:
		return fmt.Errorf("unknown worker mode %q", mode)
	}
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", b)
	return nil
}

type obj = map[string]any

func since(t time.Time) float64 { return time.Since(t).Seconds() }

// Markers around the measured operation, for the harness, which counts its
// requests on a shaped link (see wan.go): with SYNCDB_BENCH_MARKERS set,
// measureStart prints "measure-start" and waits for the harness's reply
// line, so that the harness has read its counters before the first request.
var markers = os.Getenv("SYNCDB_BENCH_MARKERS") != ""

func measureStart() {
	if markers {
		fmt.Println("measure-start")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
}

// measureMark ends the first part of an operation of two (partial: the
// open, then the lookup).
func measureMark() {
	if markers {
		fmt.Println("measure-mark")
	}
}

func measureEnd() {
	if markers {
		fmt.Println("measure-end")
	}
}

// goBootstrap: Open on a new path downloads the whole database.
func goBootstrap(ctx context.Context, url, path string, zstd bool, table string) (obj, error) {
	measureStart()
	t := time.Now()
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, ClientName: "bench", ZstdPages: zstd})
	if err != nil {
		return nil, err
	}
	secs := since(t)
	measureEnd()
	st, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	var maxID int64
	if err := db.QueryRow(ctx, "SELECT max(id) FROM "+table).Scan(&maxID); err != nil {
		return nil, err
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	return obj{"seconds": secs, "bytes": st.NetworkReceivedBytes, "max_id": maxID}, nil
}

// download is the floor: one HTTP GET of the database file from a static
// file server, written to a local file and fsynced (as a bootstrap must).
func download(url, out string) (obj, error) {
	measureStart()
	t := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, resp.Body, make([]byte, 256<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	secs := since(t)
	measureEnd()
	return obj{"seconds": secs, "bytes": n}, nil
}

// goOpen bootstraps a replica that a later worker uses (not measured).
func goOpen(ctx context.Context, url, path string) (obj, error) {
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, ClientName: "bench"})
	if err != nil {
		return nil, err
	}
	return obj{}, db.Close()
}

// goPull: open an existing replica (no network) and pull once, from url
// if set (the same database by another address) instead of the saved one.
func goPull(ctx context.Context, url, path string, zstd bool) (obj, error) {
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, ZstdPages: zstd})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	before, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	measureStart()
	t := time.Now()
	changed, err := db.Pull(ctx)
	if err != nil {
		return nil, err
	}
	secs := since(t)
	measureEnd()
	after, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	if !changed {
		return nil, errors.New("pull brought no change")
	}
	return obj{"seconds": secs, "bytes": after.NetworkReceivedBytes - before.NetworkReceivedBytes, "changed": changed}, db.Close()
}

// pushRow is the row both clients insert: the same sizes and types.
func pushRow(tag string, id int) (int, string, string) {
	return id, tag, fmt.Sprintf("row %010d %s", id, strings.Repeat("abcdefghij", 9))
}

// goPush: bootstrap (not measured), insert rows locally in txs
// transactions, then push them.
func goPush(ctx context.Context, url, path, table, tag string, start, rows, txs int) (obj, error) {
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, ClientName: "bench"})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ins := fmt.Sprintf("INSERT INTO %s(id, who, v) VALUES(?, ?, ?)", table)
	t := time.Now()
	per := rows / txs
	for i := 0; i < txs; i++ {
		err := db.Tx(ctx, func(tx *syncdb.Tx) error {
			for j := 0; j < per; j++ {
				id, who, v := pushRow(tag, start+i*per+j)
				if _, err := tx.Exec(ctx, ins, id, who, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	local := since(t)
	before, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	measureStart()
	t = time.Now()
	if err := db.Push(ctx); err != nil {
		return nil, err
	}
	secs := since(t)
	measureEnd()
	after, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return obj{"seconds": secs, "local_seconds": local, "bytes": after.NetworkSentBytes - before.NetworkSentBytes,
		"changes": before.CDCOperations}, db.Close()
}

// goPartial: a partial replica's cold start (prefix bootstrap) and one
// point lookup.
func goPartial(ctx context.Context, url, path, table string, prefix int64, segment, id int, zstd bool) (obj, error) {
	measureStart()
	t := time.Now()
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, ClientName: "bench", ZstdPages: zstd,
		Partial: &syncdb.PartialSync{PrefixBytes: prefix, SegmentSize: segment}})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	open := since(t)
	measureMark()
	st, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	t2 := time.Now()
	var k string
	if err := db.QueryRow(ctx, "SELECT k FROM "+table+" WHERE id = ?", id).Scan(&k); err != nil {
		return nil, err
	}
	lookup := since(t2)
	measureEnd()
	if want := fmt.Sprintf("key-%010d", id); k != want {
		return nil, fmt.Errorf("lookup of id %d: %q, want %q", id, k, want)
	}
	st2, err := db.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return obj{"seconds": open + lookup, "open_seconds": open, "lookup_seconds": lookup,
		"bytes": st2.NetworkReceivedBytes, "open_bytes": st.NetworkReceivedBytes}, db.Close()
}

// local measures local use of one database file: point lookups by
// goroutines readers, then single-row write transactions, either through
// our facade (variant "facade": an existing replica) or through plain
// modernc database/sql (variant "plain": an ordinary SQLite file with the
// same content and the facade's settings: WAL, synchronous=FULL, a read
// pool of the same size).
func local(ctx context.Context, variant, path, table string, rows, start, lookups, goroutines, writes int) (obj, error) {
	var (
		query func(id int) (string, error)
		exec  func(id int, v string) error
		done  func() error
	)
	switch variant {
	case "facade":
		db, err := syncdb.Open(ctx, syncdb.Config{Path: path})
		if err != nil {
			return nil, err
		}
		query = func(id int) (string, error) {
			var k string
			err := db.QueryRow(ctx, "SELECT k FROM "+table+" WHERE id = ?", id).Scan(&k)
			return k, err
		}
		exec = func(id int, v string) error {
			_, err := db.Exec(ctx, "INSERT INTO "+table+"(id, k, v) VALUES(?, ?, ?)", id, fmt.Sprintf("key-%010d", id), v)
			return err
		}
		done = db.Close
	case "plain":
		// The facade's writer and reader settings (dbactor.WriterDSN,
		// ReaderDSN), minus what is specific to syncdb (its own checkpoints).
		w, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)")
		if err != nil {
			return nil, err
		}
		w.SetMaxOpenConns(1)
		r, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&_pragma=busy_timeout(10000)")
		if err != nil {
			return nil, err
		}
		n := max(4, runtime.GOMAXPROCS(0)) // Config.ReadConns' default
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		query = func(id int) (string, error) {
			var k string
			err := r.QueryRowContext(ctx, "SELECT k FROM "+table+" WHERE id = ?", id).Scan(&k)
			return k, err
		}
		exec = func(id int, v string) error {
			_, err := w.ExecContext(ctx, "INSERT INTO "+table+"(id, k, v) VALUES(?, ?, ?)", id, fmt.Sprintf("key-%010d", id), v)
			return err
		}
		done = func() error { return errors.Join(r.Close(), w.Close()) }
	default:
		return nil, fmt.Errorf("unknown variant %q", variant)
	}
	defer func() { done() }()

	// Warm up: the same pages for both (the first lookups open connections
	// and read the schema).
	for i := 0; i < 1000; i++ {
		if _, err := query(1 + i*(rows/1000)); err != nil {
			return nil, err
		}
	}
	var failed atomic.Pointer[error]
	per := lookups / goroutines
	t := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 42))
			for i := 0; i < per; i++ {
				id := 1 + rnd.IntN(rows)
				k, err := query(id)
				if err == nil && k != fmt.Sprintf("key-%010d", id) {
					err = fmt.Errorf("id %d: got %q", id, k)
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	lookupSecs := since(t)
	if e := failed.Load(); e != nil {
		return nil, *e
	}
	v := strings.Repeat("0123456789abcdef", 25) // 400 characters, like the table's rows
	lat := make([]float64, 0, writes)
	t = time.Now()
	for i := 0; i < writes; i++ {
		t1 := time.Now()
		if err := exec(start+i, v); err != nil {
			return nil, err
		}
		lat = append(lat, since(t1))
	}
	writeSecs := since(t)
	if err := done(); err != nil {
		return nil, err
	}
	done = func() error { return nil }
	slices.Sort(lat)
	return obj{
		"lookups_per_sec": float64(per*goroutines) / lookupSecs,
		"lookup_us":       lookupSecs / float64(per*goroutines) * 1e6 * float64(goroutines),
		"writes_per_sec":  float64(writes) / writeSecs,
		"write_us":        writeSecs / float64(writes) * 1e6,
		"write_p50_us":    percentile(lat, 0.50) * 1e6,
		"write_p99_us":    percentile(lat, 0.99) * 1e6,
	}, nil
}

// load runs clients replicas of one database, each looping: insert a row
// (ids from start + client*10^7), push, pull with a long poll. It prints "measure-start" when every
// replica is bootstrapped and "measure-end" when the window closes, so that
// the parent can read the server's CPU time around the window.
func load(ctx context.Context, url, dir, table string, start, clients int, dur, longPoll time.Duration) (obj, error) {
	dbs := make([]*syncdb.DB, clients)
	var g errGroup
	for i := range dbs {
		g.Go(func() error {
			db, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, fmt.Sprintf("c%03d.db", i)), URL: url,
				ClientName: fmt.Sprintf("load%d", i), LongPollTimeout: longPoll})
			dbs[i] = db
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	defer func() {
		for _, db := range dbs {
			if db != nil {
				db.Close()
			}
		}
	}()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "measure-start")
	out.Flush()
	var (
		mu               sync.Mutex
		pushLat, pullLat []float64
		pushes, changed  int
	)
	cpu0 := selfCPU()
	deadline := time.Now().Add(dur)
	t := time.Now()
	for i, db := range dbs {
		g.Go(func() error {
			var myPush, myPull []float64
			var n, ch int
			for seq := 0; time.Now().Before(deadline); seq++ {
				if _, err := db.Exec(ctx, "INSERT INTO "+table+"(id, who, v) VALUES(?, ?, ?)", start+i*10_000_000+seq, fmt.Sprintf("load%d", i), "payload of a typical small row, about one hundred bytes long, sent by one of the clients"); err != nil {
					return err
				}
				t1 := time.Now()
				if err := db.Push(ctx); err != nil {
					return fmt.Errorf("client %d push: %w", i, err)
				}
				myPush = append(myPush, since(t1))
				n++
				t2 := time.Now()
				c, err := db.Pull(ctx)
				if err != nil {
					return fmt.Errorf("client %d pull: %w", i, err)
				}
				myPull = append(myPull, since(t2))
				if c {
					ch++
				}
			}
			mu.Lock()
			pushLat = append(pushLat, myPush...)
			pullLat = append(pullLat, myPull...)
			pushes += n
			changed += ch
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	elapsed := since(t)
	cpu := selfCPU() - cpu0
	fmt.Fprintln(out, "measure-end")
	out.Flush()
	if err != nil {
		return nil, err
	}
	slices.Sort(pushLat)
	slices.Sort(pullLat)
	return obj{
		"pushes": pushes, "seconds": elapsed, "pushes_per_sec": float64(pushes) / elapsed,
		"push_p50": percentile(pushLat, 0.5), "push_p99": percentile(pushLat, 0.99),
		"pull_p50": percentile(pullLat, 0.5), "pull_p99": percentile(pullLat, 0.99),
		"pulls": len(pullLat), "pulls_changed": changed, "cpu_seconds": cpu,
	}, nil
}

// selfCPU is this process's user + system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// errGroup: run functions, keep the first error.
type errGroup struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *errGroup) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	}()
}

func (g *errGroup) Wait() error {
	g.wg.Wait()
	err := g.err
	g.err, g.once = nil, sync.Once{}
	return err
}

// profiledServe is `syncdb serve` (cmd/syncdb/serve.go's settings: the
// server package served by server.Serve on the address, SIGTERM drains) in
// a bench worker, so that -profile can take the server's CPU profile.
func profiledServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "")
	data := fs.String("data", "", "")
	fs.String("log-level", "warn", "")
	var dbs listFlag
	fs.Var(&dbs, "db", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(server.Config{DataDir: *data, Databases: dbs, HistoryRetention: 7 * 24 * time.Hour, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return err
	}
	fmt.Printf("syncdb server listening on http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return srv.Serve(ctx, ln)
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
