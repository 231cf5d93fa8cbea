package server

// The security suite: one test per attack class of issue 9, each written
// as the attack was tried against the server, asserting that it now fails
// and leaves everything else intact.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// pullAs sends a pull with token and returns the status and the body.
func (ts *testServer) pullAs(t *testing.T, db, token string, req *syncpb.PullUpdatesReqProtoBody) (int, []byte) {
	t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return post(t, ts.dbURL(db)+"/pull-updates", "application/protobuf", token, body)
}

// stepErrors runs stmts as one unconditional batch and returns each step's
// error message ("" for success).
func (ts *testServer) stepErrors(t *testing.T, db, token string, stmts ...string) []string {
	t.Helper()
	steps := make([]hrana.BatchStep, len(stmts))
	for i := range stmts {
		steps[i] = step(stmts[i], nil)
	}
	resp := ts.pipeline(t, db, token, batch(steps...))
	if r := resp.Results[0]; r.Type != hrana.ResultOK {
		t.Fatalf("batch failed: %v", r.Error)
	}
	out := make([]string, len(stmts))
	for i, e := range resp.Results[0].Response.BatchResult.StepErrors {
		if e != nil {
			out[i] = e.Message
			if out[i] == "" {
				out[i] = "(error without a message)"
			}
		}
	}
	return out
}

// noServerPaths fails if msg shows the data directory.
func noServerPaths(t *testing.T, ts *testServer, what, msg string) {
	t.Helper()
	dir, _ := filepath.Abs(ts.dir)
	if strings.Contains(msg, dir) || strings.Contains(msg, ts.dir) {
		t.Errorf("%s shows a server path: %s", what, msg)
	}
}

// filesUnder lists the regular files under dir with their sizes.
func filesUnder(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			out[p] = fi.Size()
		}
		return nil
	})
	return out
}

// healthy checks database db end to end: a snapshot is a valid database
// holding rows rows in t, and the history file passes its integrity check.
func (ts *testServer) healthy(t *testing.T, db string, rows int64) {
	t.Helper()
	p := ts.pull(t, db, &syncpb.PullUpdatesReqProtoBody{})
	im := image{}
	im.apply(p)
	sdb := openImage(t, im.write(t, p.hdr.DbSize))
	integrityOK(t, sdb)
	if n, _ := countRows(t, sdb); n != rows {
		t.Fatalf("database %q has %d rows, want %d", db, n, rows)
	}
	name := db
	if name == "" {
		name = "default"
	}
	h := openImage(t, filepath.Join(ts.dir, name, historyFile))
	integrityOK(t, h)
}

// Attack: a read token's query selector creates, writes and reads files
// anywhere (ATTACH of a URI with vfs=unix, PRAGMA query_only=0, several
// statements in one string), including another database's history.
func TestSecuritySelectorCannotTouchFiles(t *testing.T) {
	ts := newTestServer(t, Config{AuthTokens: []string{"rw"}, ReadTokens: []string{"ro"}})
	ts.token = "rw"
	for _, db := range []string{"", "other"} {
		ts.pipeline(t, db, "rw", batch(step("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", nil), step("INSERT INTO t VALUES(1, 'a'), (2, 'b')", nil)))
	}
	outside := t.TempDir()
	evil := filepath.Join(outside, "evil.db")
	otherHist := filepath.Join(ts.dir, "other", historyFile)
	before := filesUnder(t, ts.dir)
	for _, q := range []string{
		fmt.Sprintf("ATTACH 'file:%s?vfs=unix' AS x", evil),
		fmt.Sprintf("ATTACH 'file:%s?vfs=unix' AS x; CREATE TABLE x.e(a); INSERT INTO x.e VALUES(1)", evil),
		fmt.Sprintf("SELECT 1; ATTACH '%s' AS x", evil),
		fmt.Sprintf("ATTACH 'file:%s?vfs=unix' AS h; DELETE FROM h.pages", otherHist),
		fmt.Sprintf("ATTACH 'file:%s?vfs=unix' AS h; UPDATE h.pages SET data = zeroblob(4096)", otherHist),
		"PRAGMA query_only=0",
		"PRAGMA query_only=0; CREATE TABLE x(a)",
		"SELECT 1; SELECT 2",
		"SELECT * FROM pragma_database_list",
		"SELECT * FROM sqlite_dbpage",
		"VACUUM INTO '" + evil + "'",
		"DELETE FROM t",
		"PRAGMA table_info(t)",
	} {
		for _, tok := range []string{"ro", "rw"} {
			status, body := ts.pullAs(t, "", tok, &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: q})
			if status != http.StatusBadRequest {
				t.Errorf("selector %q (token %s): %d, want 400", q, tok, status)
			}
			noServerPaths(t, ts, "selector error", string(body))
		}
	}
	if _, err := os.Stat(evil); err == nil {
		t.Errorf("a selector created %s", evil)
	}
	if after := filesUnder(t, ts.dir); len(after) != len(before) {
		t.Errorf("files in the data directory changed: %v -> %v", before, after)
	}
	// A refusal names what was refused.
	_, body := ts.pullAs(t, "", "ro", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: "ATTACH 'x.db' AS x"})
	if !strings.Contains(string(body), "ATTACH") {
		t.Errorf("refusal does not name ATTACH: %s", body)
	}
	// Both databases are intact, and a real selector still works.
	ts.healthy(t, "", 2)
	ts.healthy(t, "other", 2)
	status, body := ts.pullAs(t, "", "ro", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: "SELECT * FROM t WHERE id = 1"})
	if status != http.StatusOK {
		t.Fatalf("a plain selector: %d %s", status, body)
	}
}

