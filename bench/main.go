// Command bench runs syncdb's benchmarks side by side and prints a markdown
// table of medians, min–max and A/B ratios:
//
//	go run ./bench            # the full run (see bench/RESULTS.md)
//	go run ./bench -quick     # a smoke run with small sizes, one repetition
//
// Every comparison runs against one real `syncdb serve` process (built once
// from ./cmd/syncdb) and the same data, alternating A B A B. Every client
// runs in its own process: our Go client is this program re-executed in
// worker mode (`bench worker ...`), Turso's client is node running
// bench/turso/*.mjs with @tursodatabase/sync from interop/node_modules. So
// each measurement's peak RSS is one process's, read from wait4's rusage
// (the same number as VmHWM in /proc/PID/status).
//
// See bench/README.md for the flags and what each row measures.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// options are the command-line flags of a run.
type options struct {
	quick bool
	reps  int

	bigMiB       int // bootstrap database size
	pullRows     int // rows changed before each incremental pull
	pullBaseRows int
	pushRows     int // rows inserted before each push
	pushTxs      int // transactions of the "many transactions" push
	prefixKiB    int // partial-sync prefix
	segmentKiB   int // partial-sync segment size
	lookups      int // local point lookups per run
	goroutines   int // concurrent readers of the local-use row
	writes       int // local single-row write transactions per run
	localRows    int // rows of the local-use database
	clients      int // server-load clients
	loadTime     time.Duration
	longPoll     time.Duration

	links        []linkProfile // -links
	slowBootReps int           // bootstrap repetitions on links below 20 Mbit/s

	only    string
	work    string
	node    string
	out     string
	profile string
	keep    bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := worker(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.BoolVar(&o.quick, "quick", false, "smoke run: small sizes, 1 repetition, short load test (flags given explicitly still win)")
	flag.IntVar(&o.reps, "reps", 3, "repetitions of each side of each comparison")
	flag.IntVar(&o.bigMiB, "big-mib", 256, "size of the bootstrap database in MiB")
	flag.IntVar(&o.pullRows, "pull-rows", 10000, "rows changed on the server before each incremental pull")
	flag.IntVar(&o.pullBaseRows, "pull-base-rows", 200000, "rows of the incremental-pull database")
	flag.IntVar(&o.pushRows, "push-rows", 10000, "local inserts per push")
	flag.IntVar(&o.pushTxs, "push-txs", 1000, "transactions the inserts are split into for the 'many transactions' push")
	flag.IntVar(&o.prefixKiB, "prefix-kib", 128, "partial-sync bootstrap prefix in KiB")
	flag.IntVar(&o.segmentKiB, "segment-kib", 128, "partial-sync segment size in KiB (both clients)")
	flag.IntVar(&o.lookups, "lookups", 400000, "local point lookups per run (split across -goroutines)")
	flag.IntVar(&o.goroutines, "goroutines", 16, "concurrent local readers")
	flag.IntVar(&o.writes, "writes", 2000, "local single-row write transactions per run")
	flag.IntVar(&o.localRows, "local-rows", 200000, "rows of the local-use database")
	flag.IntVar(&o.clients, "clients", 50, "server-load clients")
	flag.DurationVar(&o.loadTime, "load-time", 30*time.Second, "server-load measuring window")
	flag.DurationVar(&o.longPoll, "long-poll", 5*time.Second, "server-load clients' long-poll timeout")
	linkSpec := flag.String("links", "50mbit:40ms,10mbit:100ms", "link profiles of comparison 8 (wan): RATEmbit:RTT, comma-separated")
	flag.IntVar(&o.slowBootReps, "slow-boot-reps", 1, "repetitions of each side of the bootstraps over links below 20 Mbit/s (a 256 MiB bootstrap takes minutes there)")
	flag.StringVar(&o.only, "only", "", "comma-separated subset: bootstrap,pull,push,partial,local,load,stalled,wan")
	flag.StringVar(&o.work, "work", "", "work directory (default bench/out under the module root); its cache/ keeps generated databases between runs")
	flag.StringVar(&o.node, "node", "node", "node binary for the Turso client")
	flag.StringVar(&o.out, "out", "", "also write the markdown report to this file (default WORK/results.md; raw samples go to WORK/results.json)")
	flag.StringVar(&o.profile, "profile", "", "write CPU profiles to this directory: every Go worker's, and the server's (the server then runs in a bench worker process, same server package and settings as syncdb serve, instead of the syncdb binary)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's replicas and server data directory")
	flag.Parse()
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"reps":           func() { o.reps = 1 },
			"big-mib":        func() { o.bigMiB = 16 },
			"pull-rows":      func() { o.pullRows = 1000 },
			"pull-base-rows": func() { o.pullBaseRows = 20000 },
			"push-rows":      func() { o.pushRows = 1000 },
			"push-txs":       func() { o.pushTxs = 100 },
			"lookups":        func() { o.lookups = 20000 },
			"writes":         func() { o.writes = 100 },
			"local-rows":     func() { o.localRows = 20000 },
			"clients":        func() { o.clients = 10 },
			"load-time":      func() { o.loadTime = 3 * time.Second },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	var err error
	if o.links, err = parseProfiles(*linkSpec); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o *options) enabled(name string) bool {
	if o.only == "" {
		return true
	}
	for _, s := range strings.Split(o.only, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

func run(o *options) error {
	env, err := setupEnv(o)
	if err != nil {
		return err
	}
	defer env.cleanup()
	logf("work directory %s", env.work)
	r := newReport(o, env)
	type scenario struct {
		name string
		fn   func(*benchEnv, *report) error
	}
	for _, s := range []scenario{
		{"bootstrap", benchBootstrap},
		{"pull", benchPull},
		{"push", benchPush},
		{"partial", benchPartial},
		{"local", benchLocal},
		{"wan", benchLinks}, // before load, which stops the shared server
		{"load", benchLoad},
		{"stalled", benchStalled},
	} {
		if !o.enabled(s.name) {
			continue
		}
		start := time.Now()
		logf("== %s", s.name)
		if err := s.fn(env, r); err != nil {
			// Keep what was measured so far.
			r.writeJSON(filepath.Join(env.work, "results.json"))
			os.WriteFile(filepath.Join(env.work, "results.md"), []byte(r.markdown()), 0o644)
			return fmt.Errorf("%s: %w", s.name, err)
		}
		logf("== %s done in %s", s.name, time.Since(start).Round(time.Second))
	}
	if err := env.stopServer(); err != nil {
		return err
	}
	md := r.markdown()
	fmt.Println()
	fmt.Print(md)
	out := o.out
	if out == "" {
		out = filepath.Join(env.work, "results.md")
	}
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	if err := r.writeJSON(filepath.Join(env.work, "results.json")); err != nil {
		return err
	}
	logf("report written to %s (raw samples in %s)", out, filepath.Join(env.work, "results.json"))
	return nil
}

var started = time.Now()

// logf prints progress to stderr, so that stdout holds only the report.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}
