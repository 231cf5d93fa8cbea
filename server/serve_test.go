package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// Serve on real loopback HTTP, shut down by its context: the waiting long
// poll is released at once (not after its 60 s), a bootstrap whose
// response is part way through the socket completes intact, the listener
// refuses new connections while that request drains, Serve returns nil
// only once it is done and has closed the Server, and a second Serve fails with ErrServed and closes
// its listener.
func TestServeShutsDownGracefully(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln := smallBufferListener(t) // so that the bootstrap stalls in the socket
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	ts := &testServer{Server: s, url: "http://" + addr}
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO t SELECT i, randomblob(3000) FROM n")
	rev := ts.revision(t, mustLatest(t, ts))

	type answer struct {
		status int
		err    error
		at     time.Time
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := http.Post(ts.url+"/pull-updates", "application/protobuf", bytes.NewReader(pullBody(t, &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 60_000})))
		if err != nil {
			polled <- answer{err: err, at: time.Now()}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		polled <- answer{status: resp.StatusCode, at: time.Now()}
	}()
	testutil.Eventually(t, time.Minute, "the long poll waiting", func() bool { return ts.metricValue(t, "syncdb_long_poll_waiters") == 1 })

	// A bootstrap whose handler is running: its first bytes arrived, and
	// the small buffers keep the rest (about a megabyte) in the handler.
	client := smallBufferClient()
	defer client.CloseIdleConnections()
	resp, err := client.Post(ts.url+"/pull-updates", "application/protobuf", bytes.NewReader(pullBody(t, &syncpb.PullUpdatesReqProtoBody{})))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var first [1]byte
	if _, err := io.ReadFull(resp.Body, first[:]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Minute, "the bootstrap streaming", func() bool { return ts.metricValue(t, "syncdb_pull_streams") == 1 })

	canceled := time.Now()
	cancel()
	select {
	case a := <-polled:
		if a.err != nil || a.status != http.StatusOK {
			t.Fatalf("the long poll: status %d, %v", a.status, a.err)
		}
		if d := a.at.Sub(canceled); d > 10*time.Second {
			t.Fatalf("the long poll returned %v after the shutdown began", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll was not released by the shutdown")
	}
	testutil.Eventually(t, 10*time.Second, "the listener closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with the bootstrap in flight", err)
	default:
	}

	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the bootstrap in flight was cut: %v", err)
	}
	p := decodePull(t, append(first[:], rest...))
	im := image{}
	im.apply(p)
	integrityOK(t, openImage(t, im.write(t, p.hdr.DbSize)))
	var n int
	if err := openImage(t, im.write(t, p.hdr.DbSize)).QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 300 {
		t.Fatalf("the bootstrap's image: %d rows, %v; want 300", n, err)
	}

	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after a shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the requests drained")
	}
	// Serve closed s: the data directory is free for another server.
	s2, err := New(Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("after Serve returned: %v", err)
	}
	s2.Close()

	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A done context: a Serve that ignored the first call would shut down
	// at once rather than hang the test.
	if err := s.Serve(ctx, ln2); !errors.Is(err, ErrServed) {
		t.Fatalf("a second Serve: %v, want ErrServed", err)
	}
	if _, err := ln2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a second Serve left its listener open: Accept: %v", err)
	}
}

// mustLatest is the database's latest history sequence number.
func mustLatest(t *testing.T, ts *testServer) int64 {
	t.Helper()
	d, err := ts.database(context.Background(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	return d.hist.Latest().Seq
}