// Attack: a full token reaches the host's files through the pipeline:
// ATTACH, VACUUM INTO any path, reading other databases' files.
func TestSecurityPipelineCannotTouchFiles(t *testing.T) {
	ts := newTestServer(t, Config{})
	for _, db := range []string{"", "other"} {
		ts.exec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(1, 'secret of "+db+"')")
	}
	outside := t.TempDir()
	evil := filepath.Join(outside, "evil.db")
	other := filepath.Join(ts.dir, "other", mainFile)
	before := filesUnder(t, ts.dir)
	attacks := []string{
		fmt.Sprintf("ATTACH '%s' AS o", other),
		fmt.Sprintf("ATTACH 'file:%s?vfs=unix&mode=ro' AS o", other),
		fmt.Sprintf("ATTACH 'file:%s?vfs=unix' AS e", evil),
		"VACUUM INTO '" + evil + "'",
		"VACUUM",
		"DETACH main",
		"SELECT load_extension('/tmp/x')",
		"SELECT * FROM sqlite_dbpage",
		"INSERT INTO sqlite_dbpage VALUES(1, zeroblob(4096))",
		"CREATE VIRTUAL TABLE temp.pg USING sqlite_dbpage",
		"SELECT file FROM pragma_database_list",
		"PRAGMA database_list",
	}
	errs := ts.stepErrors(t, "", "", attacks...)
	for i, msg := range errs {
		if msg == "" {
			t.Errorf("%q was allowed", attacks[i])
			continue
		}
		if !strings.Contains(msg, "not allowed") && !strings.Contains(msg, "not authorized") {
			t.Errorf("%q: refused without saying so: %s", attacks[i], msg)
		}
		noServerPaths(t, ts, attacks[i], msg)
	}
	if _, err := os.Stat(evil); err == nil {
		t.Errorf("the pipeline created %s", evil)
	}
	if after := filesUnder(t, ts.dir); len(after) != len(before) {
		t.Errorf("files in the data directory changed: %v -> %v", before, after)
	}
	// Refusals name the operation.
	for sql, word := range map[string]string{"VACUUM": "VACUUM", "ATTACH 'x' AS x": "ATTACH", "PRAGMA synchronous=OFF": "synchronous"} {
		if msg := ts.stepErrors(t, "", "", sql)[0]; !strings.Contains(msg, word) {
			t.Errorf("%s: the refusal does not name %s: %s", sql, word, msg)
		}
	}
	// What ORMs and migration tools send still works.
	ok := []string{
		"PRAGMA table_info(t)", "SELECT * FROM pragma_table_xinfo('t')", "PRAGMA index_list(t)",
		"PRAGMA foreign_key_list(t)", "PRAGMA foreign_keys = ON", "PRAGMA foreign_keys", "PRAGMA user_version = 7",
		"PRAGMA user_version", "PRAGMA integrity_check", "PRAGMA defer_foreign_keys = 1", "PRAGMA table_list",
		"CREATE VIRTUAL TABLE docs USING fts5(body)", "CREATE TEMP TABLE scratch(a)", "SAVEPOINT s", "RELEASE s",
		"ANALYZE", "CREATE INDEX t_v ON t(v)", "ALTER TABLE t ADD COLUMN w", "PRAGMA schema_version",
	}
	for i, msg := range ts.stepErrors(t, "", "", ok...) {
		if msg != "" {
			t.Errorf("%q was refused: %s", ok[i], msg)
		}
	}
	ts.healthy(t, "", 1)
	ts.healthy(t, "other", 1)
}

