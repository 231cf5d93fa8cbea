package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// 8. Over a slow link: each client goes through a shaper (link.go) with
// the profile's rate and round-trip time, to the same server and data as
// comparisons 1-4. For every operation the shaper counts the requests and
// connections between the client's markers.
func benchLinks(e *benchEnv, r *report) error {
	srv, err := e.sharedServer()
	if err != nil {
		return err
	}
	for _, p := range e.o.links {
		logf("  link %s", p)
		if err := e.linkProfile(r, srv, p); err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	r.note("wan", "each client process connects through an in-process TCP proxy that limits the rate in each direction (a token bucket per direction shared by all the client's connections) and delays every chunk by half the round trip, and a new connection's first bytes by one more round trip (its TCP handshake); loss, slow start and TLS are not modelled. "+
		"Requests are the bursts of client bytes that follow server bytes on a connection (HTTP/1.1 requests), counted between the client's markers around the measured operation; connections are the TCP connections it opened. "+
		"Bootstraps: the server has both snapshot caches (raw and zstd) of the revision; on links below 20 Mbit/s each side runs once (-slow-boot-reps). The floor is an HTTP GET of the database file through a link of the same profile")
	return nil
}

// shaped routes the clients of run through links (counted), then restores
// direct access.
func (e *benchEnv) shaped(links []*shaper, run func() error) error {
	e.links = links
	defer func() { e.links = nil }()
	return run()
}

func (e *benchEnv) linkProfile(r *report, srv *serverProc, p linkProfile) error {
	host := strings.TrimPrefix(srv.URL, "http://")
	link, err := startShaper(host, p)
	if err != nil {
		return err
	}
	defer link.close()
	g := p.key()
	dir, err := e.dir(g)
	if err != nil {
		return err
	}
	ctx := context.Background()

	// Bootstrap.
	src, rows, err := e.cachedDB(e.bigSpec())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, src) })}
	go fsrv.Serve(ln)
	defer fsrv.Close()
	flink, err := startShaper(ln.Addr().String(), p)
	if err != nil {
		return err
	}
	defer flink.close()
	bigURL := srv.URL + "/db/big"
	if err := warmSnapshots(bigURL, 2, 2); err != nil {
		return err
	}
	check := func(c *child, err error) (*child, error) {
		if err == nil && int(c.num("max_id")) != rows {
			err = fmt.Errorf("the bootstrapped replica's max(id) is %v, want %d", c.num("max_id"), rows)
		}
		return c, err
	}
	url := link.URL(bigURL)
	bootReps := e.o.reps
	if p.mbit < 20 {
		bootReps = e.o.slowBootReps
	}
	goBoot := func(name string, zstd bool) side {
		return side{name, func(int) (*child, error) {
			path := filepath.Join(dir, name+".db")
			defer removeReplica(path)
			args := []string{"-url", url, "-path", path, "-table", "big"}
			if zstd {
				args = append(args, "-zstd")
			}
			return check(e.goWorker(ctx, "bootstrap", args...))
		}}
	}
	err = e.shaped([]*shaper{link, flink}, func() error {
		return e.alternate(r, g+"/bootstrap", bootReps, []side{
			goBoot("go", false),
			goBoot("go_zstd", true),
			{"turso", func(int) (*child, error) {
				path := filepath.Join(dir, "turso.db")
				defer removeReplica(path)
				return check(e.nodeClient(ctx, "bootstrap", "--url", url, "--path", path, "--table", "big"))
			}},
			{"floor", func(int) (*child, error) {
				path := filepath.Join(dir, "floor.db")
				defer os.Remove(path)
				return e.goWorker(ctx, "download", "-url", flink.URL("http://"+ln.Addr().String())+"/big.sqlite", "-out", path)
			}},
		}, nil)
	})
	if err != nil {
		return err
	}

	// Incremental pull: replicas bootstrapped directly, pulls through the
	// link, after the same change on the server.
	incURL := srv.URL + "/db/inc"
	_, incRows, err := e.cachedDB(e.incSpec())
	if err != nil {
		return err
	}
	goPath, zPath, tursoPath := filepath.Join(dir, "pull-go.db"), filepath.Join(dir, "pull-gozstd.db"), filepath.Join(dir, "pull-turso.db")
	for _, path := range []string{goPath, zPath} {
		if _, err := e.goWorker(ctx, "open", "-url", incURL, "-path", path); err != nil {
			return err
		}
	}
	if _, err := e.nodeClient(ctx, "bootstrap", "--url", incURL, "--path", tursoPath, "--table", "inc"); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(8, uint64(p.mbit)))
	change := func(n int) error {
		lo := 1 + rnd.IntN(incRows-n+1)
		return remoteExec(incURL, stmt{"UPDATE inc SET v = hex(randomblob(100)) WHERE id BETWEEN ? AND ?", []any{lo, lo + n - 1}})
	}
	url = link.URL(incURL)
	pullSides := []side{
		{"go", func(int) (*child, error) { return e.goWorker(ctx, "pull", "-url", url, "-path", goPath) }},
		{"go_zstd", func(int) (*child, error) { return e.goWorker(ctx, "pull", "-url", url, "-path", zPath, "-zstd") }},
		{"turso", func(int) (*child, error) {
			return e.nodeClient(ctx, "pull", "--url", url, "--path", tursoPath, "--table", "inc")
		}},
	}
	// A warm-up round, not recorded: the replicas' first pull through the
	// link (the Go replicas learn the new address).
	if err := change(1); err != nil {
		return err
	}
	for _, s := range pullSides {
		if err := e.shaped([]*shaper{link}, func() error { _, err := s.run(0); return err }); err != nil {
			return err
		}
	}
	for rep := 0; rep < e.o.reps; rep++ {
		if err := change(e.o.pullRows); err != nil {
			return err
		}
		if err := e.shaped([]*shaper{link}, func() error { return e.alternate(r, g+"/pull", 1, pullSides, nil) }); err != nil {
			return err
		}
	}

	// Push of pushRows inserts in one transaction, to a database of its own.
	pushURL := srv.URL + "/db/" + g + "push"
	if err := remoteExec(pushURL, stmt{sql: "CREATE TABLE p(id INTEGER PRIMARY KEY, who TEXT, v TEXT)"}); err != nil {
		return err
	}
	url = link.URL(pushURL)
	n := e.o.pushRows
	pushArgs := func(rep, sideNo int, tag string) []string {
		return []string{"-url", url, "-table", "p", "-tag", tag, "-start", strconv.Itoa(1 + (rep*2+sideNo)*n),
			"-rows", strconv.Itoa(n), "-txs", "1"}
	}
	err = e.shaped([]*shaper{link}, func() error {
		return e.alternate(r, g+"/push", e.o.reps, []side{
			{"go", func(rep int) (*child, error) {
				path := filepath.Join(dir, fmt.Sprintf("push-go-%d.db", rep))
				defer removeReplica(path)
				return e.goWorker(ctx, "push", append(pushArgs(rep, 0, "go"), "-path", path)...)
			}},
			{"turso", func(rep int) (*child, error) {
				path := filepath.Join(dir, fmt.Sprintf("push-turso-%d.db", rep))
				defer removeReplica(path)
				return e.nodeClient(ctx, "push", dashdash(append(pushArgs(rep, 1, "turso"), "-path", path))...)
			}},
		}, nil)
	})
	if err != nil {
		return err
	}

	// Partial cold start, as in comparison 4.
	url = link.URL(bigURL)
	ids := make([]int, e.o.reps)
	for i := range ids {
		ids[i] = 1 + rnd.IntN(rows)
	}
	prefix, segment := strconv.Itoa(e.o.prefixKiB<<10), strconv.Itoa(e.o.segmentKiB<<10)
	goPartial := func(name string, zstd bool) side {
		return side{name, func(rep int) (*child, error) {
			path := filepath.Join(dir, "partial-"+name+".db")
			defer removeReplica(path)
			args := []string{"-url", url, "-path", path, "-table", "big", "-prefix", prefix, "-segment", segment, "-id", strconv.Itoa(ids[rep])}
			if zstd {
				args = append(args, "-zstd")
			}
			return e.goWorker(ctx, "partial", args...)
		}}
	}
	return e.shaped([]*shaper{link}, func() error {
		return e.alternate(r, g+"/partial", e.o.reps, []side{
			goPartial("go", false),
			goPartial("go_zstd", true),
			{"turso", func(rep int) (*child, error) {
				path := filepath.Join(dir, "partial-turso.db")
				defer removeReplica(path)
				return e.nodeClient(ctx, "partial", "--url", url, "--path", path, "--table", "big", "--prefix", prefix, "--segment", segment, "--id", strconv.Itoa(ids[rep]))
			}},
		}, func(rep int, s side, c *child) {
			for _, k := range []string{"open_seconds", "lookup_seconds"} {
				r.add(g+"/partial/"+s.name+"/"+k, c.num(k))
			}
		})
	})
}

