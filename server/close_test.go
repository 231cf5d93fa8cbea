package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// Server.Close while requests are in flight (the HTTP server still
// serving): long polls woken by the shutdown, bootstraps, incremental
// pulls, writes, a stream inside a transaction and a request waiting for
// its writer. Every request finishes or fails cleanly; none panics (the
// HTTP server logs a handler's panic, which the test reads), and Close
// returns without an error. Three rounds: how requests and the closing
// interleave varies.
func TestCloseWithRequestsInFlight(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), closeWithRequestsInFlight)
	}
}

func closeWithRequestsInFlight(t *testing.T) {
	s, err := New(Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), StreamTxnTimeout: time.Hour, StreamIdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var httpLog testutil.LockedBuffer
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Config.ErrorLog = log.New(&httpLog, "", 0)
	hs.Start()
	defer hs.Close()
	ts := &testServer{Server: s, http: hs, url: hs.URL}
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO t SELECT i, randomblob(3000) FROM n")
	d, _ := s.database(t.Context(), "default", false)
	rev := d.revision(d.hist.Latest().Seq)

	// A stream inside a transaction keeps the writer; another writer
	// waits for it.
	tx := ts.stream(t, "", "/v2/pipeline")
	tx.do("BEGIN", "INSERT INTO t VALUES(1000, 'x')")

	post := func(path, ctype string, body []byte) {
		resp, err := http.Post(hs.URL+path, ctype, bytes.NewReader(body))
		if err == nil {
			var sink bytes.Buffer
			sink.ReadFrom(resp.Body) // a cut stream is a clean failure too
			resp.Body.Close()
		}
	}
	longPoll := pullBody(t, &syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 60_000})
	bootstrap := pullBody(t, &syncpb.PullUpdatesReqProtoBody{})
	incremental := pullBody(t, &syncpb.PullUpdatesReqProtoBody{ClientRevision: d.revision(1)})
	pull := func(body []byte) { post("/pull-updates", "application/protobuf", body) }
	insert, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{execReq("INSERT INTO t(v) VALUES('y')")}})

	var wg sync.WaitGroup
	var closing atomic.Bool
	const polls = 16
	for range polls {
		wg.Go(func() { pull(longPoll) })
	}
	wg.Go(func() { post("/v2/pipeline", "application/json", insert) }) // waits for the stream's transaction
	for range 4 {
		wg.Go(func() {
			for !closing.Load() {
				pull(bootstrap)
				pull(incremental)
			}
		})
	}
	testutil.Eventually(t, time.Minute, "long polls waiting", func() bool { return ts.metricValue(t, "syncdb_long_poll_waiters") == polls })

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Close did not return within 2 minutes")
	}
	closing.Store(true)
	wg.Wait()
	if strings.Contains(httpLog.String(), "panic") {
		t.Fatalf("a request panicked:\n%s", httpLog.String())
	}
	// Later requests are refused, not served by closed databases.
	resp, err := http.Post(hs.URL+"/pull-updates", "application/protobuf", bytes.NewReader(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a pull after Close: %d, want 503", resp.StatusCode)
	}
}
