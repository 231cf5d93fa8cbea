package server

import (
	"log/slog"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncdb/syncdb/internal/lb"
	"github.com/syncdb/syncdb/internal/pgtest"
	"github.com/syncdb/syncdb/server/pgstore"
)

// testNode is one syncdb node of a test cluster.
type testNode struct {
	*testServer
	cluster *pgstore.Cluster
}

// testCluster is n nodes over one PostgreSQL database behind a round-robin
// load balancer.
type testCluster struct {
	nodes []*testNode
	lb    *testLB
	dsn   string
}

func newTestCluster(t *testing.T, n int, mod func(*pgstore.Config, *Config)) *testCluster {
	t.Helper()
	tc := &testCluster{dsn: pgtest.NewDatabase(t)}
	var urls []*url.URL
	for i := range n {
		tc.nodes = append(tc.nodes, tc.startNode(t, i, mod))
		u, _ := url.Parse(tc.nodes[i].url)
		urls = append(urls, u)
	}
	tc.lb = newTestLB(t, urls)
	return tc
}

// startNode starts node i (again, on a fresh data directory).
func (tc *testCluster) startNode(t *testing.T, i int, mod func(*pgstore.Config, *Config)) *testNode {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	// The serve default TTL: no test here waits for a lease to expire by
	// itself (a lost lock session frees it at once), and a loaded CI
	// machine must not make one lapse.
	pcfg := pgstore.Config{URL: tc.dsn, Advertise: "http://" + hs.Listener.Addr().String(), TTL: 5 * time.Second,
		Recheck: time.Second, Logger: slog.New(slog.DiscardHandler)}
	reg := prometheus.NewRegistry() // the store's metrics and the server's
	pcfg.Registry = reg
	cfg := Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Registry: reg}
	if mod != nil {
		mod(&pcfg, &cfg)
	}
	c, err := pgstore.Open(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cluster = c
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = s.Handler()
	hs.Start()
	node := &testNode{testServer: &testServer{Server: s, http: hs, url: hs.URL, dir: cfg.DataDir}, cluster: c}
	t.Cleanup(func() { node.stop(t) })
	return node
}

var stopped sync.Map // *testNode already stopped

func (n *testNode) stop(t *testing.T) {
	if _, dup := stopped.LoadOrStore(n, true); dup {
		return
	}
	n.BeginShutdown()
	n.http.Close()
	if err := n.Close(); err != nil {
		t.Errorf("close node: %v", err)
	}
	n.cluster.Close()
}

// testLB is the load balancer of package lb on loopback.
type testLB struct {
	*httptest.Server
	*lb.LB
}

func newTestLB(t *testing.T, nodes []*url.URL) *testLB {
	b := lb.New(nodes)
	l := &testLB{Server: httptest.NewServer(b), LB: b}
	t.Cleanup(l.Close)
	return l
}

// copyPages reads syncdb_local_copy_pages_total{build=build} of a node.
func (n *testNode) copyPages(t *testing.T, build string) float64 {
	t.Helper()
	mfs, err := n.gather.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "syncdb_local_copy_pages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "build" && l.GetValue() == build {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// storeReads counts a node's read round trips to the store.
func (n *testNode) storeReads(t *testing.T) uint64 {
	t.Helper()
	mfs, err := n.gather.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "syncdb_store_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "read" {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
