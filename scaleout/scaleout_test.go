package scaleout

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/lb"
	"github.com/syncdb/syncdb/internal/pgtest"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/wire/syncpb"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// serverBin builds cmd/syncdb once per test binary.
func serverBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "syncdb-scaleout-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "syncdb")
		// With failpoints: the tests arm them through the cluster's
		// failpoint directory (internal/failpoint, dir.go).
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", binPath, "github.com/syncdb/syncdb/cmd/syncdb").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// node is one `syncdb serve --store` process.
type node struct {
	url    string
	data   string
	cmd    *exec.Cmd
	done   chan error
	stderr *syncWriter
}

type cluster struct {
	t     *testing.T
	dsn   string
	fp    string // the nodes' failpoint directory
	nodes []*node
	lb    *lb.LB
	lbURL string
}

// newCluster starts n nodes; armed are failpoints (name: action) armed
// before they start.
func newCluster(t *testing.T, n int, armed map[string]string) *cluster {
	t.Helper()
	c := &cluster{t: t, dsn: pgtest.NewDatabase(t), fp: t.TempDir()}
	for name, action := range armed {
		c.arm(name, action)
	}
	var urls []*url.URL
	for range n {
		nd := c.start("")
		c.nodes = append(c.nodes, nd)
		u, _ := url.Parse(nd.url)
		urls = append(urls, u)
	}
	c.lb = lb.New(urls)
	hs := httptest.NewServer(c.lb)
	t.Cleanup(hs.Close)
	c.lbURL = hs.URL
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.cmd.Process.Signal(syscall.SIGCONT)
			nd.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, nd := range c.nodes {
			select {
			case <-nd.done:
			case <-time.After(20 * time.Second):
				nd.cmd.Process.Kill()
			}
		}
	})
	return c
}