// Attack: one pipeline breaks the page history: checkpoints, automatic
// checkpoints, another journal mode, a new page size. Afterwards every
// acknowledged commit must be in every pull, two bootstraps of one
// revision must agree, and the database must open after a restart.
func TestSecurityHistoryCannotBeBroken(t *testing.T) {
	for _, attack := range [][]string{
		{"PRAGMA wal_checkpoint(TRUNCATE)"},
		{"PRAGMA wal_autocheckpoint=1"},
		{"PRAGMA journal_mode=DELETE"},
		{"PRAGMA page_size=8192", "VACUUM"},
		{"PRAGMA journal_mode=DELETE", "PRAGMA page_size=8192", "VACUUM", "PRAGMA journal_mode=WAL"},
		{"PRAGMA locking_mode=EXCLUSIVE", "PRAGMA journal_mode=MEMORY"},
		{"PRAGMA writable_schema=ON", "UPDATE sqlite_master SET sql = 'CREATE TABLE t(x)' WHERE name = 't'"},
		{"PRAGMA schema_version = 1"},
	} {
		t.Run(strings.Join(attack, ";"), func(t *testing.T) {
			dir := t.TempDir()
			ts := newTestServer(t, Config{DataDir: dir})
			// u is written only before the attack and w only in the
			// next request: a commit the history misses is not repaired
			// by a later commit of the same pages.
			ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT)")
			base := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
			acked, ackedU := 0, 0
			stmts := []string{"INSERT INTO u(v) VALUES('before')"}
			stmts = append(stmts, attack...)
			stmts = append(stmts, "INSERT INTO t(v) VALUES('after')")
			for i, msg := range ts.stepErrors(t, "", "", stmts...) {
				switch {
				case msg != "":
				case strings.HasPrefix(stmts[i], "INSERT INTO u"):
					ackedU++
				case strings.HasPrefix(stmts[i], "INSERT"):
					acked++
				}
			}
			// A later request with two commits: a connection left
			// checkpointing on its own loses the first before it is
			// recorded.
			ts.exec(t, "", "INSERT INTO w(v) VALUES('next request')", "INSERT INTO t(v) VALUES('next request')")
			acked++

			// An incremental pull from before the attack gives the
			// snapshot, byte for byte, and holds every acknowledged row.
			snap := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
			inc := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: base.hdr.ServerRevision})
			im := image{}
			im.apply(base)
			im.apply(inc)
			full := image{}
			full.apply(snap)
			if inc.hdr.ServerRevision != snap.hdr.ServerRevision || inc.hdr.DbSize != snap.hdr.DbSize {
				t.Fatalf("incremental pull at %s (%d pages), snapshot at %s (%d pages)", inc.hdr.ServerRevision, inc.hdr.DbSize, snap.hdr.ServerRevision, snap.hdr.DbSize)
			}
			for pg := uint32(1); pg <= uint32(snap.hdr.DbSize); pg++ {
				if !bytes.Equal(im[pg], full[pg]) {
					t.Fatalf("page %d of the incremental pull differs from the snapshot", pg)
				}
			}
			sdb := openImage(t, full.write(t, snap.hdr.DbSize))
			integrityOK(t, sdb)
			var nu, nw int
			if err := sdb.QueryRow("SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM w)").Scan(&nu, &nw); err != nil {
				t.Fatal(err)
			}
			if n, _ := countRows(t, sdb); n != int64(acked) || nu != ackedU || nw != 1 {
				t.Fatalf("the pulled database has %d+%d+%d rows in t, u and w; %d+%d+1 were acknowledged", n, nu, nw, acked, ackedU)
			}
			// Two bootstraps of one revision agree, across a checkpoint.
			if err := ts.Maintain(context.Background()); err != nil {
				t.Fatal(err)
			}
			again := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ServerRevision: snap.hdr.ServerRevision})
			for pg := uint32(1); pg <= uint32(snap.hdr.DbSize); pg++ {
				if !bytes.Equal(again.pages[pg], snap.pages[pg]) {
					t.Fatalf("page %d of revision %s differs between two bootstraps", pg, snap.hdr.ServerRevision)
				}
			}
			// The server reopens the database.
			ts.BeginShutdown()
			if err := ts.Server.Close(); err != nil {
				t.Fatal(err)
			}
			ts2 := newTestServer(t, Config{DataDir: dir})
			if got := mustInt(t, ts2.query(t, "", "SELECT count(*) FROM t")[0][0]); got != int64(acked) {
				t.Fatalf("after a restart: %d rows, want %d", got, acked)
			}
			ts2.healthy(t, "", int64(acked))
		})
	}
}