// linkRows are the report rows of one link profile.
func linkRows(o *options, p linkProfile) []row {
	g := p.key()
	go_, gz, turso := "Go", "Go, zstd", "Turso"
	var rows []row
	add := func(title, metric string, a, b cell) { rows = append(rows, row{"8", title, metric, a, b}) }
	k := func(op, side, m string) string { return g + "/" + op + "/" + side + "/" + m }
	title := func(what string) string { return fmt.Sprintf("%s, over %s", what, p) }
	add(title(fmt.Sprintf("Bootstrap, %d MiB", o.bigMiB)), "time", cell{gz, k("bootstrap", "go_zstd", "seconds"), 0}, cell{turso, k("bootstrap", "turso", "seconds"), 0})
	add("", "time", cell{go_, k("bootstrap", "go", "seconds"), 0}, cell{turso, k("bootstrap", "turso", "seconds"), 0})
	add("", "time", cell{gz, k("bootstrap", "go_zstd", "seconds"), 0}, cell{"HTTP download (floor)", k("bootstrap", "floor", "seconds"), 0})
	add("", "time", cell{go_, k("bootstrap", "go", "seconds"), 0}, cell{"HTTP download (floor)", k("bootstrap", "floor", "seconds"), 0})
	add("", "bytes received", cell{gz, k("bootstrap", "go_zstd", "bytes"), 0}, cell{turso, k("bootstrap", "turso", "bytes"), 0})
	add("", "requests", cell{go_, k("bootstrap", "go", "requests"), 0}, cell{turso, k("bootstrap", "turso", "requests"), 0})
	add("", "connections", cell{go_, k("bootstrap", "go", "conns"), 0}, cell{turso, k("bootstrap", "turso", "conns"), 0})
	add(title(fmt.Sprintf("Incremental pull, %s changed rows", thousands(float64(o.pullRows)))), "time", cell{go_, k("pull", "go", "seconds"), 0}, cell{turso, k("pull", "turso", "seconds"), 0})
	add("", "time", cell{gz, k("pull", "go_zstd", "seconds"), 0}, cell{turso, k("pull", "turso", "seconds"), 0})
	add("", "bytes received", cell{gz, k("pull", "go_zstd", "bytes"), 0}, cell{turso, k("pull", "turso", "bytes"), 0})
	add("", "requests", cell{go_, k("pull", "go", "requests"), 0}, cell{turso, k("pull", "turso", "requests"), 0})
	add(title(fmt.Sprintf("Push %s inserts, 1 transaction", thousands(float64(o.pushRows)))), "push time", cell{go_, k("push", "go", "seconds"), 0}, cell{turso, k("push", "turso", "seconds"), 0})
	add("", "bytes sent", cell{go_, k("push", "go", "bytes"), 0}, cell{turso, k("push", "turso", "bytes"), 0})
	add("", "requests", cell{go_, k("push", "go", "requests"), 0}, cell{turso, k("push", "turso", "requests"), 0})
	add(title(fmt.Sprintf("Partial cold start (%d KiB prefix + 1 lookup)", o.prefixKiB)), "time", cell{go_, k("partial", "go", "seconds"), 0}, cell{turso, k("partial", "turso", "seconds"), 0})
	add("", "time", cell{gz, k("partial", "go_zstd", "seconds"), 0}, cell{turso, k("partial", "turso", "seconds"), 0})
	add("", "open (bootstrap) only", cell{go_, k("partial", "go", "open_seconds"), 0}, cell{turso, k("partial", "turso", "open_seconds"), 0})
	add("", "lookup only", cell{go_, k("partial", "go", "lookup_seconds"), 0}, cell{turso, k("partial", "turso", "lookup_seconds"), 0})
	add("", "requests (open)", cell{go_, k("partial", "go", "open_requests"), 0}, cell{turso, k("partial", "turso", "open_requests"), 0})
	add("", "requests (lookup)", cell{go_, k("partial", "go", "lookup_requests"), 0}, cell{turso, k("partial", "turso", "lookup_requests"), 0})
	add("", "connections", cell{go_, k("partial", "go", "conns"), 0}, cell{turso, k("partial", "turso", "conns"), 0})
	add("", "bytes received", cell{gz, k("partial", "go_zstd", "bytes"), 0}, cell{turso, k("partial", "turso", "bytes"), 0})
	return rows
}