// start runs a node over data (a fresh directory if "").
func (c *cluster) start(data string) *node {
	t := c.t
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	nd := &node{data: data, done: make(chan error, 1), stderr: &syncWriter{w: &bytes.Buffer{}}}
	nd.cmd = exec.Command(serverBin(t), "serve", "--addr", "127.0.0.1:0", "--data", data, "--store", c.dsn, "--lease-ttl", "2s", "--log-level", "warn")
	nd.cmd.Env = append(os.Environ(), "SYNCDB_FAILPOINTS="+c.fp)
	nd.cmd.Stderr = nd.stderr
	out, err := nd.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		var all []byte
		for {
			n, err := out.Read(buf)
			all = append(all, buf[:n]...)
			if _, rest, ok := strings.Cut(string(all), "listening on "); ok {
				if u, _, ok := strings.Cut(rest, "\n"); ok {
					found <- u
					io.Copy(io.Discard, out)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { nd.done <- nd.cmd.Wait() }()
	select {
	case nd.url = <-found:
	case <-time.After(30 * time.Second):
		nd.cmd.Process.Kill()
		t.Fatalf("node printed no URL\n%s", nd.stderr)
	}
	return nd
}

// arm arms failpoint name (NAME or NAME@OWNER) of every node with action
// (kill, skip).
func (c *cluster) arm(name, action string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.fp, name), []byte(action), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// fired reports whether the kill armed at failpoint name fired.
func (c *cluster) fired(name string) bool {
	_, err := os.Stat(filepath.Join(c.fp, name+".fired"))
	return err == nil
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// writer returns the index of the node holding the lease of db.
func (c *cluster) writer(db string) (int, int64) {
	c.t.Helper()
	conn, err := pgx.Connect(c.t.Context(), c.dsn)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(c.t.Context())
	var u *string
	var epoch int64
	err = conn.QueryRow(c.t.Context(), `SELECT n.url, d.epoch FROM syncdb_db d LEFT JOIN syncdb_node n ON n.node = d.writer WHERE d.name = $1`, db).Scan(&u, &epoch)
	if err != nil {
		c.t.Fatal(err)
	}
	for i, nd := range c.nodes {
		if u != nil && nd.url == *u {
			return i, epoch
		}
	}
	return -1, epoch
}

// query runs one SQL statement on the store.
func (c *cluster) query(sql string, args []any, dest ...any) {
	c.t.Helper()
	conn, err := pgx.Connect(c.t.Context(), c.dsn)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(c.t.Context())
	if err := conn.QueryRow(c.t.Context(), sql, args...).Scan(dest...); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

// pushClient is a Go client pushing rows through the load balancer.
type pushClient struct {
	name string
	db   *syncdb.DB

	mu        sync.Mutex
	attempted int          // rows written locally: 1..attempted
	acked     map[int]bool // rows whose push returned nil
	ackTimes  []time.Time  // when each successful push returned
	ackStarts []time.Time  // when each of them started
	errs      int          // pushes that failed (retried by the next push)
	lastErr   error
}

func openClient(t *testing.T, url, name string) *pushClient {
	t.Helper()
	db, err := syncdb.Open(t.Context(), syncdb.Config{Path: filepath.Join(t.TempDir(), name+".db"), URL: url, ClientName: name,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open client %s: %v", name, err)
	}
	t.Cleanup(func() { db.Close() })
	return &pushClient{name: name, db: db, acked: map[int]bool{}}
}

// run writes one row and pushes, until ctx ends.
func (p *pushClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		p.mu.Lock()
		n := p.attempted + 1
		p.mu.Unlock()
		err := p.db.Tx(ctx, func(tx *syncdb.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO items(client, n) VALUES (?, ?)", p.name, n); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO counters(client, v) VALUES (?, ?) ON CONFLICT(client) DO UPDATE SET v = excluded.v", p.name, n)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				p.mu.Lock()
				p.lastErr = err
				p.mu.Unlock()
			}
			return
		}
		p.mu.Lock()
		p.attempted = n
		p.mu.Unlock()
		started := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = p.db.Push(pctx)
		cancel()
		p.mu.Lock()
		if err == nil {
			for i := 1; i <= n; i++ {
				p.acked[i] = true // a push sends every pending change
			}
			p.ackTimes = append(p.ackTimes, time.Now())
			p.ackStarts = append(p.ackStarts, started)
		} else if ctx.Err() == nil {
			p.errs++
			p.lastErr = err
		}
		p.mu.Unlock()
	}
}

func (p *pushClient) acks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ackTimes)
}

// firstAckAfter returns when the first successful push that started after
// t returned (one that started before may have been answered by a writer
// just before it died).
func (p *pushClient) firstAckAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.ackTimes {
		if p.ackStarts[i].After(t) {
			return a, true
		}
	}
	return time.Time{}, false
}

// setupSchema creates the tables through the load balancer.
func setupSchema(t *testing.T, url string) {
	t.Helper()
	p := openClient(t, url, "setup")
	if _, err := p.db.Exec(t.Context(), "CREATE TABLE items(client TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY(client, n))"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.db.Exec(t.Context(), "CREATE TABLE counters(client TEXT PRIMARY KEY, v INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if err := p.db.Push(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// verify checks exactly-once after the clients synced: the server holds
// every row each client wrote (so every acknowledged one) and nothing else,
// and each client's counter is its last row: a stale push applied again
// after a newer one would have moved it back.
func verify(t *testing.T, url string, clients []*pushClient) {
	t.Helper()
	for _, p := range clients {
		var err error
		for range 20 {
			if err = p.db.Sync(t.Context()); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("client %s: final sync: %v", p.name, err)
		}
	}
	check := openClient(t, url, "check")
	for _, p := range clients {
		var count, lo, hi, v int
		row := check.db.QueryRow(t.Context(), "SELECT count(*), coalesce(min(n), 0), coalesce(max(n), 0), (SELECT v FROM counters WHERE client = ?) FROM items WHERE client = ?", p.name, p.name)
		if err := row.Scan(&count, &lo, &hi, &v); err != nil {
			t.Fatal(err)
		}
		// What the client wrote is in its own database (a write whose Tx
		// returned an error as the test stopped may have committed).
		var attempted int
		if err := p.db.QueryRow(t.Context(), "SELECT coalesce(max(n), 0) FROM items WHERE client = ?", p.name).Scan(&attempted); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		acked := len(p.acked)
		if p.attempted > attempted {
			t.Errorf("client %s: wrote %d rows, its database has %d", p.name, p.attempted, attempted)
		}
		p.mu.Unlock()
		if count != attempted || lo != 1 || hi != attempted || v != attempted {
			t.Errorf("client %s wrote rows 1..%d (%d acknowledged); the server has %d rows %d..%d, counter %d", p.name, attempted, acked, count, lo, hi, v)
		}
		if acked > attempted {
			t.Errorf("client %s: %d acknowledged > %d written", p.name, acked, attempted)
		}
		// A push applied a second time would meet its own rows: a
		// conflict, not a silent duplicate.
		if cs, err := p.db.Conflicts(t.Context()); err != nil || len(cs) > 0 {
			t.Errorf("client %s: conflicts %v (%v)", p.name, cs, err)
		}
	}
}

// pullAt fetches the whole database at rev from one node.
func pullAt(t *testing.T, base, rev string) (*syncpb.PullUpdatesRespProtoBody, map[uint64][]byte) {
	t.Helper()
	p, err := rawclient.Pull(base, &syncpb.PullUpdatesReqProtoBody{ServerRevision: rev})
	if err != nil {
		t.Fatalf("pull %s at %s: %v", base, rev, err)
	}
	return p.Header, p.Pages
}

// sameEverywhere checks that every node serves byte-identical pages for
// every revision of database "default".
func (c *cluster) sameEverywhere(t *testing.T) int64 {
	t.Helper()
	var hid string
	var latest int64
	c.query(`SELECT history_id, latest FROM syncdb_db WHERE name = 'default'`, nil, &hid, &latest)
	for seq := int64(1); seq <= latest; seq++ {
		rev := fmt.Sprintf("%s-%d", hid, seq)
		var want map[uint64][]byte
		for i, nd := range c.nodes {
			hdr, pages := pullAt(t, nd.url, rev)
			if hdr.ServerRevision != rev {
				t.Fatalf("node %d: asked for %s, got %s", i, rev, hdr.ServerRevision)
			}
			if want == nil {
				want = pages
				continue
			}
			if len(pages) != len(want) {
				t.Fatalf("revision %s: node %d sent %d pages, node 0 %d", rev, i, len(pages), len(want))
			}
			for pg, data := range want {
				if !bytes.Equal(pages[pg], data) {
					t.Fatalf("revision %s: page %d differs between node 0 and node %d", rev, pg+1, i)
				}
			}
		}
	}
	return latest
}