// clientState describes the client connection's state as a client could
// observe or suffer it: settings, temporary objects, transaction,
// last_insert_rowid. It lifts the sandbox for the duration of the reading.
func clientState(t *testing.T, ts *testServer, db string) string {
	t.Helper()
	if db == "" {
		db = "default"
	}
	d, err := ts.database(context.Background(), db, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	_, err = d.session(context.Background(), func(c *sqlitex.Conn, sb *sandbox) error {
		if err := c.SetAuthorizer(nil); err != nil {
			return err
		}
		defer c.SetAuthorizer(sb.authorize)
		out = append(out, fmt.Sprintf("autocommit=%v", c.Autocommit()))
		for _, q := range []string{
			"PRAGMA synchronous", "PRAGMA query_only", "PRAGMA max_page_count", "PRAGMA locking_mode",
			"PRAGMA journal_mode", "PRAGMA wal_autocheckpoint", "PRAGMA foreign_keys", "PRAGMA defer_foreign_keys",
			"PRAGMA recursive_triggers", "PRAGMA cache_size", "PRAGMA temp_store", "PRAGMA busy_timeout",
			"PRAGMA reverse_unordered_selects", "PRAGMA ignore_check_constraints", "PRAGMA automatic_index",
			"PRAGMA secure_delete", "PRAGMA cell_size_check", "PRAGMA trusted_schema", "PRAGMA writable_schema",
			"PRAGMA legacy_alter_table", "PRAGMA journal_size_limit", "PRAGMA mmap_size",
			"SELECT count(*) FROM temp.sqlite_schema", "SELECT last_insert_rowid()",
		} {
			rows, err := c.Query(q)
			if err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			out = append(out, fmt.Sprintf("%s=%v", q, rows))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// Attack: connection state leaks between requests and clients. Whatever
// one request does to the connection, the next starts from the same state:
// no fsync removed, no temporary trigger spying on later writes, no
// setting that fails later writes or stalls bootstraps.
func TestSecurityConnectionStateIsReset(t *testing.T) {
	ts := newTestServer(t, Config{StreamIdleTimeout: time.Second})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE loot(v)")
	initial := clientState(t, ts, "")
	attacks := [][]string{
		{"PRAGMA synchronous=OFF"}, {"PRAGMA query_only=1"}, {"PRAGMA max_page_count=2"},
		{"PRAGMA locking_mode=EXCLUSIVE", "INSERT INTO t(v) VALUES('lock')"},
		{"PRAGMA cache_size=1"}, {"PRAGMA temp_store=MEMORY"}, {"PRAGMA busy_timeout=0"},
		{"PRAGMA recursive_triggers=1"}, {"PRAGMA foreign_keys=1"}, {"PRAGMA defer_foreign_keys=1"},
		{"PRAGMA reverse_unordered_selects=1"}, {"PRAGMA ignore_check_constraints=1"}, {"PRAGMA automatic_index=0"},
		{"PRAGMA secure_delete=1"}, {"PRAGMA cell_size_check=1"}, {"PRAGMA trusted_schema=0"},
		{"PRAGMA legacy_alter_table=1"}, {"PRAGMA journal_size_limit=1"}, {"PRAGMA mmap_size=1000000"},
		{"PRAGMA wal_autocheckpoint=1"}, {"PRAGMA journal_mode=MEMORY"},
		{"CREATE TEMP TABLE scratch(a)", "CREATE INDEX temp.scratch_a ON scratch(a)"},
		{"CREATE TEMP TRIGGER spy AFTER INSERT ON main.t BEGIN INSERT INTO loot VALUES(new.v); END"},
		{"CREATE TEMP VIEW peek AS SELECT * FROM t"},
		{"CREATE TEMP TABLE \"we\"\"ird\"(a)", "CREATE TEMP TRIGGER \"tr\"\"g\" AFTER INSERT ON \"we\"\"ird\" BEGIN SELECT 1; END"},
		{"BEGIN", "INSERT INTO t(v) VALUES('uncommitted')"},
		{"SAVEPOINT sp", "INSERT INTO t(v) VALUES('uncommitted')"},
		{"INSERT INTO t(v) VALUES('rowid')"},
	}
	for _, a := range attacks {
		ts.stepErrors(t, "", "", a...)
		if got := clientState(t, ts, ""); got != initial {
			t.Errorf("after %q the connection differs:\n%s\nwant\n%s", a, got, initial)
		}
	}
}

// The same attacks as a client sees them (HTTP only).
func TestSecurityStateLeaksReachNoClient(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: time.Second})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE loot(v)")
	ts.stepErrors(t, "", "", "CREATE TEMP TRIGGER spy AFTER INSERT ON main.t BEGIN INSERT INTO loot VALUES(new.v); END")
	ts.stepErrors(t, "", "", "PRAGMA query_only=1")
	ts.stepErrors(t, "", "", "PRAGMA max_page_count=2")
	ts.stepErrors(t, "", "", "PRAGMA locking_mode=EXCLUSIVE", "INSERT INTO t(v) VALUES('lock')")
	ts.stepErrors(t, "", "", "BEGIN", "INSERT INTO t(v) VALUES('uncommitted')")
	ts.exec(t, "", "INSERT INTO t(v) VALUES(zeroblob(20000))") // another client's write works...
	if n := mustInt(t, ts.query(t, "", "SELECT count(*) FROM loot")[0][0]); n != 0 {
		t.Errorf("a temporary trigger copied %d later writes", n)
	}
	if n := mustInt(t, ts.query(t, "", "SELECT count(*) FROM t WHERE v = 'uncommitted'")[0][0]); n != 0 {
		t.Errorf("an unfinished transaction committed")
	}
	if id := mustInt(t, ts.query(t, "", "SELECT last_insert_rowid()")[0][0]); id != 0 {
		t.Errorf("last_insert_rowid shows the previous request's row %d", id)
	}
	// ...and bootstraps are not stalled by a lock left behind.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.url+"/pull-updates", bytes.NewReader(nil))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("bootstrap after locking_mode=EXCLUSIVE: %v after %v", err, time.Since(start))
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bootstrap: %d", resp.StatusCode)
	}
}

// Attack: wrong answers. A pipeline whose writes committed must not get a
// 5xx (clients retry and duplicate); garbage after a statement is an
// error; error bodies never show server paths.
func TestSecurityHonestAnswers(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")

	// A value JSON cannot carry, after a committed write: 200, the write
	// once, the select an error.
	errs := ts.stepErrors(t, "", "", "INSERT INTO t(v) VALUES('kept')", "SELECT 1e999", "SELECT -1e999 AS x")
	if errs[0] != "" || errs[1] == "" || errs[2] == "" {
		t.Fatalf("step errors %q", errs)
	}
	// A write returning such a value fails and changes nothing, also in
	// autocommit mode.
	if errs := ts.stepErrors(t, "", "", "INSERT INTO t(v) VALUES('undone') RETURNING 1e999"); errs[0] == "" {
		t.Fatalf("RETURNING 1e999 succeeded")
	}
	if rows := fmtRows(ts.query(t, "", "SELECT v FROM t ORDER BY id")); rows != "kept\n" {
		t.Fatalf("rows: %q", rows)
	}

	// Garbage after a statement is an error, in execute and in the
	// query selector, and nothing runs.
	for _, sql := range []string{"select 1; this is not sql(", "INSERT INTO t(v) VALUES('no'); garbage"} {
		resp := ts.pipeline(t, "", "", hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: str(sql)}})
		if resp.Results[0].Type != hrana.ResultError {
			t.Errorf("%q ran: %+v", sql, resp.Results[0].Response)
		}
	}
	if status, body := ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: "SELECT 1; this is not sql("}); status != 400 {
		t.Errorf("selector with garbage: %d %s", status, body)
	}
	if n := mustInt(t, ts.query(t, "", "SELECT count(*) FROM t")[0][0]); n != 1 {
		t.Fatalf("%d rows", n)
	}

	// Server errors do not show paths.
	if err := os.WriteFile(filepath.Join(ts.dir, "broken"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/db/broken/pull-updates", "/db/broken/v2/pipeline"} {
		status, body := post(t, ts.url+path, "application/json", "", []byte(`{"requests":[]}`))
		if status < 500 {
			t.Errorf("%s: %d", path, status)
		}
		noServerPaths(t, ts, path, string(body))
	}
	if msg := ts.stepErrors(t, "", "", "SELECT file FROM pragma_database_list")[0]; msg == "" {
		t.Errorf("pragma_database_list is readable")
	}
}

