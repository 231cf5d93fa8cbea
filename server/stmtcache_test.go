package server

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
)

// cacheSteps runs stmts as one batch (each step unconditional, so all run
// in one request, on one executor and its statement cache) and returns
// each step's column names, or its error.
func cacheSteps(t *testing.T, ts *testServer, db string, stmts ...hrana.BatchStep) []string {
	t.Helper()
	resp := ts.pipeline(t, db, "", batch(stmts...))
	if resp.Results[0].Type != hrana.ResultOK {
		t.Fatalf("batch: %+v", resp.Results[0].Error)
	}
	br := resp.Results[0].Response.BatchResult
	out := make([]string, len(stmts))
	for i := range stmts {
		if e := br.StepErrors[i]; e != nil {
			out[i] = "error: " + e.Message
			continue
		}
		var cols []string
		for _, c := range br.StepResults[i].Cols {
			cols = append(cols, *c.Name)
		}
		out[i] = strings.Join(cols, ",") + " " + fmtRows(br.StepResults[i].Rows)
	}
	return out
}

// A statement run again after the schema changed in the same request
// sees the new schema: its columns (read before it is stepped, so
// SQLite's own recompiling would come too late for them), a dropped
// table, a table made again, a schema change a ROLLBACK undid.
func TestStmtCacheSchemaChanges(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(a)", "INSERT INTO t VALUES(1)")
	sel := "SELECT * FROM t"
	got := cacheSteps(t, ts, "",
		step(sel, nil),
		step("ALTER TABLE t ADD COLUMN b DEFAULT 2", nil),
		step(sel, nil),
		step("DROP TABLE t", nil),
		step(sel, nil),
		step("CREATE TABLE t(x, y, z)", nil),
		step("INSERT INTO t VALUES(7, 8, 9)", nil),
		step(sel, nil),
		step("BEGIN", nil),
		step("ALTER TABLE t ADD COLUMN w", nil),
		step(sel, nil),
		step("ROLLBACK", nil),
		step(sel, nil),
	)
	want := map[int]string{
		0:  "a 1\n",
		2:  "a,b 1|2\n",
		4:  "error: SQLite error: no such table: t",
		7:  "x,y,z 7|8|9\n",
		10: "x,y,z,w 7|8|9|<nil>\n",
		12: "x,y,z 7|8|9\n",
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("step %d (%s): got %q, want %q", i, sel, got[i], w)
		}
	}
	// A sequence (any statements) empties the cache too.
	resp := ts.pipeline(t, "", "",
		execReq(sel),
		hrana.StreamRequest{Type: hrana.ReqSequence, SQL: str("ALTER TABLE t ADD COLUMN v DEFAULT 3")},
		execReq(sel))
	if r := resp.Results[2]; r.Type != hrana.ResultOK || len(r.Response.StmtResult.Cols) != 4 {
		t.Errorf("after a sequence's ALTER TABLE: %+v", r.Response)
	}
}

// A cached statement run with fewer arguments than the last time sees
// NULL for the others, as a statement compiled anew does.
func TestStmtCacheBindingsCleared(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(a, b)")
	ins := "INSERT INTO t VALUES(?, ?)"
	cacheSteps(t, ts, "",
		step(ins, nil, hrana.Value{V: int64(1)}, hrana.Value{V: "one"}),
		step(ins, nil, hrana.Value{V: int64(2)}))
	if got := fmtRows(ts.query(t, "", "SELECT a, b FROM t ORDER BY a")); got != "1|one\n2|<nil>\n" {
		t.Fatalf("rows: %q, want the second row's b NULL", got)
	}
}

// A statement compiled outside a READONLY transaction is not reused inside
// one: the sandbox refuses writes there when it compiles them.
func TestStmtCacheReadonlyTransaction(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(a)")
	ins := "INSERT INTO t VALUES(1)"
	got := cacheSteps(t, ts, "",
		step(ins, nil),
		step("BEGIN TRANSACTION READONLY", nil),
		step(ins, nil),
		step("COMMIT", nil),
		step(ins, nil))
	if !strings.Contains(got[2], "readonly") {
		t.Errorf("insert in the READONLY transaction: %q, want it refused", got[2])
	}
	if c := count(t, ts, "", "t"); c != "2\n" {
		t.Errorf("rows: %q, want 2", c)
	}
}

