package sqlitex

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// openDB opens a database file in a fresh temporary directory with plain
// sql.Open("sqlite", ...); query, if any, is appended as DSN parameters.
func openDB(t *testing.T, query string) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	dsn := path
	if query != "" {
		dsn += "?" + query
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// liveStmts counts the prepared statements of the connection
// (sqlite3_next_stmt), to catch leaks.
func liveStmts(c *Conn) int {
	n := 0
	for p := sqlite3.Xsqlite3_next_stmt(c.tls, c.db, 0); p != 0; p = sqlite3.Xsqlite3_next_stmt(c.tls, c.db, p) {
		n++
	}
	return n
}

// run runs fn through Raw on a connection of db and fails the test on an
// error or if fn leaves a statement open.
func run(t *testing.T, db *sql.DB, fn func(c *Conn) error) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = Raw(ctx, conn, func(c *Conn) error {
		if err := fn(c); err != nil {
			return err
		}
		if n := liveStmts(c); n != 0 {
			return fmt.Errorf("%d statements left open", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustExec(t *testing.T, c *Conn, sql string, args ...any) {
	t.Helper()
	if err := c.Exec(sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func mustQuery(t *testing.T, c *Conn, sql string, args ...any) [][]any {
	t.Helper()
	rows, err := c.Query(sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return rows
}

func one(t *testing.T, c *Conn, sql string, args ...any) any {
	t.Helper()
	rows := mustQuery(t, c, sql, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: got %v, want one value", sql, rows)
	}
	return rows[0][0]
}

func TestExactValues(t *testing.T) {
	db, _ := openDB(t, "")
	if _, err := db.Exec(`CREATE TABLE t(k TEXT PRIMARY KEY, d DATETIME, x)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO t(k, d) VALUES('date', '2024-01-02 03:04:05')`); err != nil {
		t.Fatal(err)
	}
	// This is why the package exists: database/sql turns it into a time.Time.
	var viaSQL any
	if err := db.QueryRow(`SELECT d FROM t WHERE k = 'date'`).Scan(&viaSQL); err != nil {
		t.Fatal(err)
	}
	if _, ok := viaSQL.(time.Time); !ok {
		t.Logf("note: database/sql now returns %T for a DATETIME column", viaSQL)
	}

	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300*1024/4)
	values := []struct {
		name string
		in   any
		want any
	}{
		{"maxint", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"minint", int64(math.MinInt64), int64(math.MinInt64)},
		{"zero", int64(0), int64(0)},
		{"float", 0.1, 0.1},
		{"maxfloat", math.MaxFloat64, math.MaxFloat64},
		{"smallest", math.SmallestNonzeroFloat64, math.SmallestNonzeroFloat64},
		{"integral float", 3.0, 3.0}, // but see the DATETIME column below
		{"empty string", "", ""},
		{"null", nil, nil},
		{"empty blob", []byte{}, []byte{}},
		{"nil blob", []byte(nil), []byte{}},
		{"big blob", big, big},
		{"unicode", "héllo 世界 🎉", "héllo 世界 🎉"},
		{"nul in text", "a\x00b", "a\x00b"},
		{"date text", "2024-01-02 03:04:05", "2024-01-02 03:04:05"},
	}
	run(t, db, func(c *Conn) error {
		got := one(t, c, `SELECT d FROM t WHERE k = 'date'`)
		if got != "2024-01-02 03:04:05" {
			t.Errorf("DATETIME column: got %#v", got)
		}
		for _, v := range values {
			mustExec(t, c, `INSERT INTO t(k, x) VALUES(?, ?)`, v.name, v.in)
		}
		for _, v := range values {
			row := mustQuery(t, c, `SELECT x, typeof(x) FROM t WHERE k = ?`, v.name)[0]
			if !reflect.DeepEqual(row[0], v.want) {
				t.Errorf("%s (%v): got %#v (%T), want %#v (%T)", v.name, row[1], row[0], row[0], v.want, v.want)
			}
		}
		// Column affinity still applies on the way in: DATETIME has NUMERIC
		// affinity, which stores the REAL 3.0 as the INTEGER 3, and TEXT that
		// looks like a number as a number. What was stored comes back as is.
		mustExec(t, c, `INSERT INTO t(k, d) VALUES('float in datetime', 3.0), ('numeric text in datetime', '42')`)
		rows := mustQuery(t, c, `SELECT d FROM t WHERE k LIKE '% in datetime' ORDER BY k`)
		if want := [][]any{{int64(3)}, {int64(42)}}; !reflect.DeepEqual(rows, want) {
			t.Errorf("NUMERIC affinity: got %#v, want %#v", rows, want)
		}
		// Empty text and empty blob are not NULL, and keep their class.
		rows = mustQuery(t, c, `SELECT typeof(x), length(x) FROM t WHERE k IN ('empty string', 'empty blob', 'nil blob', 'null') ORDER BY k`)
		want := [][]any{{"blob", int64(0)}, {"text", int64(0)}, {"blob", int64(0)}, {"null", nil}}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("empty values: got %v, want %v", rows, want)
		}
		return nil
	})
}

// TestNegativeZero records what SQLite does with -0.0.
func TestNegativeZero(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		mustExec(t, c, `CREATE TABLE z(r REAL, a ANY, b)`)
		mustExec(t, c, `INSERT INTO z VALUES(?, ?, ?)`, math.Copysign(0, -1), math.Copysign(0, -1), math.Copysign(0, -1))
		cases := []struct {
			sql  string
			args []any
		}{
			{`SELECT ?`, []any{math.Copysign(0, -1)}},
			{`SELECT -0.0`, nil},
			{`SELECT r FROM z`, nil},
			{`SELECT a FROM z`, nil},
			{`SELECT b FROM z`, nil},
			{`SELECT typeof(r), typeof(a), typeof(b) FROM z`, nil},
		}
		for _, tc := range cases {
			row := mustQuery(t, c, tc.sql, tc.args...)[0]
			for _, v := range row {
				if f, ok := v.(float64); ok {
					t.Logf("%-45s -> %T %v signbit=%v", tc.sql, v, f, math.Signbit(f))
				} else {
					t.Logf("%-45s -> %T %v", tc.sql, v, v)
				}
			}
		}
		// Observed on SQLite 3.54.1: -0.0 keeps its sign bit as a bound or
		// literal value and when stored in a column without a declared type
		// (BLOB affinity). A REAL column reads it back as +0.0 (an integral
		// REAL is stored as an integer in the record), and a NUMERIC-affinity
		// column ("ANY" in an ordinary table) stores it as the INTEGER 0.
		negZero := func(v any) bool { f, ok := v.(float64); return ok && f == 0 && math.Signbit(f) }
		posZero := func(v any) bool { f, ok := v.(float64); return ok && f == 0 && !math.Signbit(f) }
		if v := one(t, c, `SELECT ?`, math.Copysign(0, -1)); !negZero(v) {
			t.Errorf("SELECT ?: %#v", v)
		}
		if v := one(t, c, `SELECT -0.0`); !negZero(v) {
			t.Errorf("SELECT -0.0: %#v", v)
		}
		if v := one(t, c, `SELECT b FROM z`); !negZero(v) {
			t.Errorf("untyped column: %#v", v)
		}
		if v := one(t, c, `SELECT r FROM z`); !posZero(v) {
			t.Errorf("REAL column: %#v", v)
		}
		if v := one(t, c, `SELECT a FROM z`); v != int64(0) {
			t.Errorf("NUMERIC column: %#v", v)
		}
		return nil
	})
}

func TestBindTypes(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		tm := time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC)
		row := mustQuery(t, c, `SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`,
			int(-1), int8(-8), int16(-16), int32(-32), uint(1), uint8(8), uint16(16), uint32(32), uint64(math.MaxInt64),
			float32(0.5), true, false, tm, time.Now())[0]
		want := []any{int64(-1), int64(-8), int64(-16), int64(-32), int64(1), int64(8), int64(16), int64(32), int64(math.MaxInt64),
			0.5, int64(1), int64(0), "2024-01-02 03:04:05.0000006 +0000 UTC"}
		if !reflect.DeepEqual(row[:len(want)], want) {
			t.Errorf("got  %#v\nwant %#v", row[:len(want)], want)
		}
		if s := row[len(want)].(string); strings.Contains(s, "m=") {
			t.Errorf("time.Now() bound with its monotonic reading: %q", s)
		}

		s, _, err := c.Prepare(`SELECT ?`)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.Bind(1, uint64(math.MaxInt64)+1); err == nil {
			t.Error("uint64 overflow: no error")
		}
		if err := s.Bind(1, struct{}{}); err == nil || !strings.Contains(err.Error(), "struct {}") {
			t.Errorf("unsupported type: %v", err)
		}
		var e *Error
		if err := s.Bind(2, 1); !errors.As(err, &e) || e.CodeName() != "SQLITE_RANGE" {
			t.Errorf("out of range: %v", err)
		}
		if err := s.BindAll(1, 2); err == nil {
			t.Error("BindAll with too many args: no error")
		}
		if err := s.BindAll(); err == nil {
			t.Error("BindAll with too few args: no error")
		}
		return nil
	})
}

func TestNamedParams(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		s, _, err := c.Prepare(`SELECT :a, @b, $c, ?5, :a`)
		if err != nil {
			return err
		}
		defer s.Close()
		if n := s.ParamCount(); n != 5 {
			t.Errorf("ParamCount = %d, want 5", n)
		}
		names := []string{s.ParamName(1), s.ParamName(2), s.ParamName(3), s.ParamName(4), s.ParamName(5)}
		if want := []string{":a", "@b", "$c", "", "?5"}; !reflect.DeepEqual(names, want) {
			t.Errorf("ParamName = %q, want %q", names, want)
		}
		for name, want := range map[string]int{"a": 1, ":a": 1, "@a": 0, "b": 2, "@b": 2, ":b": 0, "c": 3, "$c": 3, "?5": 5, "5": 5, "zz": 0, "": 0} {
			if got := s.ParamIndex(name); got != want {
				t.Errorf("ParamIndex(%q) = %d, want %d", name, got, want)
			}
		}
		for name, v := range map[string]any{"a": "A", "b": int64(2), "c": 3.5, "?5": []byte("five")} {
			if err := s.Bind(s.ParamIndex(name), v); err != nil {
				return err
			}
		}
		if row, err := s.Step(); err != nil || !row {
			t.Fatalf("Step = %v, %v", row, err)
		}
		got := []any{s.Column(0), s.Column(1), s.Column(2), s.Column(3), s.Column(4)}
		if want := []any{"A", int64(2), 3.5, []byte("five"), "A"}; !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}

		// ?NNN numbers parameters explicitly.
		if got := mustQuery(t, c, `SELECT ?2, ?1`, "x", "y")[0]; !reflect.DeepEqual(got, []any{"y", "x"}) {
			t.Errorf("?NNN: got %v", got)
		}
		return nil
	})
}

