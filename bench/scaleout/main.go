// Command scaleout measures a syncdb cluster on one machine: push
// throughput and pull latency through a load balancer with 1, 2 and 3
// `syncdb serve --store` nodes over one PostgreSQL, where the time of a push
// goes, and how fast a long poll on one node wakes after a push on another.
//
//	go run ./bench/scaleout                      # starts a throw-away PostgreSQL (scripts/pg.sh)
//	go run ./bench/scaleout -store postgres://...  # or uses yours (it creates tables in it)
//
// The results of a run are in bench/scaleout/RESULTS.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncdb/syncdb/internal/lb"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/wire/syncpb"
)

var (
	store    = flag.String("store", "", "PostgreSQL URL (default: start a throw-away cluster with scripts/pg.sh)")
	only     = flag.String("only", "throughput,wake,bootstrap,takeover", "sections to run")
	sizesMiB = flag.String("sizes", "1,64", "database sizes (MiB) of the bootstrap and takeover sections")
	kills    = flag.Int("kills", 3, "kills per database size and mode in the takeover section")
	clients  = flag.Int("clients", 16, "concurrent protocol-level clients")
	duration = flag.Duration("time", 10*time.Second, "measuring window of each run")
	trials   = flag.Int("wake-trials", 200, "long-poll wake trials")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scaleout:", err)
		os.Exit(1)
	}
}

func run() error {
	work, err := os.MkdirTemp("", "syncdb-scaleout-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755) // PostgreSQL's user must reach its directory in it
	base := *store
	if base == "" {
		out, err := exec.Command("scripts/pg.sh", "start", filepath.Join(work, "pg")).Output()
		if err != nil {
			return fmt.Errorf("scripts/pg.sh start (run from the repository root): %w", err)
		}
		defer exec.Command("scripts/pg.sh", "stop", filepath.Join(work, "pg")).Run()
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "export SYNCDB_TEST_PG="); ok {
				base = strings.Trim(v, "'")
			}
		}
	}
	bin := filepath.Join(work, "syncdb")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/syncdb").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	sections := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		sections[s] = true
	}
	var sizes []int
	for _, s := range strings.Split(*sizesMiB, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("-sizes: %w", err)
		}
		sizes = append(sizes, n)
	}
	fmt.Printf("## Scale-out (%s, %d CPUs, %d clients, %v per run)\n\n", time.Now().Format("2006-01-02"), runtime.NumCPU(), *clients, *duration)
	if sections["throughput"] {
		if err := throughput(work, bin, base); err != nil {
			return err
		}
	}
	if sections["wake"] {
		c, err := startCluster(work, bin, base, 2)
		if err != nil {
			return err
		}
		err = c.wake()
		c.stop()
		if err != nil {
			return err
		}
	}
	if sections["bootstrap"] {
		if err := bootstraps(work, bin, base, sizes); err != nil {
			return err
		}
	}
	if sections["takeover"] {
		// Built with failpoints, so that the cold runs can switch the
		// warm copies off.
		fbin := filepath.Join(work, "syncdb-failpoints")
		if out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", fbin, "./cmd/syncdb").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
		if err := takeovers(work, fbin, base, sizes); err != nil {
			return err
		}
	}
	return nil
}

// throughput measures pushes and pulls through the load balancer for 1, 2
// and 3 nodes.
func throughput(work, bin, base string) error {
	fmt.Println("| nodes | pushes/s | push p50 | push p99 | pulls/s | pull p50 | pull p99 | PostgreSQL append (mean) | forwarded hop (mean, incl. the writer's work) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for n := 1; n <= 3; n++ {
		c, err := startCluster(work, bin, base, n)
		if err != nil {
			return err
		}
		r, err := c.measure()
		c.stop()
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %.0f | %v | %v | %.0f | %v | %v | %v | %s |\n", n, r.pushRate, r.pushP50, r.pushP99, r.pullRate, r.pullP50, r.pullP99, r.appendMean, r.forward)
	}
	return nil
}

