package server

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

var (
	sandboxSeed  = flag.Uint64("sandbox-seed", 0, "TestSecuritySandboxFuzz: run only this seed")
	sandboxSeeds = flag.Int("sandbox-seeds", 4, "TestSecuritySandboxFuzz: seeds to run")
	sandboxStmts = flag.Int("sandbox-stmts", 200, "TestSecuritySandboxFuzz: statements per seed")
	sandboxV     = flag.Bool("sandbox-v", false, "TestSecuritySandboxFuzz: log every request and its outcome")
)

// grammar generates statements from dangerous constructs, mixed with
// ordinary writes whose acknowledgements are counted.
type grammar struct {
	r       *rand.Rand
	outside string // a directory outside the data directory
	dataDir string
}

func (g *grammar) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *grammar) path() string {
	p := g.pick(
		filepath.Join(g.outside, "x.db"), filepath.Join(g.outside, "sub", "y.db"),
		filepath.Join(g.dataDir, "other", mainFile), filepath.Join(g.dataDir, "other", historyFile),
		filepath.Join(g.dataDir, "default", historyFile), filepath.Join(g.dataDir, "new.db"), "rel.db", "", ":memory:")
	switch g.r.IntN(4) {
	case 0:
		return "file:" + p + "?vfs=" + g.pick("unix", "unix-none", "unix-dotfile") + "&mode=" + g.pick("rwc", "rw", "ro", "memory")
	case 1:
		return "file:" + p + "?cache=shared&immutable=1"
	}
	return p
}

var fuzzPragmas = []string{
	"synchronous", "journal_mode", "wal_autocheckpoint", "wal_checkpoint", "page_size", "max_page_count",
	"locking_mode", "query_only", "wal_checkpoint(TRUNCATE)", "wal_checkpoint(PASSIVE)", "writable_schema", "schema_version", "user_version", "application_id",
	"foreign_keys", "defer_foreign_keys", "cache_size", "temp_store", "temp_store_directory", "data_store_directory",
	"mmap_size", "journal_size_limit", "busy_timeout", "secure_delete", "auto_vacuum", "incremental_vacuum",
	"shrink_memory", "soft_heap_limit", "hard_heap_limit", "threads", "trusted_schema", "cell_size_check",
	"table_info", "index_list", "database_list", "integrity_check", "optimize", "analysis_limit", "recursive_triggers",
	"ignore_check_constraints", "legacy_alter_table", "case_sensitive_like", "count_changes", "encoding",
}

func (g *grammar) pragma() string {
	name := g.pick(fuzzPragmas...)
	schema := g.pick("", "", "main.", "temp.", "x.")
	switch g.r.IntN(3) {
	case 0:
		return "PRAGMA " + schema + name
	case 1:
		return fmt.Sprintf("PRAGMA %s%s = %s", schema, name, g.pick("0", "1", "OFF", "ON", "DELETE", "EXCLUSIVE", "8192", "2", "'x'", "-1", "TRUNCATE", "MEMORY"))
	}
	return fmt.Sprintf("SELECT * FROM pragma_%s(%s)", name, g.pick("", "'t'", "'main'", "1"))
}