func TestAutocommit(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		mustExec(t, c, `CREATE TABLE u(a INTEGER UNIQUE)`)
		mustExec(t, c, `CREATE TABLE big(x)`)
		if !c.Autocommit() {
			t.Fatal("not in autocommit mode at start")
		}
		mustExec(t, c, `BEGIN`)
		if c.Autocommit() {
			t.Error("autocommit after BEGIN")
		}
		mustExec(t, c, `INSERT INTO u VALUES(1)`)
		mustExec(t, c, `COMMIT`)
		if !c.Autocommit() {
			t.Error("no autocommit after COMMIT")
		}
		mustExec(t, c, `BEGIN; INSERT INTO u VALUES(2)`)
		mustExec(t, c, `ROLLBACK`)
		if !c.Autocommit() {
			t.Error("no autocommit after ROLLBACK")
		}
		count := func() int64 { return one(t, c, `SELECT count(*) FROM u`).(int64) }

		// A UNIQUE violation (ON CONFLICT ABORT, the default) undoes the
		// statement only: the transaction stays open.
		mustExec(t, c, `BEGIN; INSERT INTO u VALUES(2)`)
		err := c.Exec(`INSERT INTO u VALUES(1)`)
		var e *Error
		if !errors.As(err, &e) || e.Code != sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Msg != "UNIQUE constraint failed: u.a" ||
			e.CodeName() != "SQLITE_CONSTRAINT_UNIQUE" || !errors.Is(err, ErrConstraint) {
			t.Errorf("UNIQUE violation: %#v", err)
		}
		t.Logf("UNIQUE violation: %v", err)
		if c.Autocommit() || count() != 2 {
			t.Errorf("after UNIQUE violation: autocommit=%v count=%d, want the transaction open", c.Autocommit(), count())
		}
		mustExec(t, c, `ROLLBACK`)

		// INSERT OR ROLLBACK makes SQLite roll the transaction back itself.
		mustExec(t, c, `BEGIN; INSERT INTO u VALUES(2)`)
		if err := c.Exec(`INSERT OR ROLLBACK INTO u VALUES(1)`); !errors.Is(err, ErrConstraint) {
			t.Errorf("OR ROLLBACK: %v", err)
		}
		if !c.Autocommit() || count() != 1 {
			t.Errorf("after OR ROLLBACK: autocommit=%v count=%d, want rolled back", c.Autocommit(), count())
		}

		// So does RAISE(ROLLBACK) in a trigger.
		mustExec(t, c, `CREATE TRIGGER nope BEFORE INSERT ON u WHEN new.a < 0 BEGIN SELECT RAISE(ROLLBACK, 'negative'); END`)
		mustExec(t, c, `BEGIN; INSERT INTO u VALUES(2)`)
		err = c.Exec(`INSERT INTO u VALUES(-1)`)
		t.Logf("RAISE(ROLLBACK): %v", err)
		if !c.Autocommit() || count() != 1 {
			t.Errorf("after RAISE(ROLLBACK): autocommit=%v count=%d, want rolled back", c.Autocommit(), count())
		}

		// An interrupted write inside a transaction rolls it back.
		mustExec(t, c, `BEGIN; INSERT INTO u VALUES(2)`)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err = c.WithContext(ctx, func() error {
			return c.Exec(`INSERT INTO big WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000000000) SELECT i FROM n`)
		})
		cancel()
		t.Logf("interrupted write: %v; autocommit=%v", err, c.Autocommit())
		if !errors.Is(err, ErrInterrupted) || !c.Autocommit() || count() != 1 {
			t.Errorf("after interrupted write: err=%v autocommit=%v count=%d, want rolled back", err, c.Autocommit(), count())
		}

		// SQLITE_FULL (max_page_count reached) in a transaction.
		mustExec(t, c, `PRAGMA max_page_count = 20`)
		mustExec(t, c, `BEGIN; INSERT INTO u VALUES(2)`)
		err = c.Exec(`INSERT INTO big SELECT zeroblob(100000)`)
		t.Logf("SQLITE_FULL: %v; autocommit=%v count=%d", err, c.Autocommit(), count())
		// Only the statement is undone: the transaction stays open.
		if !errors.Is(err, ErrFull) || c.Autocommit() || count() != 2 {
			t.Errorf("SQLITE_FULL: err=%v autocommit=%v count=%d, want the transaction open", err, c.Autocommit(), count())
		}
		mustExec(t, c, `ROLLBACK`)
		return nil
	})
}