type cluster struct {
	bin   string
	nodes []*exec.Cmd
	urls  []string
	dirs  []string
	env   []string
	lb    *httptest.Server
	dsn   string
}

var dbSeq int

// startCluster starts n nodes on a fresh database of the server at base;
// env is added to the nodes' environment.
func startCluster(work, bin, base string, n int, env ...string) (*cluster, error) {
	dbSeq++
	name := fmt.Sprintf("bench_%d_%d", os.Getpid(), dbSeq)
	conn, err := pgx.Connect(context.Background(), base)
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(context.Background(), "CREATE DATABASE "+name)
	conn.Close(context.Background())
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(base)
	u.Path = "/" + name
	c := &cluster{bin: bin, dsn: u.String(), env: env}
	var lbNodes []*url.URL
	for i := range n {
		c.dirs = append(c.dirs, filepath.Join(work, fmt.Sprintf("%s-%d", name, i)))
		c.nodes, c.urls = append(c.nodes, nil), append(c.urls, "")
		if err := c.startNode(i); err != nil {
			return nil, err
		}
		lu, _ := url.Parse(c.urls[i])
		lbNodes = append(lbNodes, lu)
	}
	c.lb = httptest.NewServer(lb.New(lbNodes))
	// The first write takes the lease on node 0: with more nodes, the load
	// balancer sends 1/n of the pushes there and forwards the rest.
	if _, err := push(c.urls[0], "CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB)"); err != nil {
		return nil, err
	}
	return c, nil
}

// startNode starts node i (again) over its data directory.
func (c *cluster) startNode(i int) error {
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", c.dirs[i], "--log-level", "warn"}
	if c.dsn != "" {
		args = append(args, "--store", c.dsn)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "syncdb server listening on "); ok {
			c.urls[i] = v
			break
		}
	}
	if c.urls[i] == "" {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("node %d printed no URL", i)
	}
	go io.Copy(io.Discard, out)
	c.nodes[i] = cmd
	return nil
}

func (c *cluster) stop() {
	if c.lb != nil {
		c.lb.Close()
	}
	for _, n := range c.nodes {
		if n != nil && n.ProcessState == nil {
			n.Process.Signal(syscall.SIGTERM)
			n.Wait()
		}
	}
}

// push sends one pipeline with one statement (one revision).
func push(base, sql string) (time.Duration, error) {
	start := time.Now()
	_, err := rawclient.Exec(base, sql)
	return time.Since(start), err
}

// pull sends a pull from rev (empty: a bootstrap) and returns the new
// revision.
func pull(base, rev string, longPollMS uint32) (string, int, error) {
	p, err := rawclient.Pull(base, &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: longPollMS})
	if err != nil {
		return "", 0, err
	}
	return p.Header.ServerRevision, len(p.Pages), nil
}

type result struct {
	pushRate, pullRate float64
	pushP50, pushP99   time.Duration
	pullP50, pullP99   time.Duration
	appendMean         time.Duration
	forward            string
}

