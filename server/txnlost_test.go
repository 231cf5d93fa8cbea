package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
)

// A stream inside a transaction keeps the writer between its requests; if
// the connection it kept lost the transaction meanwhile (a cluster node
// rebuilds its copy and connection when it lost its lease while another
// node wrote: TestClusterStreamLosesItsTransactionWithTheLease reaches it
// only by timing), its next request fails and ends the stream instead of
// running its statements in autocommit, one committed half of a
// transaction. Here the loss is made directly: the connection's
// transaction is rolled back behind the idle stream.
func TestStreamRequestAfterItsTransactionWasLost(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(x)")
	d, err := ts.database(t.Context(), "default", true)
	if err != nil {
		t.Fatal(err)
	}
	s := ts.stream(t, "", "/v2/pipeline")
	s.do("BEGIN", "INSERT INTO t VALUES (1)")
	// The stream is idle and holds the writer: nothing else uses the
	// client connection now.
	if err := sqlitex.Raw(t.Context(), d.client, func(c *sqlitex.Conn) error { return c.Exec("ROLLBACK") }); err != nil {
		t.Fatal(err)
	}
	status, _, out := s.send(execReq("INSERT INTO t VALUES (2)"))
	var e hrana.Error
	if status != http.StatusInternalServerError || json.Unmarshal(out, &e) != nil || e.Code != "STREAM_EXPIRED" {
		t.Errorf("the request after the transaction was lost: %d %s", status, out)
	}
	if got := count(t, ts, "", "t"); got != "0\n" {
		t.Fatalf("a part of the lost transaction committed: %q rows", got)
	}
	// The writer is free again: another stream writes.
	ts.exec(t, "", "INSERT INTO t VALUES (3)")
	if got := count(t, ts, "", "t"); got != "1\n" {
		t.Fatalf("after: %q rows", got)
	}
}