func TestChangesAndExec(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		mustExec(t, c, `
			CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE); -- a comment; with a semicolon
			INSERT INTO t(v) VALUES('a'), ('b'), ('c');
			/* block; comment */ ;;
		`)
		if n := c.Changes(); n != 3 {
			t.Errorf("Changes = %d, want 3", n)
		}
		if id := c.LastInsertRowid(); id != 3 {
			t.Errorf("LastInsertRowid = %d, want 3", id)
		}
		total := c.TotalChanges()
		mustExec(t, c, `UPDATE t SET v = v || '!' WHERE id > ?`, 1)
		if n := c.Changes(); n != 2 {
			t.Errorf("Changes = %d, want 2", n)
		}
		if n := c.TotalChanges(); n != total+2 {
			t.Errorf("TotalChanges = %d, want %d", n, total+2)
		}
		mustExec(t, c, `INSERT INTO t(id, v) VALUES(100, 'x')`)
		if id := c.LastInsertRowid(); id != 100 {
			t.Errorf("LastInsertRowid = %d, want 100", id)
		}

		// Exec with arguments needs exactly one statement.
		if err := c.Exec(`INSERT INTO t(v) VALUES(?); SELECT 1`, "y"); err == nil {
			t.Error("two statements with args: no error")
		}
		if err := c.Exec(`INSERT INTO t(v) VALUES(?); -- trailing`, "y"); err != nil {
			t.Errorf("one statement and a comment with args: %v", err)
		}
		if err := c.Exec(` -- nothing`, 1); err == nil {
			t.Error("no statement with args: no error")
		}
		if err := c.Exec(""); err != nil {
			t.Errorf("empty Exec: %v", err)
		}

		// A failing statement stops the script; earlier ones took effect.
		err := c.Exec(`INSERT INTO t(v) VALUES('p'); INSERT INTO t(v) VALUES('a'); INSERT INTO t(v) VALUES('q')`)
		if !errors.Is(err, ErrConstraint) {
			t.Errorf("script error: %v", err)
		}
		if got := one(t, c, `SELECT group_concat(v) FROM (SELECT v FROM t WHERE v IN ('p', 'q') ORDER BY v)`); got != "p" {
			t.Errorf("after failing script: %v", got)
		}
		// A syntax error reports SQLite's message.
		err = c.Exec(`SELEC 1`)
		var e *Error
		if !errors.As(err, &e) || e.Code != sqlite3.SQLITE_ERROR || e.Msg != `near "SELEC": syntax error` {
			t.Errorf("syntax error: %#v", err)
		}
		// Exec drains rows, also of RETURNING.
		mustExec(t, c, `DELETE FROM t RETURNING id`)
		if n := c.Changes(); n != 6 {
			t.Errorf("DELETE RETURNING: Changes = %d, want 6", n)
		}
		// Query with a script is refused.
		if _, err := c.Query(`SELECT 1; SELECT 2`); err == nil {
			t.Error("Query of two statements: no error")
		}
		return nil
	})
}