// The same SQL text in requests to two databases runs on each one's
// schema: nothing is kept between requests.
func TestStmtCacheTwoDatabases(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "a", "CREATE TABLE t(a)", "INSERT INTO t VALUES(1)")
	ts.exec(t, "b", "CREATE TABLE t(x, y)", "INSERT INTO t VALUES(2, 3)")
	sel := "SELECT * FROM t"
	for range 2 {
		if got := cacheSteps(t, ts, "a", step(sel, nil), step(sel, nil)); got[1] != "a 1\n" {
			t.Errorf("a: %q", got)
		}
		if got := cacheSteps(t, ts, "b", step(sel, nil), step(sel, nil)); got[1] != "x,y 2|3\n" {
			t.Errorf("b: %q", got)
		}
	}
}

// The cache holds at most stmtCacheSize statements, finalizing the least
// recently used; texts longer than stmtCacheMaxSQL are not kept.
func TestStmtCacheBound(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = sqlitex.Raw(context.Background(), conn, func(c *sqlitex.Conn) error {
		ex := &executor{c: c, ctx: context.Background()}
		var first *sqlitex.Stmt
		for i := range stmtCacheSize + 10 {
			st, done, herr := ex.stmt(fmt.Sprintf("SELECT %d AS v", i))
			if herr != nil {
				return herr
			}
			if i == 0 {
				first = st
			}
			done(true)
		}
		if n := ex.stmts.lru.Len(); n != stmtCacheSize {
			t.Errorf("%d statements cached, want %d", n, stmtCacheSize)
		}
		if first.ColumnCount() != 0 {
			t.Errorf("the least recently used statement was not finalized")
		}
		if _, ok := ex.stmts.get("SELECT 0 AS v"); ok {
			t.Errorf("the least recently used statement is still cached")
		}
		long := "SELECT 1 AS v" + strings.Repeat(" ", stmtCacheMaxSQL)
		_, done, herr := ex.stmt(long)
		if herr != nil {
			return herr
		}
		done(true)
		if _, ok := ex.stmts.get(long); ok {
			t.Errorf("a text of %d bytes was cached", len(long))
		}
		ex.closeStmts()
		if n := ex.stmts.lru.Len(); n != 0 {
			t.Errorf("%d statements left after closeStmts", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A statement kept prepared inside a transaction that a failing statement
// rolled back (INSERT OR ROLLBACK, a trigger's RAISE(ROLLBACK)) is not
// reused: the rollback undid the transaction's schema changes, and the
// statement's columns, read before it is stepped, would be the undone
// ones.
func TestStmtCacheRollbackUndidSchema(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(a)", "INSERT INTO t VALUES(1)", "CREATE TABLE k(x UNIQUE)", "INSERT INTO k VALUES(1)",
		"CREATE TABLE g(x)", "CREATE TRIGGER g_no BEFORE INSERT ON g BEGIN SELECT RAISE(ROLLBACK, 'no'); END")
	sel, ret := "SELECT * FROM t", "INSERT INTO t(a) VALUES(5) RETURNING *"
	got := cacheSteps(t, ts, "",
		step("BEGIN", nil),
		step("ALTER TABLE t ADD COLUMN b DEFAULT 2", nil),
		step(sel, nil),
		step("INSERT OR ROLLBACK INTO k VALUES(1)", nil),
		step(sel, nil),
		step("BEGIN", nil),
		step("ALTER TABLE t ADD COLUMN c DEFAULT 3", nil),
		step(sel, nil),
		step(ret, nil),
		step("INSERT INTO g VALUES(1)", nil),
		step(sel, nil),
		step(ret, nil),
	)
	want := map[int]string{
		2:  "a,b 1|2\n",
		3:  "error: SQLite error: UNIQUE constraint failed: k.x",
		4:  "a 1\n",
		7:  "a,c 1|3\n",
		8:  "a,c 5|3\n",
		9:  "error: SQLite error: no",
		10: "a 1\n",
		11: "a 5\n",
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("step %d: got %q, want %q", i, got[i], w)
		}
	}
}

// A transaction that commits keeps the request's statements prepared: the
// schema they were compiled with is the one the commit keeps (only a
// rollback undoes DDL, and DDL empties the cache anyway). Ten push-like
// transactions in one pipeline compile their four texts once, not once
// per transaction; fifty SAVEPOINT/INSERT/RELEASE in one batch their
// three.
func TestStmtCacheKeptAcrossCommits(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
	var reqs []hrana.StreamRequest
	for tx := range 10 {
		steps := []hrana.BatchStep{step("BEGIN IMMEDIATE", nil)}
		for i := range 100 {
			id := hrana.Value{V: int64(tx*100 + i)}
			steps = append(steps,
				step("SELECT 1 FROM t WHERE id = ?", notAutocommit, id),
				step("INSERT INTO t VALUES(?, ?)", notAutocommit, id, text("x")))
		}
		reqs = append(reqs, batch(append(steps, step("COMMIT", notAutocommit))...))
	}
	before := compiles.Load()
	resp := ts.pipeline(t, "", "", reqs...)
	n := compiles.Load() - before
	for i, r := range resp.Results {
		if r.Type != hrana.ResultOK {
			t.Fatalf("transaction %d: %+v", i, r.Error)
		}
		for j, e := range r.Response.BatchResult.StepErrors {
			if e != nil {
				t.Fatalf("transaction %d, step %d: %s", i, j, e.Message)
			}
		}
	}
	if c := count(t, ts, "", "t"); c != "1000\n" {
		t.Fatalf("rows after the transactions: %q, want 1000", c)
	}
	if n != 4 {
		t.Errorf("10 transactions of 100 changes, one pipeline: %d statements compiled, want 4", n)
	}

	var steps []hrana.BatchStep
	for i := range 50 {
		steps = append(steps, step("SAVEPOINT s", nil), step("INSERT INTO t(v) VALUES(?)", nil, hrana.Value{V: int64(i)}), step("RELEASE s", nil))
	}
	before = compiles.Load()
	got := cacheSteps(t, ts, "", steps...)
	n = compiles.Load() - before
	for i, g := range got {
		if strings.HasPrefix(g, "error") {
			t.Fatalf("step %d: %s", i, g)
		}
	}
	if c := count(t, ts, "", "t"); c != "1050\n" {
		t.Fatalf("rows after the savepoints: %q, want 1050", c)
	}
	if n != 3 {
		t.Errorf("50 SAVEPOINT/INSERT/RELEASE, one batch: %d statements compiled, want 3", n)
	}
}

// txEnded's rule, on an executor of its own: a transaction that a COMMIT,
// END or RELEASE ended without an error keeps the cache; one that ended
// otherwise (a COMMIT that failed, any other statement) empties it.
func TestStmtCacheTxEnded(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = sqlitex.Raw(context.Background(), conn, func(c *sqlitex.Conn) error {
		ex := &executor{c: c, ctx: context.Background()}
		defer ex.closeStmts()
		// run runs sql after begin, ends the transaction with end if
		// sql does not, and calls done(ok).
		run := func(begin, sql, end string, ok bool) {
			if err := c.Exec(begin); err != nil {
				t.Fatal(err)
			}
			st, done, herr := ex.stmt(sql)
			if herr != nil {
				t.Fatal(herr)
			}
			if _, err := st.Step(); err != nil {
				t.Fatal(err)
			}
			if end != "" {
				if err := c.Exec(end); err != nil {
					t.Fatal(err)
				}
			}
			done(ok)
		}
		for _, c := range []struct {
			begin, sql, end string
			ok, kept        bool
		}{
			{"BEGIN", "COMMIT", "", true, true},
			{"BEGIN", "END TRANSACTION", "", true, true},
			{"SAVEPOINT s", "RELEASE s", "", true, true},
			{"BEGIN", "COMMIT", "", false, false}, // as if it failed and rolled back
			{"SAVEPOINT s", "RELEASE s", "", false, false},
			{"BEGIN", "SELECT 2", "ROLLBACK", true, false},
			{"BEGIN", "SELECT 2", "COMMIT", true, false},
		} {
			_, done, herr := ex.stmt("SELECT 1")
			if herr != nil {
				return herr
			}
			done(true)
			run(c.begin, c.sql, c.end, c.ok)
			if _, kept := ex.stmts.get("SELECT 1"); kept != c.kept {
				t.Errorf("%s; %s; %s, ok %v: the cache kept its statements: %v, want %v", c.begin, c.sql, c.end, c.ok, kept, c.kept)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A reader connection compiles a statement with the schema it last read,
// and SQLite checks that schema only when the statement is stepped: a
// read after another connection's schema change (a push's ALTER TABLE)
// must still report the table's columns as they are now, compiled afresh
// or kept from the request's earlier steps.
func TestReaderSchemaChanges(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE s(a)", "INSERT INTO s VALUES(1)")
	sel := "SELECT * FROM s"
	cols, row := "a", "1"
	for i := range 3 {
		// Reads only: a reader runs them (and reads the schema).
		for range 3 {
			if got := cacheSteps(t, ts, "", step(sel, nil), step(sel, nil)); got[0] != cols+" "+row+"\n" || got[1] != got[0] {
				t.Fatalf("round %d, before the ALTER: %q, want %s %s", i, got, cols, row)
			}
		}
		ts.exec(t, "", fmt.Sprintf("ALTER TABLE s ADD COLUMN c%d DEFAULT %d", i, i))
		cols, row = cols+fmt.Sprintf(",c%d", i), row+fmt.Sprintf("|%d", i)
		for range 3 {
			if got := cacheSteps(t, ts, "", step(sel, nil), step(sel, nil)); got[0] != cols+" "+row+"\n" || got[1] != got[0] {
				t.Errorf("round %d, after the ALTER: %q, want %s %s", i, got, cols, row)
			}
		}
		// A describe (not stepped) after the next ALTER.
		ts.exec(t, "", fmt.Sprintf("ALTER TABLE s ADD COLUMN d%d", i))
		cols, row = cols+fmt.Sprintf(",d%d", i), row+"|<nil>"
		for range 3 {
			r := ts.pipeline(t, "", "", hrana.StreamRequest{Type: hrana.ReqDescribe, SQL: str(sel)}).Results[0]
			if r.Type != hrana.ResultOK {
				t.Fatalf("describe: %+v", r.Error)
			}
			var names []string
			for _, c := range r.Response.DescribeResult.Cols {
				names = append(names, c.Name)
			}
			if got := strings.Join(names, ","); got != cols {
				t.Errorf("round %d, describe after the ALTER: %s, want %s", i, got, cols)
			}
		}
	}

	// Between two steps of one cursor on a reader, kept prepared from the
	// first: the cursor waits for its client in the middle of the second
	// step while a push adds a column.
	bigDatabase(t, ts, 4) // more rows than a cursor buffers
	d, err := ts.database(t.Context(), "default", false)
	if err != nil {
		t.Fatal(err)
	}
	w := dialWS(t, ts.url, "hrana3")
	w.c.SetReadLimit(64 << 20)
	w.write(map[string]any{"type": "hello"})
	if m := w.read(); m["type"] != "hello_ok" {
		t.Fatalf("hello: %v", m)
	}
	if m := w.req(map[string]any{"type": "open_stream", "stream_id": 1}); m["type"] != "response_ok" {
		t.Fatalf("open_stream: %v", m)
	}
	if m := w.req(map[string]any{"type": "open_cursor", "stream_id": 1, "cursor_id": 1, "batch": map[string]any{"steps": []any{
		map[string]any{"stmt": stmt(sel)}, map[string]any{"stmt": stmt("SELECT id, v FROM t")}, map[string]any{"stmt": stmt(sel)},
	}}}); m["type"] != "response_ok" {
		t.Fatalf("open_cursor: %v", m)
	}
	var entries []map[string]any
	done := false
	fetch := func() {
		m := w.req(map[string]any{"type": "fetch_cursor", "cursor_id": 1, "max_count": 2})
		resp, _ := m["response"].(map[string]any)
		if m["type"] != "response_ok" || resp == nil {
			t.Fatalf("fetch_cursor: %v", m)
		}
		done, _ = resp["done"].(bool)
		es, _ := resp["entries"].([]any)
		for _, e := range es {
			entries = append(entries, e.(map[string]any))
		}
	}
	// Step 0, and the second step's first row: the cursor is inside it.
	for len(entries) < 5 && !done {
		fetch()
	}
	if len(entries) < 5 || entries[3]["type"] != "step_begin" || entries[3]["step"] != float64(1) || entries[4]["type"] != "row" {
		t.Fatalf("the cursor's first entries: %v", entries)
	}
	if len(d.cursorSlots) != 1 {
		t.Fatalf("the cursor is not on a reader (%d cursor slots held)", len(d.cursorSlots))
	}
	ts.exec(t, "", "ALTER TABLE s ADD COLUMN late DEFAULT 'x'")
	for !done {
		fetch()
	}
	var names []string
	values := -1
	for i, e := range entries {
		if e["type"] == "step_begin" && e["step"] == float64(2) {
			for _, c := range e["cols"].([]any) {
				names = append(names, c.(map[string]any)["name"].(string))
			}
			if i+1 < len(entries) && entries[i+1]["type"] == "row" {
				values = len(entries[i+1]["row"].([]any))
			}
		}
	}
	if got, want := strings.Join(names, ","), cols+",late"; got != want || values != len(names) {
		t.Errorf("step 2 after the ALTER between steps: columns %s and %d values in its row, want %s and a value for each", got, values, want)
	}
}

// cursorEntries runs steps as an HTTP cursor and returns its entries,
// each as "step_begin STEP COLS", "row", "step_end", "step_error STEP
// MESSAGE" or "TYPE STEP".
func cursorEntries(t *testing.T, ts *testServer, steps ...hrana.BatchStep) []string {
	t.Helper()
	body, err := json.Marshal(hrana.CursorReqBody{Batch: hrana.Batch{Steps: steps}})
	if err != nil {
		t.Fatal(err)
	}
	status, out := post(t, ts.url+"/v3/cursor", "application/json", "", body)
	if status != http.StatusOK {
		t.Fatalf("cursor: %d %s", status, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Scan() // the header
	var entries []string
	for sc.Scan() {
		var e hrana.CursorEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("entry %q: %v", sc.Bytes(), err)
		}
		switch e.Type {
		case hrana.EntryStepBegin:
			var cols []string
			for _, c := range e.Cols {
				cols = append(cols, *c.Name)
			}
			entries = append(entries, fmt.Sprintf("%s %d %s", e.Type, e.Step, strings.Join(cols, ",")))
		case hrana.EntryRow, hrana.EntryStepEnd: // step_end has no step
			entries = append(entries, e.Type)
		case hrana.EntryStepError:
			entries = append(entries, fmt.Sprintf("%s %d %s", e.Type, e.Step, e.Error.Message))
		default:
			entries = append(entries, fmt.Sprintf("%s %d", e.Type, e.Step))
		}
	}
	return entries
}

// A read's columns are read after its first step (runStmt): a read
// without rows reports them all the same, and a read that fails in its
// first step has them too; a cursor sends its step_begin, then the
// step_error. On a reader (no transaction) and on the writer (inside one).
func TestCursorReadColumnsAfterFirstStep(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(a, b)", "INSERT INTO t VALUES(1, 2)")
	empty, fails, one := "SELECT a, b FROM t WHERE a > 5", "SELECT abs(-9223372036854775807 - 1) AS x FROM t", "SELECT b FROM t"
	overflow := "SQLite error: integer overflow"

	// execute, batch
	resp := ts.pipeline(t, "", "", execReq(empty), execReq(fails))
	if r := resp.Results[0]; r.Type != hrana.ResultOK {
		t.Errorf("execute %s: %+v", empty, r.Error)
	} else if res := r.Response.StmtResult; len(res.Cols) != 2 || *res.Cols[0].Name != "a" || *res.Cols[1].Name != "b" || len(res.Rows) != 0 {
		t.Errorf("execute %s: %d columns, %d rows, want a,b and none", empty, len(res.Cols), len(res.Rows))
	}
	if r := resp.Results[1]; r.Type != hrana.ResultError || r.Error.Message != overflow {
		t.Errorf("execute %s: %+v, want %q", fails, r, overflow)
	}
	for _, tx := range []bool{false, true} {
		steps := []hrana.BatchStep{step(empty, nil), step(fails, nil), step(one, nil)}
		if tx {
			steps = append([]hrana.BatchStep{step("BEGIN", nil)}, append(steps, step("COMMIT", nil))...)
		}
		got := cacheSteps(t, ts, "", steps...)
		if tx {
			got = got[1 : len(got)-1]
		}
		if want := []string{"a,b ", "error: " + overflow, "b 2\n"}; !reflect.DeepEqual(got, want) {
			t.Errorf("batch, in a transaction %v: %q, want %q", tx, got, want)
		}

		// cursor
		entries := cursorEntries(t, ts, steps...)
		want := []string{"step_begin 0 a,b", "step_end", "step_begin 1 x", "step_error 1 " + overflow, "step_begin 2 b", "row", "step_end"}
		if tx {
			want = []string{"step_begin 0 ", "step_end", "step_begin 1 a,b", "step_end", "step_begin 2 x", "step_error 2 " + overflow,
				"step_begin 3 b", "row", "step_end", "step_begin 4 ", "step_end"}
		}
		if !reflect.DeepEqual(entries, want) {
			t.Errorf("cursor, in a transaction %v:\n got %q\nwant %q", tx, entries, want)
		}
	}
}
