package interop

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/lb"
	"github.com/syncdb/syncdb/internal/pgtest"
)

// TestClientCluster runs every scenario against three `syncdb serve
// --store` nodes over one PostgreSQL database, through a round-robin load
// balancer: the client's requests, pulls and pushes alike, go to all three
// nodes in turn, and pushes reaching a node that is not the writer are
// forwarded to it.
func TestClientCluster(t *testing.T) {
	pgtest.URL(t) // skips without PostgreSQL
	for _, sc := range scenarios {
		if sc.single {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.NewDatabase(t)
			clients := t.TempDir()
			if sc.setup != nil {
				flags, env := sc.setup(t)
				sc.flags = append(append([]string(nil), sc.flags...), flags...)
				sc.env = append(append([]string(nil), sc.env...), env...)
			}
			dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
			start := func() []*syncServer {
				var nodes []*syncServer
				for _, d := range dirs {
					n := startServer(t, d, append([]string{"--store", dsn}, sc.flags...)...)
					n.cache = true
					nodes = append(nodes, n)
				}
				return nodes
			}
			nodes := start()
			var urls []*url.URL
			for _, n := range nodes {
				u, _ := url.Parse(n.URL)
				urls = append(urls, u)
			}
			bal := lb.New(urls)
			hs := httptest.NewServer(bal)
			defer hs.Close()
			// The checkpoint scenario watches the writer's WAL: node 0
			// becomes the writer (a first request creates the database and
			// takes its lease).
			if sc.name == "checkpoint" {
				takeLease(t, nodes[0].URL)
			}
			run := func(env ...string) {
				runScenarioAt(t, hs.URL, nodes[0].DataDir, sc.name, clients, append(sc.env, env...)...)
			}
			if !sc.restart {
				run()
			} else {
				run("SYNCDB_PHASE=1")
				for _, n := range nodes {
					n.stop(t)
				}
				if t.Failed() {
					return
				}
				nodes = start()
				for i, n := range nodes {
					bal.SetNodeURL(i, n.URL)
				}
				run("SYNCDB_PHASE=2")
			}
			var total int64
			for i := range nodes {
				total += bal.Count(i)
			}
			for i := range nodes {
				if total >= 6 && bal.Count(i) == 0 {
					t.Errorf("node %d answered none of %d requests", i, total)
				}
			}
			t.Logf("requests per node: %d %d %d", bal.Count(0), bal.Count(1), bal.Count(2))
		})
	}
}

// takeLease makes the node at base the writer of database "default".
func takeLease(t *testing.T, base string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/pipeline", strings.NewReader(`{"baton":null,"requests":[{"type":"close"}]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first request to node 0: %d", resp.StatusCode)
	}
}