func TestPrepareTail(t *testing.T) {
	db, _ := openDB(t, "")
	script := `
		-- leading comment
		CREATE TABLE t(a, b);;
		INSERT INTO t VALUES(1, 'x;y'); /* c; */
		CREATE TRIGGER tr AFTER INSERT ON t BEGIN
			INSERT INTO t VALUES(new.a + 100, 'trig;');
		END;
		INSERT INTO t VALUES(2, 'z')
		-- trailing comment`
	var texts []string
	var readonly []bool
	run(t, db, func(c *Conn) error {
		for rest := script; ; {
			s, tail, err := c.Prepare(rest)
			if err != nil {
				return err
			}
			if s == nil {
				if tail != "" && !blank(tail) {
					t.Errorf("no statement but tail %q", tail)
				}
				break
			}
			texts = append(texts, s.SQL())
			readonly = append(readonly, s.Readonly())
			if _, err := s.Step(); err != nil {
				s.Close()
				return err
			}
			if err := s.Close(); err != nil {
				return err
			}
			rest = tail
		}
		if got := mustQuery(t, c, `SELECT a, b FROM t ORDER BY a`); !reflect.DeepEqual(got, [][]any{{int64(1), "x;y"}, {int64(2), "z"}, {int64(102), "trig;"}}) {
			t.Errorf("rows: %v", got)
		}
		for in, want := range map[string][2]string{
			";":                {"", ""},
			"  -- c":           {"", ""},
			"; SELECT 1":       {"SELECT 1", ""},
			"SELECT 1; -- c\n": {"SELECT 1;", " -- c\n"},
		} {
			s, tail, err := c.Prepare(in)
			if err != nil {
				return err
			}
			text := ""
			if s != nil {
				text = s.SQL()
				s.Close()
			}
			if text != want[0] || tail != want[1] {
				t.Errorf("Prepare(%q) = %q, tail %q; want %q, %q", in, text, tail, want[0], want[1])
			}
		}
		s, _, err := c.Prepare(`SELECT a, b, a + 1 AS c FROM t`)
		if err != nil {
			return err
		}
		defer s.Close()
		if !s.Readonly() || s.ColumnCount() != 3 || s.ColumnName(2) != "c" || s.ColumnDecltype(0) != "" || s.ColumnDecltype(2) != "" {
			t.Errorf("metadata: readonly=%v count=%d name=%q", s.Readonly(), s.ColumnCount(), s.ColumnName(2))
		}
		return nil
	})
	want := []string{
		"CREATE TABLE t(a, b);",
		"INSERT INTO t VALUES(1, 'x;y');",
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n\t\t\tINSERT INTO t VALUES(new.a + 100, 'trig;');\n\t\tEND;",
		"INSERT INTO t VALUES(2, 'z')\n\t\t-- trailing comment",
	}
	if !reflect.DeepEqual(texts, want) {
		t.Errorf("statements:\n got %q\nwant %q", texts, want)
	}
	if want := []bool{false, false, false, false}; !reflect.DeepEqual(readonly, want) {
		t.Errorf("readonly = %v", readonly)
	}
	// The same script split without preparing.
	if got := SplitStatements(script); !reflect.DeepEqual(got, want) {
		t.Errorf("SplitStatements:\n got %q\nwant %q", got, want)
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ;; -- only a comment\n /* and another */ ", nil},
		{"SELECT 1", []string{"SELECT 1"}},
		{"SELECT 1;SELECT 2;", []string{"SELECT 1;", "SELECT 2;"}},
		{"SELECT 'a;b'; SELECT \"c;d\"; SELECT [e;f]; SELECT `g;h`;", []string{"SELECT 'a;b';", `SELECT "c;d";`, "SELECT [e;f];", "SELECT `g;h`;"}},
		{"SELECT 'it''s; fine';", []string{"SELECT 'it''s; fine';"}},
		{"SELECT 1 -- one; two\n; SELECT 2 /* ; */;", []string{"SELECT 1 -- one; two\n;", "SELECT 2 /* ; */;"}},
		{"-- head\nSELECT 1; -- tail", []string{"SELECT 1;"}},
		{";; /* x */ SELECT 1", []string{"SELECT 1"}},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO a VALUES(1); DELETE FROM b; END; SELECT 2",
			[]string{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO a VALUES(1); DELETE FROM b; END;", "SELECT 2"}},
		{"CREATE TEMP TRIGGER IF NOT EXISTS tr INSTEAD OF UPDATE ON v BEGIN SELECT ';'; END ;",
			[]string{"CREATE TEMP TRIGGER IF NOT EXISTS tr INSTEAD OF UPDATE ON v BEGIN SELECT ';'; END ;"}},
		{"BEGIN; INSERT INTO t VALUES(1); END;", []string{"BEGIN;", "INSERT INTO t VALUES(1);", "END;"}},
		{"SELECT 'unterminated; SELECT 2;", []string{"SELECT 'unterminated; SELECT 2;"}},
		{"SELECT 1; \x00 SELECT 2;", []string{"SELECT 1;"}},
		// A vertical tab after whitespace is whitespace for SQLite (found
		// by FuzzSplitStatements: " \v" was a statement), not at the start
		// of a token.
		{" \v", nil},
		{"SELECT 1; \v", []string{"SELECT 1;"}},
		{"SELECT 1 \v\v; -- c\n\vSELECT 2 \v", []string{"SELECT 1 \v\v;", "SELECT 2"}},
		{"SELECT 1;\vSELECT 2", []string{"SELECT 1;", "\vSELECT 2"}},
		{"SELECT 1\v \v", []string{"SELECT 1\v"}},
	}
	for _, tc := range tests {
		if got := SplitStatements(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitStatements(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

const countForever = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n`

func TestWithContextInterrupts(t *testing.T) {
	db, _ := openDB(t, "")
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = Raw(ctx, conn, func(c *Conn) error {
		tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := c.WithContext(tctx, func() error {
			_, err := c.Query(countForever)
			return err
		})
		// Counting to 1e9 takes minutes; generous bound for loaded CI machines.
		d := time.Since(start)
		t.Logf("query stopped %v after start (deadline 100ms)", d)
		if d > 5*time.Second {
			t.Errorf("interrupt took %v", d)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrInterrupted) {
			t.Errorf("got %v, want deadline exceeded and SQLITE_INTERRUPT", err)
		}
		t.Logf("interrupted: %v", err)
		if sqlite3.Xsqlite3_is_interrupted(c.tls, c.db) != 0 {
			t.Error("interrupt flag still set after WithContext")
		}
		if got := one(t, c, `SELECT 41 + 1`); got != int64(42) {
			t.Errorf("after interrupt: %v", got)
		}

		// A context that ends between statements stops the next one too.
		cctx, ccancel := context.WithCancel(ctx)
		start = time.Now()
		err = c.WithContext(cctx, func() error {
			ccancel()
			_, err := c.Query(countForever)
			return err
		})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Errorf("canceled before the statement: %v after %v", err, time.Since(start))
		}

		// A context that is done already: fn does not run.
		if err := c.WithContext(tctx, func() error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("done context: %v", err)
		}
		// fn that finishes before the context ends is not affected.
		lctx, lcancel := context.WithTimeout(ctx, time.Minute)
		defer lcancel()
		if err := c.WithContext(lctx, func() error { return c.Exec(`SELECT 1`) }); err != nil {
			t.Error(err)
		}

		// Nested: the inner deadline stops the inner query only; the outer
		// context then stops what follows.
		octx, ocancel := context.WithCancel(ctx)
		err = c.WithContext(octx, func() error {
			ictx, icancel := context.WithTimeout(octx, 50*time.Millisecond)
			defer icancel()
			err := c.WithContext(ictx, func() error { _, err := c.Query(countForever); return err })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("inner: %v", err)
			}
			if got := one(t, c, `SELECT 2`); got != int64(2) {
				t.Errorf("between: %v", got)
			}
			time.AfterFunc(50*time.Millisecond, ocancel)
			_, err = c.Query(countForever)
			return err
		})
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrInterrupted) {
			t.Errorf("outer: %v", err)
		}

		// Interrupt from another goroutine.
		timer := time.AfterFunc(100*time.Millisecond, c.Interrupt)
		defer timer.Stop()
		if _, err := c.Query(countForever); !errors.Is(err, ErrInterrupted) {
			t.Errorf("Interrupt: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The connection goes back to the pool (MaxOpenConns 1) and still works.
	conn.Close()
	var n int
	if err := db.QueryRow(`SELECT 7`).Scan(&n); err != nil || n != 7 {
		t.Fatalf("pool after interrupt: %v %v", n, err)
	}

	// Raw with a context: the deadline bounds fn.
	conn, err = db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = Raw(tctx, conn, func(c *Conn) error {
		_, err := c.Query(countForever)
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Raw with deadline: %v", err)
	}
	called := false
	if err := Raw(tctx, conn, func(*Conn) error { called = true; return nil }); !errors.Is(err, context.DeadlineExceeded) || called {
		t.Errorf("Raw with a done context: %v, called=%v", err, called)
	}
}

// TestInterruptRace calls Interrupt from other goroutines while statements
// run and after Raw returned; run with -race.
func TestInterruptRace(t *testing.T) {
	db, _ := openDB(t, "")
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var kept *Conn
	var wg sync.WaitGroup
	stop := make(chan struct{})
	err = Raw(ctx, conn, func(c *Conn) error {
		kept = c
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						c.Interrupt()
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		for range 200 {
			if _, err := c.Query(`SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 10000) SELECT i FROM n)`); err != nil && !errors.Is(err, ErrInterrupted) {
				return err
			}
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	kept.Interrupt() // after Raw: a no-op
}

func TestStepErrorAndReset(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		mustExec(t, c, `CREATE TABLE u(a INTEGER PRIMARY KEY, b NOT NULL)`)
		s, _, err := c.Prepare(`INSERT INTO u VALUES(?, ?)`)
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Readonly() {
			t.Error("INSERT is readonly")
		}
		step := func(args ...any) error {
			if err := s.BindAll(args...); err != nil {
				return err
			}
			_, err := s.Step()
			if rerr := s.Reset(); rerr != nil {
				t.Errorf("Reset after %v: %v", err, rerr)
			}
			return err
		}
		if err := step(1, "x"); err != nil {
			return err
		}
		err = step(1, "y")
		var e *Error
		if !errors.As(err, &e) || e.CodeName() != "SQLITE_CONSTRAINT_PRIMARYKEY" || e.Msg != "UNIQUE constraint failed: u.a" {
			t.Errorf("duplicate key: %#v", err)
		}
		if err := step(2, nil); !errors.As(err, &e) || e.CodeName() != "SQLITE_CONSTRAINT_NOTNULL" {
			t.Errorf("NOT NULL: %v", err)
		}
		if err := step(2, "y"); err != nil {
			t.Errorf("after errors: %v", err)
		}
		// Step failing without Reset: Close does not repeat the error.
		s2, _, err := c.Prepare(`INSERT INTO u VALUES(1, 'z')`)
		if err != nil {
			return err
		}
		if _, err := s2.Step(); err == nil {
			t.Error("no error")
		}
		if err := s2.Close(); err != nil {
			t.Errorf("Close after failed Step: %v", err)
		}
		if err := s2.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := s2.Step(); err == nil {
			t.Error("Step after Close: no error")
		}

		if err := s.ClearBindings(); err != nil {
			return err
		}
		// A step on the cleared statement binds NULLs: NOT NULL fails.
		if _, err := s.Step(); !errors.Is(err, ErrConstraint) {
			t.Errorf("after ClearBindings: %v", err)
		}
		if err := s.Reset(); err != nil {
			t.Error(err)
		}
		if got := one(t, c, `SELECT count(*) FROM u`); got != int64(2) {
			t.Errorf("count = %v", got)
		}
		return nil
	})
}

// TestLeftOpenStatements checks that Raw finalizes statements fn leaves
// open, so a half-read SELECT does not keep its read transaction.
func TestLeftOpenStatements(t *testing.T) {
	db, _ := openDB(t, "")
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var leaked *Stmt
	err = Raw(ctx, conn, func(c *Conn) error {
		if err := c.Exec(`CREATE TABLE t(a); INSERT INTO t VALUES(1), (2)`); err != nil {
			return err
		}
		s, _, err := c.Prepare(`SELECT a FROM t`)
		if err != nil {
			return err
		}
		if _, err := s.Step(); err != nil {
			return err
		}
		leaked = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaked.Step(); err == nil {
		t.Error("statement usable after Raw")
	}
	if leaked.Column(0) != nil || leaked.Close() != nil {
		t.Error("closed statement misbehaves")
	}
	err = Raw(ctx, conn, func(c *Conn) error {
		if n := liveStmts(c); n != 0 {
			t.Errorf("%d statements still live", n)
		}
		if !c.Autocommit() {
			t.Error("read transaction still open")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNoCheckpointOnClose(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			db, path := openDB(t, "_pragma=journal_mode(WAL)")
			db.SetMaxOpenConns(1)
			run(t, db, func(c *Conn) error {
				if mode := one(t, c, `PRAGMA journal_mode`); mode != "wal" {
					t.Fatalf("journal_mode = %v", mode)
				}
				if err := c.SetNoCheckpointOnClose(on); err != nil {
					return err
				}
				return c.Exec(`CREATE TABLE t(x); INSERT INTO t VALUES(randomblob(50000))`)
			})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path + "-wal")
			switch {
			case on && err != nil:
				t.Fatalf("WAL file gone: %v", err)
			case on && fi.Size() == 0:
				t.Fatal("WAL file empty")
			case on:
				t.Logf("WAL left with %d bytes", fi.Size())
			case !on && !os.IsNotExist(err):
				t.Fatalf("WAL file still there: %v", err)
			}
			// Either way the data is there when the database is opened again.
			db2, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db2.Close()
			var n int
			if err := db2.QueryRow(`SELECT length(x) FROM t`).Scan(&n); err != nil || n != 50000 {
				t.Fatalf("reopened: %d, %v", n, err)
			}
		})
	}
}

// TestDBPage patches a database opened with plain sql.Open("sqlite", path)
// page by page through sqlite_dbpage, which needs defensive mode off.
func TestDBPage(t *testing.T) {
	ctx := context.Background()
	src, _ := openDB(t, "")
	if _, err := src.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE INDEX tv ON t(v);
		INSERT INTO t(v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) SELECT printf('row %d', i) FROM n`); err != nil {
		t.Fatal(err)
	}
	var pages [][]any
	run(t, src, func(c *Conn) error {
		pages = mustQuery(t, c, `SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno`)
		return nil
	})

	dst, _ := openDB(t, "")
	if _, err := dst.Exec(`CREATE TABLE other(x); INSERT INTO other VALUES(zeroblob(200000))`); err != nil {
		t.Fatal(err)
	}
	// Another connection, with the old pages in its cache.
	other, err := dst.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var n int
	if err := other.QueryRowContext(ctx, `SELECT count(*) FROM other`).Scan(&n); err != nil {
		t.Fatal(err)
	}

	patcher, err := dst.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer patcher.Close()
	err = Raw(ctx, patcher, func(c *Conn) error {
		// Defensive mode blocks it.
		if err := c.SetDefensive(true); err != nil {
			return err
		}
		err := c.Exec(`INSERT INTO sqlite_dbpage(pgno, data) VALUES(?, ?)`, pages[0]...)
		t.Logf("defensive on: %v", err)
		if err == nil {
			t.Error("sqlite_dbpage write allowed in defensive mode")
		}
		if err := c.SetDefensive(false); err != nil {
			return err
		}

		dstPages := one(t, c, `PRAGMA page_count`).(int64)
		mustExec(t, c, `BEGIN IMMEDIATE`)
		s, _, err := c.Prepare(`INSERT INTO sqlite_dbpage(pgno, data) VALUES(?, ?)`)
		if err != nil {
			return err
		}
		defer s.Close()
		for _, p := range pages {
			if err := s.BindAll(p...); err != nil {
				return err
			}
			if _, err := s.Step(); err != nil {
				return err
			}
			if err := s.Reset(); err != nil {
				return err
			}
		}
		// Truncate to the source's size; this row must come last.
		if n := int64(len(pages)); dstPages > n {
			mustExec(t, c, `INSERT INTO sqlite_dbpage(pgno, data) VALUES(?, NULL)`, n+1)
		}
		mustExec(t, c, `COMMIT`)

		// The file is right now, but this connection's parsed b-tree pages
		// and schema predate the patch: it cannot be trusted any more.
		count, err := c.Query(`SELECT count(*) FROM t`)
		t.Logf("patching connection after the patch: count=%v err=%v integrity=%q", count, err,
			mustQuery(t, c, `PRAGMA integrity_check`))
		// So have database/sql close it.
		return driver.ErrBadConn
	})
	if !errors.Is(err, driver.ErrBadConn) {
		t.Fatal(err)
	}
	if err := patcher.PingContext(ctx); !errors.Is(err, sql.ErrConnDone) {
		t.Errorf("patching connection not discarded: %v", err)
	}

	// Other connections notice the change and drop their cache.
	var check string
	if err := other.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2000 {
		t.Errorf("other connection: %d rows, %v", n, err)
	}
	if err := other.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("other connection: integrity_check %q %v", check, err)
	}
	other.Close()
	// And a new one sees the source's content.
	dst.SetMaxIdleConns(0)
	if err := dst.QueryRow(`SELECT count(*) FROM t WHERE v LIKE 'row %'`).Scan(&n); err != nil || n != 2000 {
		t.Fatalf("patched database: %d rows, %v", n, err)
	}
	if err := dst.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	run(t, dst, func(c *Conn) error {
		got := mustQuery(t, c, `SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno`)
		if len(got) != len(pages) {
			t.Fatalf("%d pages, want %d", len(got), len(pages))
		}
		for i := 1; i < len(got); i++ { // page 1 differs in the change counter
			if !reflect.DeepEqual(got[i], pages[i]) {
				t.Errorf("page %d differs", i+1)
			}
		}
		return nil
	})
}