// A full disk: a write that could not happen is a 507 saying so; once a
// request committed, it is a 200 whatever fails afterwards; while the
// history cannot record a commit, pulls get 503 instead of missing it.
func TestSecurityDiskFull(t *testing.T) {
	name, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := shimvfs.Record(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	var log lockedBuffer
	ts := newTestServer(t, Config{DataDir: dir, VFS: name, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES('before')")
	before := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision

	// The database's disk is full: nothing is written, and the client is
	// told so.
	rec.SetFull(func(path string) bool { return strings.HasSuffix(path, mainFile+"-wal") })
	body, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step("INSERT INTO t(v) VALUES('lost')", nil))}})
	status, out := post(t, ts.url+"/v2/pipeline", "application/json", "", body)
	if status != http.StatusInsufficientStorage || !strings.Contains(string(out), "nothing was written") {
		t.Fatalf("disk full: %d %s", status, out)
	}
	if !strings.Contains(log.String(), "disk is full") {
		t.Errorf("a 507 without a word in the log:\n%s", log.String())
	}
	rec.SetFull(nil)

	// The history's disk is full: the write commits and is answered 200;
	// pulls wait with 503 until the history has it, then serve it.
	rec.SetFull(func(path string) bool { return strings.Contains(path, historyFile) })
	if errs := ts.stepErrors(t, "", "", "INSERT INTO t(v) VALUES('committed')"); errs[0] != "" {
		t.Fatalf("insert: %s", errs[0])
	}
	status, out = ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: before})
	if status != http.StatusServiceUnavailable {
		t.Fatalf("pull while the history is behind: %d %s", status, out)
	}
	noServerPaths(t, ts, "503 body", string(out))
	rec.SetFull(nil)
	p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: before})
	if p.hdr.ServerRevision == before {
		t.Fatalf("the committed write is not served")
	}
	ts.healthy(t, "", 2)
}

