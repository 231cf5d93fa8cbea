package server

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb/wire/syncpb"
)

// lbClient talks to the cluster through its load balancer.
func (tc *testCluster) lbClient() *testServer { return &testServer{url: tc.lb.URL} }

// revSeq splits a revision string.
func revSeq(t *testing.T, rev string) (string, int64) {
	t.Helper()
	i := strings.LastIndexByte(rev, '-')
	seq, err := strconv.ParseInt(rev[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("revision %q", rev)
	}
	return rev[:i], seq
}

// sameEverywhere checks that every node serves byte-identical pages for
// every revision from first to the latest.
func (tc *testCluster) sameEverywhere(t *testing.T, db string, first int64) {
	t.Helper()
	latest := tc.nodes[0].pull(t, db, &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	id, last := revSeq(t, latest)
	for seq := first; seq <= last; seq++ {
		rev := fmt.Sprintf("%s-%d", id, seq)
		var want *pulled
		for i, n := range tc.nodes {
			p := n.pull(t, db, &syncpb.PullUpdatesReqProtoBody{ServerRevision: rev})
			if p.hdr.ServerRevision != rev {
				t.Fatalf("node %d served %s for %s", i, p.hdr.ServerRevision, rev)
			}
			if want == nil {
				want = p
				continue
			}
			if p.hdr.DbSize != want.hdr.DbSize || len(p.pages) != len(want.pages) {
				t.Fatalf("revision %s: node %d has %d pages of %d, node 0 %d of %d", rev, i, len(p.pages), p.hdr.DbSize, len(want.pages), want.hdr.DbSize)
			}
			for pg, data := range want.pages {
				if !bytes.Equal(p.pages[pg], data) {
					t.Fatalf("revision %s: page %d differs between node 0 and node %d", rev, pg, i)
				}
			}
		}
	}
}

// Pushes through the load balancer reach every node and are forwarded to
// one writer; every node serves every revision, byte for byte the same;
// a revision from one node is good for an incremental pull on another.
func TestClusterServesAnyRequestOnAnyNode(t *testing.T) {
	tc := newTestCluster(t, 3, nil)
	lb := tc.lbClient()
	lb.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	total := 0
	for i := range 30 {
		v := fmt.Sprintf("%d %s", i, strings.Repeat("x", 200*i))
		total += len(v)
		lb.exec(t, "", fmt.Sprintf("INSERT INTO t(v) VALUES ('%s')", v))
	}
	rows := lb.query(t, "", "SELECT count(*), sum(length(v)) FROM t")
	if got := fmtRows(rows); got != fmt.Sprintf("30|%d\n", total) {
		t.Fatalf("rows: %s", got)
	}
	for i := range tc.nodes {
		if c := tc.lb.Count(i); c == 0 {
			t.Fatalf("the load balancer sent nothing to node %d", i)
		}
	}
	forwarded := 0.0
	for _, n := range tc.nodes {
		forwarded += n.metricValue(t, "syncdb_forwarded_requests_total")
	}
	if forwarded < 10 {
		t.Fatalf("only %v requests forwarded to the writer", forwarded)
	}
	tc.sameEverywhere(t, "", 1)

	// A revision from node 0, an incremental pull on node 1 and 2.
	first := tc.nodes[0].pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	lb.exec(t, "", "UPDATE t SET v = 'changed' WHERE id = 3")
	for i, n := range tc.nodes[1:] {
		p := n.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: first})
		if p.hdr.ServerRevision == first || len(p.pages) == 0 || len(p.pages) > 4 {
			t.Fatalf("node %d: incremental pull from %s gave %s with %d pages", i+1, first, p.hdr.ServerRevision, len(p.pages))
		}
	}
}

// A long poll on one node is woken by a push through another.
func TestClusterLongPollWokenByAnotherNode(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	tc.nodes[0].exec(t, "", "CREATE TABLE t(x)")
	rev := tc.nodes[1].pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	done := make(chan *pulled, 1)
	go func() {
		p, _, _ := tc.nodes[1].tryPull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 20000})
		done <- p
	}()
	waitFor(t, 10*time.Second, "the long poll to wait", func() bool { return tc.nodes[1].metricValue(t, "syncdb_long_poll_waiters") == 1 })
	start := time.Now()
	tc.nodes[0].exec(t, "", "INSERT INTO t VALUES (1)")
	select {
	case p := <-done:
		if p == nil || p.hdr.ServerRevision == rev {
			t.Fatalf("long poll returned %v", p)
		}
		t.Logf("woken %v after the push was acknowledged", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll on node 1 was not woken by a push on node 0")
	}
}