// TestAfterRaw checks that a retained Conn fails loudly, and that a panic in
// fn (under a context) leaves the connection pool working.
func TestAfterRaw(t *testing.T) {
	db, _ := openDB(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kept *Conn
	if err := Raw(ctx, conn, func(c *Conn) error { kept = c; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kept.Prepare(`SELECT 1`); !errors.Is(err, errDone) {
		t.Errorf("Prepare after Raw: %v", err)
	}
	if err := kept.Exec(`SELECT 1`); !errors.Is(err, errDone) {
		t.Errorf("Exec after Raw: %v", err)
	}
	if err := kept.SetDefensive(false); !errors.Is(err, errDone) {
		t.Errorf("SetDefensive after Raw: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != errDone {
				t.Errorf("Autocommit after Raw: recovered %v", r)
			}
		}()
		kept.Autocommit()
	}()

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v", r)
			}
		}()
		Raw(ctx, conn, func(c *Conn) error {
			if _, _, err := c.Prepare(`SELECT 1`); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	cancel()
	var n int
	if err := db.QueryRow(`SELECT 5`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("after panic: %v %v", n, err)
	}
}

func TestReflectAccess(t *testing.T) {
	for _, dc := range []any{
		nil,
		42,
		&struct{ db uintptr }{},
		&struct {
			db  uintptr
			tls uintptr
		}{},
		&struct {
			db  int
			tls uintptr
		}{},
	} {
		_, err := newConn(dc)
		if err == nil {
			t.Errorf("newConn(%T): no error", dc)
			continue
		}
		t.Logf("%T: %v", dc, err)
	}
	if _, err := newConn(&struct{ db uintptr }{}); err == nil || !strings.Contains(err.Error(), "internals changed") {
		t.Errorf("unclear error: %v", err)
	}

	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		if got := reflect.TypeOf(c.Driver()).String(); got != "*sqlite.conn" {
			t.Errorf("Driver() is %s", got)
		}
		if _, ok := reflect.TypeOf(c.Driver()).MethodByName("RegisterPreUpdateHook"); !ok {
			t.Error("driver connection has no RegisterPreUpdateHook")
		}
		if _, ok := reflect.TypeOf(c.Driver()).MethodByName("RegisterCommitHook"); !ok {
			t.Error("driver connection has no RegisterCommitHook")
		}
		// The handle is the live connection: its file name is ours.
		if got := one(t, c, `SELECT file FROM pragma_database_list WHERE name = 'main'`).(string); !strings.HasSuffix(got, "test.db") {
			t.Errorf("database file %q", got)
		}
		return nil
	})
}

