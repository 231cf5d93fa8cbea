package server

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/wire/hrana"
)

// Attack: a remote SQL writer plants syncdb's local bookkeeping on the
// server (a _syncdb_local table with a forged applied_revision): a pull
// copies the server's pages over every replica's file, so the replica
// would take it for its own. Every changing statement on a _syncdb_ name
// is refused, whatever its case, in a batch (/v2 pipeline), a sequence
// and a /v3 stream, and the database is unchanged; reading is allowed.
func TestSecurityReservedNames(t *testing.T) {
	dir := t.TempDir()
	// A table an older server let in, made without the sandbox.
	if err := os.MkdirAll(filepath.Join(dir, "default"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain, err := sql.Open("sqlite", filepath.Join(dir, "default", mainFile)+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
		"INSERT INTO _syncdb_local VALUES('applied_revision', 'old')",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO t VALUES(1, 'a')",
	} {
		if _, err := plain.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	plain.Close()
	ts := newTestServer(t, Config{DataDir: dir})
	schema := func() string {
		var b strings.Builder
		for _, r := range ts.query(t, "", "SELECT type, name, sql FROM sqlite_schema ORDER BY name") {
			for _, v := range r {
				b.WriteString(strings.TrimSpace(strings.ReplaceAll(toString(v.V), "\n", " ")) + "|")
			}
			b.WriteString("\n")
		}
		for _, r := range ts.query(t, "", "SELECT key, value FROM _syncdb_local ORDER BY key") {
			b.WriteString(toString(r[0].V) + "=" + toString(r[1].V) + "\n")
		}
		return b.String()
	}
	before := schema()
	attacks := []string{
		"CREATE TABLE _syncdb_changes(a)",
		"CREATE TABLE IF NOT EXISTS _SyncDB_Local(key, value)",
		`CREATE TABLE "_syncdb_x"(a)`,
		"CREATE TEMP TABLE _syncdb_tmp(a)",
		"CREATE TABLE main._syncdb_y AS SELECT 1",
		"CREATE VIEW _syncdb_v AS SELECT 1",
		"CREATE INDEX _syncdb_i ON t(v)",
		"CREATE INDEX ti ON _syncdb_local(value)",
		"CREATE TRIGGER _syncdb_tr AFTER INSERT ON t BEGIN SELECT 1; END",
		"CREATE TRIGGER tr AFTER INSERT ON _syncdb_local BEGIN SELECT 1; END",
		"CREATE VIRTUAL TABLE _syncdb USING fts5(body)", // shadow tables _syncdb_data, ...
		"CREATE VIRTUAL TABLE _syncdb_fts USING fts5(body)",
		"INSERT INTO _syncdb_local VALUES('applied_revision', 'forged')",
		"INSERT OR REPLACE INTO _SYNCDB_LOCAL VALUES('applied_revision', 'forged')",
		"REPLACE INTO _syncdb_local VALUES('applied_revision', 'forged')",
		"UPDATE _syncdb_local SET value = 'forged'",
		"DELETE FROM _syncdb_local",
		"DROP TABLE _syncdb_local",
		"ALTER TABLE _syncdb_local ADD COLUMN c",
		"ALTER TABLE _syncdb_local RENAME TO mine",
		"ALTER TABLE t RENAME TO _syncdb_changes",
		`ALTER TABLE t RENAME /* x */ TO "_SYNCDB_changes"`,
		"ALTER TABLE t RENAME TO [_syncdb_changes]",
		"ANALYZE _syncdb_local",
		"WITH x AS (SELECT 1) INSERT INTO _syncdb_local SELECT 'a', 1 FROM x",
	}
	for i, msg := range ts.stepErrors(t, "", "", attacks...) {
		if msg == "" {
			t.Errorf("%q was allowed", attacks[i])
		} else if !strings.Contains(msg, "not allowed") || !strings.Contains(msg, `"_syncdb_"`) || !strings.Contains(msg, "reserved") {
			t.Errorf("%q: the refusal does not name the reserved prefix: %s", attacks[i], msg)
		}
	}
	// A trigger whose body writes to a reserved table can be created
	// (SQLite checks a trigger's body as a statement fires it), but not
	// fire: the statement that would fire it is refused.
	ts.exec(t, "", "CREATE TRIGGER tr2 AFTER INSERT ON t BEGIN INSERT INTO _syncdb_local VALUES('k', 1); END")
	if msg := ts.stepErrors(t, "", "", "INSERT INTO t VALUES(2, 'b')")[0]; !strings.Contains(msg, "reserved") {
		t.Errorf("the insert firing a trigger that writes _syncdb_local: %q", msg)
	}
	ts.exec(t, "", "DROP TRIGGER tr2")
	// A sequence goes through the same sandbox.
	for _, seq := range []string{
		"INSERT INTO t VALUES(2, 'b'); INSERT INTO _syncdb_local VALUES('applied_revision', 'forged')",
		"CREATE TABLE x(key TEXT PRIMARY KEY, value); ALTER TABLE x RENAME TO _syncdb_changes",
	} {
		resp := ts.pipeline(t, "", "", hrana.StreamRequest{Type: hrana.ReqSequence, SQL: &seq})
		if r := resp.Results[0]; r.Type != hrana.ResultError || !strings.Contains(r.Error.Message, "reserved") {
			t.Errorf("the sequence %q: %+v", seq, r)
		}
	}
	ts.exec(t, "", "DELETE FROM t WHERE id = 2", "DROP TABLE x") // the sequences' first statements committed on their own
	// And a /v3 stream, inside a transaction.
	v3 := ts.stream(t, "", "/v3/pipeline")
	_, res, out := v3.send(execReq("BEGIN"), execReq("INSERT INTO _syncdb_local VALUES('applied_revision', 'forged')"), execReq("COMMIT"))
	if len(res) != 3 || res[1].Type != hrana.ResultError || !strings.Contains(res[1].Error.Message, "reserved") {
		t.Errorf("the /v3 stream: %s", out)
	}
	if after := schema(); after != before {
		t.Errorf("the database changed:\n%s\nafter:\n%s", before, after)
	}
	// What is not reserved still works, including the server's own
	// savepoint (a write returning rows) and names that only look alike.
	ok := []string{
		"SELECT * FROM _syncdb_local", "PRAGMA table_info(_syncdb_local)",
		"CREATE TABLE syncdb_local(a)", "CREATE TABLE _syncdbx(a)", "CREATE TABLE x_syncdb_(a)",
		"INSERT INTO t VALUES(3, 'c') RETURNING id", "UPDATE t SET v = 'd' WHERE id = 3 RETURNING v",
		"CREATE TABLE u(_syncdb_col)", "UPDATE u SET _syncdb_col = 1",
		"CREATE INDEX t_v ON t(v)", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
		"CREATE VIRTUAL TABLE docs USING fts5(body)", "ALTER TABLE t ADD COLUMN w", "DELETE FROM t WHERE id = 3",
		"CREATE TABLE r(a)", "ALTER TABLE r RENAME TO r2", "ALTER TABLE r2 RENAME a TO b",
		"SAVEPOINT _syncdb_mine", "RELEASE _syncdb_mine",
	}
	for i, msg := range ts.stepErrors(t, "", "", ok...) {
		if msg != "" {
			t.Errorf("%q was refused: %s", ok[i], msg)
		}
	}
	ts.healthy(t, "", 1)
}

func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}