// A restart while the history's disk is full, with a commit the history
// does not have (acknowledged while it was full): the database opens all
// the same and takes writes, pulls wait with 503 until the history has
// room, then serve every commit. (It answered 500 "cannot open database"
// to every request while the disk was full; the simulator found it.)
func TestHistoryFullAtOpen(t *testing.T) {
	name, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, err := shimvfs.Record(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	s, err := New(Config{DataDir: dir, VFS: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	first := &testServer{Server: s, http: hs, url: hs.URL, dir: dir}
	first.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES('before')")
	before := first.pull(t, "", &syncpb.PullUpdatesReqProtoBody{}).hdr.ServerRevision
	full := func(path string) bool { return strings.Contains(path, historyFile) }
	rec.SetFull(full)
	if errs := first.stepErrors(t, "", "", "INSERT INTO t(v) VALUES('unrecorded')"); errs[0] != "" {
		t.Fatalf("insert: %s", errs[0])
	}
	s.BeginShutdown()
	hs.Close()
	if err := s.Close(); err == nil {
		t.Fatal("closing with a commit the history could not record reported no error")
	}

	ts := newTestServer(t, Config{DataDir: dir, VFS: name})
	if errs := ts.stepErrors(t, "", "", "INSERT INTO t(v) VALUES('while full')"); errs[0] != "" {
		t.Fatalf("insert after a restart with the history full: %s", errs[0])
	}
	status, out := ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: before})
	if status != http.StatusServiceUnavailable {
		t.Fatalf("pull while the history is behind: %d %s", status, out)
	}
	rec.SetFull(nil)
	p := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: before})
	seq, _ := strconv.ParseInt(before[strings.LastIndexByte(before, '-')+1:], 10, 64)
	if got, want := p.hdr.ServerRevision, ts.revision(t, seq+2); got != want {
		t.Fatalf("pull after the history has room: revision %s, want %s (both commits)", got, want)
	}
	ts.healthy(t, "", 3)
}