func TestErrorIs(t *testing.T) {
	snap := &Error{Code: sqlite3.SQLITE_BUSY_SNAPSHOT, Msg: "x"}
	if !errors.Is(snap, ErrBusy) || errors.Is(snap, ErrLocked) || snap.CodeName() != "SQLITE_BUSY_SNAPSHOT" {
		t.Errorf("BUSY_SNAPSHOT: Is(ErrBusy)=%v name=%s", errors.Is(snap, ErrBusy), snap.CodeName())
	}
	if errors.Is(&Error{Code: sqlite3.SQLITE_BUSY}, &Error{Code: sqlite3.SQLITE_BUSY_SNAPSHOT}) {
		t.Error("primary code matches an extended target")
	}
	if got := (&Error{Code: 99<<8 | sqlite3.SQLITE_IOERR}).CodeName(); got != "SQLITE_IOERR" {
		t.Errorf("unknown extended code: %s", got)
	}
	if got := (&Error{Code: sqlite3.SQLITE_CONSTRAINT_UNIQUE, Msg: "UNIQUE constraint failed: t.a"}).Error(); got != "sqlite: UNIQUE constraint failed: t.a (SQLITE_CONSTRAINT_UNIQUE)" {
		t.Errorf("Error() = %q", got)
	}
}