// measure runs the clients through the load balancer: half push one row
// per request, half pull incrementally from a revision ten behind.
func (c *cluster) measure() (result, error) {
	var mu sync.Mutex
	var pushes, pulls []time.Duration
	var firstErr error
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	start, _, err := pull(c.lb.URL, "", 0)
	if err != nil {
		return result{}, err
	}
	var wg sync.WaitGroup
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev := start
			for j := 0; ctx.Err() == nil; j++ {
				var d time.Duration
				var err error
				if i%2 == 0 {
					d, err = push(c.lb.URL, fmt.Sprintf("INSERT INTO t VALUES ('%d-%d', randomblob(200))", i, j))
				} else {
					t0 := time.Now()
					var next string
					next, _, err = pull(c.lb.URL, rev, 0)
					d = time.Since(t0)
					if j%10 == 9 {
						rev = next
					}
				}
				mu.Lock()
				if err != nil && firstErr == nil && ctx.Err() == nil {
					firstErr = err
				}
				if err == nil {
					if i%2 == 0 {
						pushes = append(pushes, d)
					} else {
						pulls = append(pulls, d)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	r := result{
		pushRate: float64(len(pushes)) / duration.Seconds(), pullRate: float64(len(pulls)) / duration.Seconds(),
		pushP50: pct(pushes, .5), pushP99: pct(pushes, .99), pullP50: pct(pulls, .5), pullP99: pct(pulls, .99),
	}
	var appSum, appN, fwdSum, fwdN float64
	for _, u := range c.urls {
		m, err := metrics(u)
		if err != nil {
			return r, err
		}
		appSum += m[`syncdb_store_seconds_sum{op="append"}`]
		appN += m[`syncdb_store_seconds_count{op="append"}`]
		fwdSum += m["syncdb_forward_seconds_sum"]
		fwdN += m["syncdb_forward_seconds_count"]
	}
	if appN > 0 {
		r.appendMean = time.Duration(appSum / appN * 1e9).Round(10 * time.Microsecond)
	}
	r.forward = "-"
	if fwdN > 0 {
		r.forward = fmt.Sprintf("%v (%.0f%% of pushes)", time.Duration(fwdSum/fwdN*1e9).Round(10*time.Microsecond), 100*fwdN/float64(len(pushes)))
	}
	r.pushP50, r.pushP99 = r.pushP50.Round(10*time.Microsecond), r.pushP99.Round(10*time.Microsecond)
	r.pullP50, r.pullP99 = r.pullP50.Round(10*time.Microsecond), r.pullP99.Round(10*time.Microsecond)
	return r, nil
}

// wake long-polls on node 1 while node 0 pushes, trials times: the time
// from the push's acknowledgement to the long poll's answer.
func (c *cluster) wake() error {
	var fromAck, fromSend []time.Duration
	rev, _, err := pull(c.urls[1], "", 0)
	if err != nil {
		return err
	}
	for i := range *trials {
		done := make(chan time.Time, 1)
		var next string
		go func() {
			var err error
			next, _, err = pull(c.urls[1], rev, 10000)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			done <- time.Now()
		}()
		// Wait for the long poll to be waiting on node 1.
		for {
			m, err := metrics(c.urls[1])
			if err != nil {
				return err
			}
			if m["syncdb_long_poll_waiters"] >= 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		sent := time.Now()
		if _, err := push(c.urls[0], fmt.Sprintf("INSERT INTO t VALUES ('wake-%d', NULL)", i)); err != nil {
			return err
		}
		acked := time.Now()
		woke := <-done
		fromAck = append(fromAck, max(0, woke.Sub(acked)))
		fromSend = append(fromSend, woke.Sub(sent))
		if next == rev {
			return fmt.Errorf("trial %d: the long poll returned without the push", i)
		}
		rev = next
	}
	fmt.Printf("\nLong poll on node 1 woken by a push on node 0, %d trials: from the push's acknowledgement p50 %v, p99 %v, max %v; from sending the push p50 %v, p99 %v.\n",
		*trials, pct(fromAck, .5).Round(10*time.Microsecond), pct(fromAck, .99).Round(10*time.Microsecond), pct(fromAck, 1).Round(10*time.Microsecond),
		pct(fromSend, .5).Round(10*time.Microsecond), pct(fromSend, .99).Round(10*time.Microsecond))
	return nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// metrics reads a node's Prometheus samples.
func metrics(base string) (map[string]float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		if k := strings.LastIndexByte(l, ' '); k > 0 {
			if v, err := strconv.ParseFloat(l[k+1:], 64); err == nil {
				m[l[:k]] = v
			}
		}
	}
	return m, sc.Err()
}