// ALTER TABLE ... DROP COLUMN and RENAME COLUMN run for a write token;
// they were refused with `using database "y"`: SQLite gives the authorizer
// an ALTER TABLE's database as its 3rd argument and a dropped column as
// its 5th, the one every other action has its database in. A read token
// (its query selector), a READONLY transaction and other databases are
// still refused.
func TestSandboxAlterColumns(t *testing.T) {
	ts := newTestServer(t, Config{AuthTokens: []string{"rw"}, ReadTokens: []string{"ro"}})
	ts.token = "rw"
	ts.exec(t, "", "CREATE TABLE t(x, y, z, q)", "INSERT INTO t VALUES(1, 2, 3, 4)")
	// One batch, on the writer (a reader's schema is another matter).
	got := cacheSteps(t, ts, "",
		step("CREATE TEMP TABLE tt(a, b)", nil),
		step("ALTER TABLE t DROP COLUMN y", nil),
		step("ALTER TABLE t RENAME COLUMN z TO w", nil),
		step("ALTER TABLE main.t DROP COLUMN q", nil),
		step(`ALTER TABLE "t" RENAME w TO v`, nil),
		step("ALTER TABLE temp.tt DROP COLUMN b", nil),
		step("SELECT * FROM t", nil),
		step("SELECT * FROM tt", nil),
	)
	if want := []string{" ", " ", " ", " ", " ", " ", "x,v 1|3\n", "a "}; !slices.Equal(got, want) {
		t.Errorf("dropping and renaming columns: %q, want %q", got, want)
	}
	// ALTER COLUMN ... SET/DROP NOT NULL: its column is the authorizer's
	// 5th argument as well (actionDB), allowed as the other forms are.
	nn := ts.stepErrors(t, "", "rw",
		"ALTER TABLE t ALTER COLUMN v SET NOT NULL",
		"INSERT INTO t VALUES(2, NULL)",
		"ALTER TABLE main.t ALTER v DROP NOT NULL",
		"INSERT INTO t VALUES(3, NULL)",
		"CREATE TEMP TABLE tn(a)",
		"ALTER TABLE temp.tn ALTER COLUMN a SET NOT NULL",
		"INSERT INTO tn VALUES(NULL)",
		"ALTER TABLE t ALTER COLUMN v SET NOT NULL", // a NULL is there now
	)
	if want := []string{"", "SQLite error: NOT NULL constraint failed: t.v", "", "", "", "",
		"SQLite error: NOT NULL constraint failed: tn.a", "SQLite error: constraint failed"}; !slices.Equal(nn, want) {
		t.Errorf("ALTER COLUMN SET/DROP NOT NULL: %q, want %q", nn, want)
	}
	// Refused: reserved names, other databases, a READONLY transaction.
	ts.exec(t, "", "CREATE TABLE r(a, b)")
	errs := ts.stepErrors(t, "", "rw",
		"ALTER TABLE r RENAME COLUMN b TO _syncdb_b",
		"ALTER TABLE x.r DROP COLUMN b",
		"BEGIN TRANSACTION READONLY",
		"ALTER TABLE r DROP COLUMN b",
		"ALTER TABLE r RENAME COLUMN b TO c",
		"ALTER TABLE r ALTER COLUMN b SET NOT NULL",
		"COMMIT",
		"ALTER TABLE x.r ALTER COLUMN b SET NOT NULL",
	)
	for i, e := range errs {
		if (e == "") != (i == 2 || i == 6) {
			t.Errorf("step %d: %q", i, e)
		}
	}
	if got := cacheSteps(t, ts, "", step("INSERT INTO r VALUES(1, 2)", nil), step("SELECT * FROM r", nil)); got[1] != "a,b 1|2\n" {
		t.Errorf("r after the refusals: %q, want its columns a,b", got[0])
	}
	// A read token cannot push at all, and its query selector is read-only.
	for _, q := range []string{"ALTER TABLE r DROP COLUMN b", "ALTER TABLE r RENAME COLUMN b TO c",
		"ALTER TABLE r ALTER COLUMN b SET NOT NULL", "ALTER TABLE r ALTER COLUMN a DROP NOT NULL"} {
		if status, body := ts.pullAs(t, "", "ro", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: q}); status != http.StatusBadRequest {
			t.Errorf("selector %q (token ro): %d %s, want 400", q, status, body)
		}
		push, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step(q, nil))}})
		if status, body := post(t, ts.url+"/v2/pipeline", "application/json", "ro", push); status != http.StatusForbidden {
			t.Errorf("push %q (token ro): %d %s, want 403", q, status, body)
		}
	}
}