// TestResetCacheInTransaction: inside a transaction SQLite keeps the page
// cache whatever SQLITE_FCNTL_RESET_CACHE asks, and says nothing, so
// ResetCache refuses there (the caller replaces the connection instead):
// a transaction begun, and a statement stepped and not reset, whose read
// transaction leaves autocommit on; outside one it succeeds and the
// connection reads the database as before.
func TestResetCacheInTransaction(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		mustExec(t, c, `CREATE TABLE t(x); INSERT INTO t VALUES(1)`)
		mustExec(t, c, `BEGIN; INSERT INTO t VALUES(2)`)
		if err := c.ResetCache(); !errors.Is(err, errInTransaction) {
			t.Errorf("ResetCache in a transaction: %v, want errInTransaction", err)
		}
		mustExec(t, c, `COMMIT`)
		open, _, err := c.Prepare(`SELECT x FROM t`)
		if err != nil {
			t.Fatal(err)
		}
		if row, err := open.Step(); !row || err != nil {
			t.Fatal(row, err)
		}
		if !c.Autocommit() {
			t.Fatal("a stepped SELECT turned autocommit off")
		}
		if err := c.ResetCache(); !errors.Is(err, errInTransaction) && !errors.Is(err, errCacheKept) {
			t.Errorf("ResetCache with a statement stepped, not reset: %v, want errInTransaction or errCacheKept", err)
		}
		open.Close()
		if err := c.ResetCache(); err != nil {
			t.Fatalf("ResetCache: %v", err)
		}
		if n := one(t, c, `SELECT count(*) FROM t`).(int64); n != 2 {
			t.Errorf("after ResetCache: %d rows, want 2", n)
		}
		return nil
	})
}

// TestBusyStatement: a statement stepped and not reset is busy; one run to
// completion, reset or closed is not.
func TestBusyStatement(t *testing.T) {
	db, _ := openDB(t, "")
	run(t, db, func(c *Conn) error {
		mustExec(t, c, `CREATE TABLE t(x); INSERT INTO t VALUES(1), (2)`)
		if c.BusyStatement() {
			t.Fatal("busy with no statement stepped")
		}
		s, _, err := c.Prepare(`SELECT x FROM t`)
		if err != nil {
			t.Fatal(err)
		}
		if c.BusyStatement() {
			t.Fatal("busy with a statement prepared, not stepped")
		}
		if row, err := s.Step(); !row || err != nil {
			t.Fatal(row, err)
		}
		if !c.BusyStatement() {
			t.Fatal("not busy with a statement stepped once")
		}
		for {
			row, err := s.Step()
			if err != nil {
				t.Fatal(err)
			}
			if !row {
				break
			}
		}
		if c.BusyStatement() {
			t.Fatal("busy with a statement run to completion")
		}
		s.Close()
		return nil
	})
}