// stmt returns one statement; write reports an insert into t, which is
// counted when it succeeds.
func (g *grammar) stmt() (sql string, write bool) {
	switch g.r.IntN(16) {
	case 0:
		return fmt.Sprintf("ATTACH %s AS %s", quoteLit(g.path()), g.pick("a", "main", "temp", "x")), false
	case 1:
		return g.pick("DETACH a", "DETACH main", "DETACH temp"), false
	case 2:
		if g.r.IntN(2) == 0 {
			return "VACUUM", false
		}
		return "VACUUM " + g.pick("", "main ", "temp ") + "INTO " + quoteLit(g.path()), false
	case 3, 4:
		return g.pragma(), false
	case 5:
		return g.pick("SELECT * FROM sqlite_dbpage", "INSERT INTO sqlite_dbpage VALUES(1, zeroblob(4096))",
			"UPDATE sqlite_dbpage SET data = zeroblob(4096) WHERE pgno = 2", "SELECT * FROM sqlite_dbpage('main')",
			"INSERT INTO sqlite_dbpage VALUES(2, NULL)"), false
	case 6:
		return "CREATE VIRTUAL TABLE " + g.pick("temp.", "") + fmt.Sprintf("v%d USING %s", g.r.IntN(1000), g.pick("sqlite_dbpage", "dbstat", "fts5(a)", "rtree(id, a, b)", "json_each", "sqlite_stmt")), false
	case 7:
		return g.pick("SELECT load_extension('/tmp/x')", "SELECT fts3_tokenizer('simple')", "SELECT readfile('/etc/passwd')",
			"SELECT writefile('/tmp/x', 'y')", "SELECT sqlite_offset(id) FROM t LIMIT 1"), false
	case 8:
		return g.pick(
			"CREATE TEMP TRIGGER tr"+fmt.Sprint(g.r.IntN(100))+" AFTER INSERT ON main.t BEGIN INSERT INTO t(v) VALUES('copy'); END",
			"CREATE TEMP TABLE tt"+fmt.Sprint(g.r.IntN(100))+"(a)", "CREATE TEMP VIEW tv AS SELECT * FROM pragma_database_list",
			"CREATE VIEW IF NOT EXISTS pv AS SELECT * FROM pragma_database_list",
			"CREATE TRIGGER IF NOT EXISTS spy AFTER INSERT ON t BEGIN SELECT load_extension('x'); END"), false
	case 9:
		return g.pick("BEGIN", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s", "ROLLBACK TO s", "END"), false
	case 10:
		return g.pick("PRAGMA writable_schema = 1; UPDATE sqlite_master SET sql = 'x' WHERE name = 't'",
			"SELECT 1; ATTACH 'x.db' AS x", "SELECT 1; PRAGMA journal_mode = DELETE", "/* */ ATTACH 'y.db' AS y -- x",
			"SELECT 'ATTACH ''z.db'' AS z'", "WITH x AS (SELECT 1) SELECT * FROM x; VACUUM"), false
	case 11:
		return g.pick("ANALYZE", "REINDEX", "SELECT 1e999", "SELECT zeroblob(1e9)", "SELECT randomblob(100)", "ALTER TABLE t ADD COLUMN c"+fmt.Sprint(g.r.IntN(1000))), false
	}
	// Inserts go to several tables, so that a commit the history missed
	// is not repaired by a later commit of the same pages.
	return fmt.Sprintf("INSERT INTO %s(v) VALUES('w%d')", g.pick("t", "t", "u", "w"), g.r.IntN(1<<30)), true
}

// txnShapes open and end a transaction, picked apart: a COMMIT may end a
// SAVEPOINT's transaction, and a RELEASE meet a BEGIN's (and fail).
var txnShapes = [][2]string{{"BEGIN", "COMMIT"}, {"BEGIN IMMEDIATE", "END"}, {"SAVEPOINT s", "RELEASE s"}, {"BEGIN", "COMMIT"}}

// ackModel counts the fuzz's inserts that the server acknowledged as
// durable, by Hrana's semantics: a statement's result inside a transaction
// is not a commit. An insert counts once its transaction committed: at
// once in autocommit mode, or with a later COMMIT (END) that succeeded, or
// the RELEASE of the savepoint that began the transaction. Each of the
// fuzz's requests is a stream of its own whose baton it never uses again
// (but for checkAutocommit): a transaction still open at the end of a
// request is never committed (it is rolled back when the stream expires),
// and its inserts never count.
type ackModel struct {
	acked   int64   // inserts committed
	inTxn   bool    // a transaction is open
	bySave  bool    // it began with SAVEPOINT: the RELEASE of that one commits it
	saves   []int64 // pending at each open savepoint, innermost last (all are named s)
	pending int64   // inserts of the open transaction
	wrong   string  // the server did what the model cannot have
}

// ran applies a statement that succeeded; write says it is one of the
// fuzz's counted inserts.
func (m *ackModel) ran(sql string, write bool) {
	switch sql {
	case "BEGIN", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE":
		m.inTxn, m.bySave, m.saves, m.pending = true, false, nil, 0
	case "COMMIT", "END":
		m.acked += m.pending
		m.end()
	case "ROLLBACK":
		m.end()
	case "SAVEPOINT s":
		if !m.inTxn {
			m.inTxn, m.bySave, m.saves, m.pending = true, true, nil, 0
		}
		m.saves = append(m.saves, m.pending)
	case "RELEASE s": // releases the innermost s (and none is inside it)
		if len(m.saves) == 0 {
			m.wrong = "RELEASE s succeeded with no savepoint open"
			return
		}
		m.saves = m.saves[:len(m.saves)-1]
		if len(m.saves) == 0 && m.bySave {
			m.acked += m.pending
			m.end()
		}
	case "ROLLBACK TO s": // undoes the writes since the innermost s, which stays
		if len(m.saves) == 0 {
			m.wrong = "ROLLBACK TO s succeeded with no savepoint open"
			return
		}
		m.pending = m.saves[len(m.saves)-1]
	default:
		if !write {
			return
		}
		if m.inTxn {
			m.pending++
		} else {
			m.acked++
		}
	}
}

// end drops the open transaction, if any, with its inserts.
func (m *ackModel) end() { m.inTxn, m.bySave, m.saves, m.pending = false, false, nil, 0 }

// committedOf returns how many of the inserts among stmts (writes says
// which) the database holds: each has a value of its own.
func committedOf(t *testing.T, ts *testServer, stmts []string, writes []bool) int64 {
	t.Helper()
	var counts []string
	for i, q := range stmts {
		if writes[i] {
			// INSERT INTO <table>(v) VALUES('w<n>')
			table, value, _ := strings.Cut(strings.TrimPrefix(q, "INSERT INTO "), "(v) VALUES(")
			counts = append(counts, fmt.Sprintf("(SELECT count(*) FROM %s WHERE v = %s)", table, strings.TrimSuffix(value, ")")))
		}
	}
	if len(counts) == 0 {
		return 0
	}
	return mustInt(t, ts.query(t, "", "SELECT "+strings.Join(counts, " + "))[0][0])
}

// checkAutocommit asks the server, on stream s (the request's, kept open
// by its baton), whether a transaction is open, and fails if the model
// disagrees: the model's counting rests on it.
func (m *ackModel) checkAutocommit(t *testing.T, s *hstream) {
	t.Helper()
	if m.wrong != "" {
		t.Fatalf("the model disagrees with the server: %s", m.wrong)
	}
	path := s.path
	s.path = "/v3/pipeline"
	defer func() { s.path = path }()
	_, res, out := s.send(hrana.StreamRequest{Type: hrana.ReqGetAutocommit})
	if res == nil || res[0].Type != hrana.ResultOK {
		t.Fatalf("get_autocommit: %s", out)
	}
	if got := res[0].Response.IsAutocommit; got == m.inTxn {
		t.Fatalf("the server says autocommit=%v, the model says a transaction is open=%v", got, m.inTxn)
	}
}

func sandboxLog(t *testing.T, format string, args ...any) {
	t.Helper()
	if *sandboxV {
		t.Logf(format, args...)
	}
}

// stepErrors runs stmts as one unconditional batch on s and returns each
// step's error message ("" for success).
func (s *hstream) stepErrors(stmts ...string) []string {
	s.t.Helper()
	steps := make([]hrana.BatchStep, len(stmts))
	for i := range stmts {
		steps[i] = step(stmts[i], nil)
	}
	_, res, out := s.send(batch(steps...))
	if res == nil || res[0].Type != hrana.ResultOK {
		s.t.Fatalf("batch failed: %s", out)
	}
	errs := make([]string, len(stmts))
	for i, e := range res[0].Response.BatchResult.StepErrors {
		if e != nil {
			errs[i] = e.Message
			if errs[i] == "" {
				errs[i] = "(error without a message)"
			}
		}
	}
	return errs
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Fuzzing the sandbox: random requests of dangerous constructs, as
// batches, sequences and query selectors. Afterwards no file outside the
// data directory exists, the data directory holds only the server's
// files, a pull holds the inserts whose commit the server acknowledged
// (ackModel) and no others, and the history and the database pass their
// integrity checks, also after a checkpoint and a restart.
func TestSecuritySandboxFuzz(t *testing.T) {
	seeds := []uint64{}
	if *sandboxSeed != 0 {
		seeds = append(seeds, *sandboxSeed)
	} else {
		for i := range *sandboxSeeds {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("replay: go test ./server -run 'TestSecuritySandboxFuzz' -sandbox-seed=%d", seed)
			fuzzSandbox(t, seed)
		})
	}
}

// countInserts counts the fuzz's inserts in the database.
const countInserts = "SELECT (SELECT count(*) FROM t WHERE v LIKE 'w%') + (SELECT count(*) FROM u) + (SELECT count(*) FROM w)"

var serverFile = regexp.MustCompile(`^(db\.sqlite|history\.sqlite)(-wal|-shm)?$|^snapshot-`)

func fuzzSandbox(t *testing.T, seed uint64) {
	dir, outside := t.TempDir(), t.TempDir()
	// A BEGIN the fuzz leaves open keeps the writer until the next write
	// expires it after StreamTxnTimeout (every request is a stream of its
	// own, so the expiry comes at the same point whatever the timeout):
	// the default 5 s made up most of the test's time.
	ts := newTestServer(t, Config{DataDir: dir, Databases: []string{"other"}, StreamTxnTimeout: 50 * time.Millisecond})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT)", "CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT)")
	ts.exec(t, "other", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES('other')")
	base := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	g := &grammar{r: rand.New(rand.NewPCG(seed, 9)), outside: outside, dataDir: dir}
	m := &ackModel{}
	// Its own source, so that a seed's statements are those it had before.
	wrap := rand.New(rand.NewPCG(seed, 10))
	for n := 0; n < *sandboxStmts; {
		switch g.r.IntN(5) {
		case 0: // a query selector
			q, _ := g.stmt()
			n++
			st, _ := ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: q})
			sandboxLog(t, "selector %q: %d", q, st)
		case 1: // a sequence: several statements in one text
			var parts []string
			var writes []bool
			for range 1 + g.r.IntN(4) {
				q, w := g.stmt()
				parts, writes = append(parts, q), append(writes, w)
				n++
			}
			s := ts.stream(t, "", "/v2/pipeline")
			_, res, out := s.send(hrana.StreamRequest{Type: hrana.ReqSequence, SQL: str(strings.Join(parts, "; "))})
			if res == nil {
				t.Fatalf("sequence: %s", out)
			}
			sandboxLog(t, "sequence %q: %s %v", parts, res[0].Type, res[0].Error)
			if res[0].Type == hrana.ResultOK {
				// A sequence runs to its end only if every statement did.
				for i, p := range parts {
					m.ran(p, writes[i])
				}
				m.checkAutocommit(t, s)
				m.end()
			} else {
				// It ran up to the failing statement, which the response
				// does not name: the inserts of it that the database now
				// holds count (committed ones only: a transaction it left
				// open is rolled back when the stream expires, later).
				m.end()
				m.acked += committedOf(t, ts, parts, writes)
			}
		default: // a batch of unconditional steps
			var stmts []string
			var writes []bool
			for range 1 + g.r.IntN(6) {
				q, w := g.stmt()
				stmts, writes = append(stmts, q), append(writes, w)
				n++
			}
			if wrap.IntN(3) == 0 {
				// A transaction of the batch's own, so that commits of
				// several inserts (and their loss) are common.
				open, end := txnShapes[wrap.IntN(len(txnShapes))][0], txnShapes[wrap.IntN(len(txnShapes))][1]
				stmts, writes = append(append([]string{open}, stmts...), end), append(append([]bool{false}, writes...), false)
			}
			s := ts.stream(t, "", "/v2/pipeline")
			errs := s.stepErrors(stmts...)
			commits := false
			for i, e := range errs {
				sandboxLog(t, "batch step %d %q: %q", i, stmts[i], e)
				if e == "" {
					m.ran(stmts[i], writes[i])
				}
				if k := sqlitex.FirstKeyword(stmts[i]); k == "COMMIT" || k == "END" {
					commits = true
				}
			}
			if commits {
				// A batch that begins in autocommit mode (each of the
				// fuzz's requests is a stream of its own) and holds its
				// own COMMIT is all or nothing: left open, its transaction
				// is rolled back at its end (executor.selfContained).
				m.end()
			}
			m.checkAutocommit(t, s)
			m.end()
		}
		sandboxLog(t, "acknowledged %d", m.acked)
	}
	acked := m.acked
	// A trigger the fuzz created may make every insert fail: that is the
	// client's own schema, which it may break; drop it for the last one.
	ts.exec(t, "", "DROP TRIGGER IF EXISTS spy", "INSERT INTO t(v) VALUES('w-final')")
	acked++

	// No file outside the data directory.
	if files := filesUnder(t, outside); len(files) != 0 {
		t.Errorf("files outside the data directory: %v", files)
	}
	for p := range filesUnder(t, dir) {
		rel, _ := filepath.Rel(dir, p)
		if rel == ".lock" {
			continue
		}
		if d, f := filepath.Split(rel); (d != "default/" && d != "other/") || !serverFile.MatchString(f) {
			t.Errorf("unexpected file in the data directory: %s", rel)
		}
	}
	// Every acknowledged insert is in a pull, incremental and snapshot
	// agree, and both files are sound.
	check := func(ts *testServer) {
		t.Helper()
		snap := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
		inc := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{ClientRevision: base.hdr.ServerRevision})
		a, b := image{}, image{}
		a.apply(base)
		a.apply(inc)
		b.apply(snap)
		for pg := uint32(1); pg <= uint32(snap.hdr.DbSize); pg++ {
			if !bytes.Equal(a[pg], b[pg]) {
				t.Fatalf("page %d: the incremental pull differs from the snapshot", pg)
			}
		}
		db := openImage(t, b.write(t, snap.hdr.DbSize))
		integrityOK(t, db)
		var n int64
		if err := db.QueryRow(countInserts).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != acked {
			t.Fatalf("%d inserts in the pulled database, %d acknowledged", n, acked)
		}
		integrityOK(t, openImage(t, filepath.Join(ts.dir, "default", historyFile)))
		ts.healthy(t, "other", 1)
	}
	check(ts)
	if err := ts.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	check(ts)
	ts.BeginShutdown()
	if err := ts.Server.Close(); err != nil {
		t.Fatal(err)
	}
	check(newTestServer(t, Config{DataDir: dir}))
	if _, err := os.Stat(filepath.Join(dir, "new.db")); err == nil {
		t.Errorf("new.db was created")
	}
}
