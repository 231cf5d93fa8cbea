package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// A statement the sandbox refuses is SQLITE_AUTH with a message naming
// what was refused, whatever code SQLite reported: a denied function comes
// back from SQLite as SQLITE_ERROR ("not authorized to use function: X"),
// a denied read or attach as SQLITE_AUTH. A plain error right after a
// refusal, in the same batch, stays what it is. A refused query selector
// is a 400 that names it.
func TestRefusalsByTheSandboxsRecord(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	cases := []struct{ sql, code, names string }{
		{"SELECT load_extension('x')", "SQLITE_AUTH", "load_extension"},        // SQLite: SQLITE_ERROR
		{"SELECT count(*) FROM nope", "SQLITE_UNKNOWN", "no such table: nope"}, // after a refusal: not one
		{"SELECT * FROM sqlite_dbpage", "SQLITE_AUTH", "sqlite_dbpage"},        // SQLite: SQLITE_AUTH
		{"INSERT INTO t VALUES(1, load_extension('y'))", "SQLITE_AUTH", "load_extension"},
		{"SELECT nosuchfunction(1)", "SQL_INPUT_ERROR", "no such function"},
	}
	steps := make([]hrana.BatchStep, len(cases))
	for i, c := range cases {
		steps[i] = step(c.sql, nil)
	}
	resp := ts.pipeline(t, "", "", batch(steps...)) // fails unless the status is 200
	if r := resp.Results[0]; r.Type != hrana.ResultOK {
		t.Fatalf("batch failed: %v", r.Error)
	}
	errs := resp.Results[0].Response.BatchResult.StepErrors
	for i, c := range cases {
		e := errs[i]
		if e == nil {
			t.Errorf("%s: no error", c.sql)
			continue
		}
		refused := strings.Contains(e.Message, ErrRefused.Error())
		if e.Code != c.code || !strings.Contains(e.Message, c.names) || refused != (c.code == "SQLITE_AUTH") {
			t.Errorf("%s: %s %q, want %s naming %q", c.sql, e.Code, e.Message, c.code, c.names)
		}
	}
	for _, q := range []string{"SELECT load_extension('x')", "SELECT * FROM sqlite_dbpage"} {
		status, body := ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: q})
		if status != http.StatusBadRequest || !strings.Contains(string(body), ErrRefused.Error()) {
			t.Errorf("selector %q: %d %s, want 400 naming the refusal", q, status, body)
		}
	}
}
