package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire/syncpb"
)

// 7. Stalled readers: the latency of a one-row push (the protocol-level
// push of loadwire.go: a high-water read, then one transaction with the
// row and the high-water upsert) on a database that 100 clients are
// pulling without reading their responses, against the same pushes with
// no such clients. Half the stalled pulls are bootstraps (they hold read
// transactions on the database file), half incremental pulls (they hold
// page-history read views). The server runs with --io-timeout 10m so that
// they stay stalled for the whole measurement instead of being dropped.
func benchStalled(e *benchEnv, r *report) error {
	if err := e.stopServer(); err != nil {
		return err
	}
	srv, err := e.startServerWith(filepath.Join(e.run, "stalled-data"), []string{"--io-timeout", "10m"}, "stall")
	if err != nil {
		return err
	}
	defer srv.stop()
	u := srv.URL + "/db/stall"
	if err := remoteExec(u, stmt{sql: "CREATE TABLE l(id INTEGER PRIMARY KEY, who TEXT, v TEXT)"},
		stmt{sql: "CREATE TABLE IF NOT EXISTS turso_sync_last_change_id (client_id TEXT PRIMARY KEY, pull_gen INTEGER, change_id INTEGER)"},
		stmt{sql: "CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)"},
		stmt{sql: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 4000) INSERT INTO big SELECT i, randomblob(4000) FROM n"}); err != nil {
		return err
	}
	ctx := context.Background()
	hc := &http.Client{}
	base, err := wirePull(ctx, hc, u, &syncpb.PullUpdatesReqProtoBody{})
	if err != nil {
		return err
	}
	const stalled, pushes = 100, 300
	id := 0
	measure := func(key string) error {
		var lat []float64
		for range pushes {
			id++
			t := time.Now()
			if err := wirePush(ctx, hc, u, "l", "bench", id); err != nil {
				return err
			}
			lat = append(lat, since(t))
		}
		slices.Sort(lat)
		r.add(key+"/push_p50", percentile(lat, 0.5))
		r.add(key+"/push_p99", percentile(lat, 0.99))
		logf("  %s: push p50 %.1f ms p99 %.1f ms", key, percentile(lat, 0.5)*1e3, percentile(lat, 0.99)*1e3)
		return nil
	}
	for rep := 0; rep < e.o.reps; rep++ {
		if err := measure("stalled/none"); err != nil {
			return err
		}
		var conns []net.Conn
		for i := range stalled {
			req := &syncpb.PullUpdatesReqProtoBody{}
			if i%2 == 1 {
				req.ClientRevision = base
			}
			c, err := stalledPull(u, req)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		// The server streams to as many as it has read connections for
		// (12 bootstraps on the database's readers, the others on the
		// history's 16, which the rest wait for); their socket buffers
		// then fill. Wait until the count stops growing (a bootstrap
		// waits 1 s for a reader before it moves to the history).
		last, since := -1.0, time.Now()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			n, _ := metricValue(srv.URL, "syncdb_pull_streams")
			if n != last {
				last, since = n, time.Now()
			} else if n > 0 && time.Since(since) >= 2*time.Second {
				break
			}
		}
		n, _ := metricValue(srv.URL, "syncdb_pull_streams")
		err := measure("stalled/with")
		for _, c := range conns {
			c.Close()
		}
		if err != nil {
			return err
		}
		logf("  %d stalled pulls were streaming", int(n))
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if n, _ := metricValue(srv.URL, "syncdb_pull_streams"); n == 0 {
				break
			}
		}
	}
	r.note("stalled", fmt.Sprintf("a separate fresh `syncdb serve --io-timeout 10m` with a 16 MiB database; %d sequential one-row pushes (protocol level) per side; "+
		"with: %d pulls whose clients never read (half bootstraps, half incremental), opened before and kept stalled during the pushes", pushes, stalled))
	return srv.stop()
}

// stalledPull sends a pull over a connection with a tiny receive buffer and
// never reads the answer.
func stalledPull(base string, req *syncpb.PullUpdatesReqProtoBody) (net.Conn, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	pu, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", pu.Host)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "POST %s/pull-updates HTTP/1.1\r\nHost: %s\r\nContent-Type: application/protobuf\r\nContent-Length: %d\r\n\r\n", pu.Path, pu.Host, len(body))
	c.Write(body)
	return c, nil
}
