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

	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

var (
	sandboxSeed  = flag.Uint64("sandbox-seed", 0, "TestSecuritySandboxFuzz: run only this seed")
	sandboxSeeds = flag.Int("sandbox-seeds", 4, "TestSecuritySandboxFuzz: seeds to run")
	sandboxStmts = flag.Int("sandbox-stmts", 200, "TestSecuritySandboxFuzz: statements per seed")
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

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Fuzzing the sandbox: random requests of dangerous constructs, as
// batches, sequences and query selectors. Afterwards no file outside the
// data directory exists, the data directory holds only the server's
// files, every acknowledged insert is in a pull, and the history and the
// database pass their integrity checks, also after a checkpoint and a
// restart.
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
	acked := int64(0)
	for n := 0; n < *sandboxStmts; {
		switch g.r.IntN(5) {
		case 0: // a query selector
			q, _ := g.stmt()
			n++
			ts.pullAs(t, "", "", &syncpb.PullUpdatesReqProtoBody{ServerQuerySelector: q})
		case 1: // a sequence: several statements in one text
			var parts []string
			for range 1 + g.r.IntN(4) {
				q, _ := g.stmt()
				parts = append(parts, q)
				n++
			}
			resp := ts.pipeline(t, "", "", hrana.StreamRequest{Type: hrana.ReqSequence, SQL: str(strings.Join(parts, "; "))})
			if r := resp.Results[0]; r.Type == hrana.ResultOK {
				// A sequence runs to its end only if every statement did.
				for _, p := range parts {
					if strings.HasPrefix(p, "INSERT INTO ") && strings.Contains(p, "(v) VALUES('w") {
						acked++
					}
				}
			} else {
				// It ran up to the failing statement: count the inserts
				// that the database now holds instead (below).
				acked = -1
			}
		default: // a batch of unconditional steps
			var stmts []string
			var writes []bool
			for range 1 + g.r.IntN(6) {
				q, w := g.stmt()
				stmts, writes = append(stmts, q), append(writes, w)
				n++
			}
			errs := ts.stepErrors(t, "", "", stmts...)
			for i, e := range errs {
				if e == "" && writes[i] && acked >= 0 {
					acked++
				}
			}
		}
		if acked < 0 {
			// Resynchronise from the server (a partially run sequence).
			acked = mustInt(t, ts.query(t, "", countInserts)[0][0])
		}
	}
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
