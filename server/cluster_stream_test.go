package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncdb/syncdb/internal/testutil"
)

// A stream inside a transaction on a cluster node that loses its writer
// lease, while another node writes, and takes it back between two of the
// stream's requests finds its transaction gone (the node rebuilt its local
// copy and its connection at the new epoch): its next request fails, and
// its statements never run in autocommit as if they were still inside the
// transaction (half of it committed). Losing the lease and taking it back
// with nobody writing in between keeps the transaction.
func TestClusterStreamLosesItsTransactionWithTheLease(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	n := tc.nodes[0]
	n.exec(t, "", "CREATE TABLE t(x)")
	url := n.dbURL("") + "/v2/pipeline"
	send := func(baton, sql string) (int, string, string) {
		t.Helper()
		var bt any // null: a new stream
		if baton != "" {
			bt = baton
		}
		b, _ := json.Marshal(map[string]any{"baton": bt, "requests": []any{map[string]any{"type": "execute", "stmt": map[string]any{"sql": sql}}}})
		status, out := post(t, url, "application/json", "", b)
		var resp struct {
			Baton   *string `json:"baton"`
			Results []struct {
				Type  string `json:"type"`
				Error *struct {
					Message string `json:"message"`
					Code    string `json:"code"`
				} `json:"error"`
			} `json:"results"`
		}
		json.Unmarshal(out, &resp)
		next, failed := "", ""
		if resp.Baton != nil {
			next = *resp.Baton
		}
		for _, r := range resp.Results {
			if r.Type == "error" && r.Error != nil {
				failed = r.Error.Code + ": " + r.Error.Message
			}
		}
		if status != http.StatusOK && failed == "" {
			failed = string(out)
		}
		return status, next, failed
	}
	_, baton, failed := send("", "BEGIN")
	if failed != "" || baton == "" {
		t.Fatalf("BEGIN: %s (baton %q)", failed, baton)
	}
	_, baton, failed = send(baton, "INSERT INTO t VALUES (1)")
	if failed != "" || baton == "" {
		t.Fatalf("first insert: %s", failed)
	}

	// Every store session of the node ends: its lock session too, so it
	// loses its leases; the next write takes the lease again, a new epoch.
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, tc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the node to lose its lease", func() bool { return n.metricValue(t, "syncdb_leases_held") == 0 })
	// The other node writes (a new epoch) and goes away (its lease free).
	other := tc.nodes[1]
	other.exec(t, "", "INSERT INTO t VALUES (3)")
	other.stop(t)

	_, baton, failed = send(baton, "INSERT INTO t VALUES (2)")
	t.Logf("second insert, after the lease changed: %q", failed)
	commitFailed := "no baton"
	if baton != "" {
		_, _, commitFailed = send(baton, "COMMIT")
	}
	t.Logf("COMMIT: %q", commitFailed)
	testutil.Eventually(t, 30*time.Second, "the node to write again", func() bool {
		_, _, f := send("", "SELECT 1")
		return f == ""
	})
	if got := fmtRows(n.query(t, "", "SELECT count(*) FROM t WHERE x <> 3")); got != "0\n" {
		t.Fatalf("a part of the lost transaction committed: %s rows", strings.TrimSpace(got))
	}
	if failed == "" {
		t.Fatal("the request after the transaction was lost succeeded")
	}
}
