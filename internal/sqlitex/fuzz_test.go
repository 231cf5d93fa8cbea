package sqlitex

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

// Fuzz targets of the hand-written SQL readers. Each checks that the reader
// neither panics nor runs long, and agrees with SQLite itself on what it
// claims, for a statement that SQLite prepares and runs on a real
// connection: WriteTarget's table and operation with the authorizer's
// write, ReadInsert's columns, NULLs and parameters with the row SQLite
// stores, InsertsOmit's "no value for the key" with key columns left NULL.
// A reader may say less than SQLite knows (an empty Write, Read false,
// InsertsOmit false): that is refused or taken as the user's, never a
// silent error. `go test` runs the seeds (the unit tests' cases) and
// testdata/fuzz.

// fuzzSeeds are the statements of the unit tests and a few more shapes.
var fuzzSeeds = []string{
	"INSERT INTO t VALUES(1)", "insert into T(a, b) values(1, 2)", "INSERT OR IGNORE INTO t VALUES(1)",
	"INSERT or replace INTO t DEFAULT VALUES", "REPLACE INTO t VALUES(1)", "UPDATE t SET v = 1",
	"UPDATE OR ROLLBACK t SET v = 1", "UPDATE or fail main.t SET v = 1", "DELETE FROM t WHERE id = 1",
	"DELETE FROM temp . t", `INSERT INTO "my ""t""" VALUES(1)`, "INSERT INTO `a``b` VALUES(1)",
	"INSERT INTO [x y] VALUES(1)", "INSERT INTO 'lit' VALUES(1)", `UPDATE "main"."Order" SET v = 1`,
	"  -- a comment\n /* another */ DELETE /* here */ FROM\tt;", "INSERT INTO t AS x VALUES(1) ON CONFLICT DO NOTHING",
	"INSERT INTO t VALUES(1, 'do update') ON CONFLICT(id) DO UPDATE SET v = excluded.v",
	"insert into t select * from u where true on conflict do nothing on conflict (id) do /* c */ update set v = 1",
	"DELETE; FROM t", "INSERT INTO t VALUES(1); UPDATE u SET v = 1", "WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c",
	"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 3), d AS NOT MATERIALIZED (SELECT ')' AS p) DELETE FROM main.t WHERE id IN c",
	`WITH "update" AS MATERIALIZED (SELECT (1)) UPDATE OR IGNORE u SET v = 2`, "with replace as (select 1) replace into r select * from replace",
	"SELECT * FROM t", "CREATE TABLE t(a)", "INSERT t VALUES(1)", `INSERT INTO "unterminated`, "WITH c AS (SELECT 1", "",
	"INSERT INTO t(v) VALUES(?)",
	"insert or ignore into main.\"t\" as x ([id], `v`) values (NULL, 'a, (b)'), (?2, :v), (?, :v) ON CONFLICT(v) DO UPDATE SET v = ?",
	"REPLACE INTO t VALUES((SELECT max(id) FROM x) + 1, 'a'), (?+1, f(?, ?)), (@a, $b) RETURNING id",
	"WITH c(x) AS (SELECT ?5) INSERT INTO t VALUES(?, /* ? */ '?'||x'3f' -- ?\n)",
	"INSERT INTO profiles(id, name) SELECT id, name FROM users", "INSERT INTO t(id, v) VALUES(NULL, 'z') UNION ALL SELECT 5, 'a'",
	"INSERT INTO t VALUES(NULL, 'z') union values(5, 'a')", "INSERT INTO t VALUES(NULL, 'z') ORDER BY 1 LIMIT 1",
	"INSERT INTO t VALUES($a::b, 1)", "INSERT INTO t VALUES($a(x), 1)", "INSERT INTO t(v VALUES(1)", "INSERT INTO t VALUES(1",
	"INSERT INTO t(id, v) VALUES(?1, ?), (:a, @a), (#b, ?3)", "INSERT INTO t(v, rowid) VALUES(1, NULL)",
	"INSERT INTO vt VALUES(1, 'view')", "INSERT INTO t(v) VALUES(1) RETURNING *",
	"CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN INSERT INTO t(v) VALUES(new.v); END",
	"CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN INSERT OR IGNORE INTO main.t AS x (\"v\") SELECT 1; END",
	"CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN INSERT INTO other VALUES(1); INSERT INTO temp.t VALUES(1); UPDATE t SET id = 2; END",
	"CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN SELECT replace(v, 'INSERT INTO t VALUES(1)', ''), 'insert into t select 1' FROM t; END",
	"CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN INSERT INTO T(v, ID) VALUES(new.v, 1); END",
	"CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN REPLACE INTO t(oid, v) VALUES(1, new.v); END",
}

// fuzzConn is a connection to a database of its own for one fuzz target.
func fuzzConn(f *testing.F, schema string) *sql.Conn {
	db, err := sql.Open("sqlite", "file:"+f.Name()+"?mode=memory&cache=private")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	if schema != "" {
		if _, err := conn.ExecContext(context.Background(), schema); err != nil {
			f.Fatal(err)
		}
	}
	return conn
}

// bounded runs fn and fails if it takes long: a reader that loops.
func bounded(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10 s", what)
	}
}

// cutNUL is the text SQLite reads (and SplitStatements hands on).
func cutNUL(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

func quoteName(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// topWrites prepares stmt's first statement and returns the writes the
// authorizer saw outside triggers and views, schema tables left out; ok
// false if it does not prepare.
func topWrites(c *Conn, stmt string) (writes []Action, st *Stmt, ok bool) {
	var seen []Action
	c.SetAuthorizer(func(a Action) AuthResult {
		seen = append(seen, a)
		return AuthOK
	})
	st, _, err := c.Prepare(stmt)
	c.SetAuthorizer(nil)
	if err != nil || st == nil {
		return nil, nil, false
	}
	for _, a := range seen {
		switch a.Code {
		case sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE:
			if a.Inner == "" && !strings.HasPrefix(strings.ToLower(a.Arg1), "sqlite_") {
				writes = append(writes, a)
			}
		}
	}
	return writes, st, true
}

func FuzzWriteTarget(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	conn := fuzzConn(f, `CREATE TABLE t(id INTEGER PRIMARY KEY, v, a, b);
		CREATE TABLE u(id INTEGER PRIMARY KEY, v UNIQUE);
		CREATE TABLE "x y"(id INTEGER PRIMARY KEY, v);
		CREATE TABLE "Order"(id INTEGER PRIMARY KEY, v);
		CREATE TABLE "my ""t"""(id INTEGER PRIMARY KEY, v);
		CREATE VIEW vt AS SELECT id, v FROM t;
		CREATE TRIGGER vt_ins INSTEAD OF INSERT ON vt BEGIN INSERT INTO t(v) VALUES(new.v); END;
		CREATE TEMP TABLE tt(id INTEGER PRIMARY KEY, v);`)
	f.Fuzz(func(t *testing.T, stmt string) {
		stmt = cutNUL(stmt)
		var w Write
		bounded(t, "WriteTarget", func() { w = WriteTarget(stmt) })
		if w.Table == "" {
			return
		}
		if err := Raw(context.Background(), conn, func(c *Conn) error {
			writes, st, ok := topWrites(c, stmt)
			if !ok {
				return nil
			}
			st.Close()
			if len(writes) == 0 {
				return fmt.Errorf("WriteTarget(%q) = %+v, but SQLite's statement writes nothing", stmt, w)
			}
			op, upsert := "", false
			first := writes[0]
			for _, a := range writes {
				if !strings.EqualFold(a.Arg1, first.Arg1) || a.DB != first.DB {
					return fmt.Errorf("%q writes %s.%s and %s.%s", stmt, first.DB, first.Arg1, a.DB, a.Arg1)
				}
				switch a.Code {
				case sqlite3.SQLITE_INSERT:
					op = "INSERT"
				case sqlite3.SQLITE_UPDATE:
					if op == "INSERT" {
						upsert = true
					} else if op == "" {
						op = "UPDATE"
					}
				case sqlite3.SQLITE_DELETE:
					if op == "" {
						op = "DELETE"
					}
				}
			}
			if !strings.EqualFold(w.Table, first.Arg1) || w.Schema != "" && !strings.EqualFold(w.Schema, first.DB) || w.Op != op || w.Upsert != upsert {
				return fmt.Errorf("WriteTarget(%q) = %+v, SQLite writes %s.%s: %s (upsert %v)", stmt, w, first.DB, first.Arg1, op, upsert)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// insertRun is a statement run on a table made for it: its columns, and
// the rows it inserted (every column, by name), in order.
type insertRun struct {
	cols []string
	rows []map[string]any
}

// param is the value bound to parameter i: distinct for each.
func param(i int) int64 { return 1_000_000 + int64(i) }

// runInsert creates table (in schema: "" or main, or temp) with plain
// columns cols (no type, no default, no key), prepares stmt and, if
// SQLite writes that table with an insert and nothing else, runs it with
// every parameter i bound to param(i). ok is false if any of it fails:
// the statement cannot be checked. It runs in a transaction rolled back
// after.
func runInsert(c *Conn, stmt, schema, table string, cols []string) (run insertRun, ok bool, err error) {
	if err := c.Exec("BEGIN"); err != nil {
		return run, false, err
	}
	defer func() {
		if !c.Autocommit() {
			if rerr := c.Exec("ROLLBACK"); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	temp := ""
	switch {
	case strings.EqualFold(schema, "temp"):
		temp = "TEMP "
	case schema != "" && !strings.EqualFold(schema, "main"):
		return run, false, nil
	}
	defs := make([]string, len(cols))
	for i, col := range cols {
		defs[i] = quoteName(col)
	}
	if err := c.Exec("CREATE " + temp + "TABLE " + quoteName(table) + "(" + strings.Join(defs, ", ") + ")"); err != nil {
		return run, false, nil
	}
	writes, st, ok := topWrites(c, stmt)
	if !ok {
		return run, false, nil
	}
	defer st.Close()
	for _, a := range writes {
		if a.Code != sqlite3.SQLITE_INSERT || !strings.EqualFold(a.Arg1, table) {
			return run, false, nil // another table's, or an upsert's update
		}
	}
	if len(writes) == 0 {
		return run, false, nil
	}
	for i := 1; i <= st.ParamCount(); i++ {
		if err := st.Bind(i, param(i)); err != nil {
			return run, false, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.WithContext(ctx, func() error {
		for {
			row, err := st.Step()
			if err != nil || !row {
				return err
			}
		}
	}); err != nil {
		return run, false, nil // SQLite's own error: unchecked
	}
	sel := make([]string, len(cols))
	for i, col := range cols {
		sel[i] = quoteName(col)
	}
	got, err := c.Query("SELECT " + strings.Join(sel, ", ") + " FROM " + quoteName(table) + " ORDER BY rowid")
	if err != nil {
		return run, false, err
	}
	run.cols = cols
	for _, r := range got {
		m := map[string]any{}
		for i, col := range cols {
			m[strings.ToLower(col)] = r[i]
		}
		run.rows = append(run.rows, m)
	}
	return run, true, nil
}

// words are the names a statement's tokens could give a column, without
// case duplicates, at most 60.
func words(stmt string) []string {
	tk := targetTokens{s: stmt}
	seen := map[string]bool{}
	var out []string
	for len(out) < 60 {
		tok := tk.scan()
		if tok.text == "" {
			if tk.s == "" {
				break
			}
			continue
		}
		if !tok.ident() {
			continue
		}
		n := tok.name()
		if n == "" || seen[strings.ToLower(n)] {
			continue
		}
		seen[strings.ToLower(n)] = true
		out = append(out, n)
	}
	return out
}

func addCols(cols []string, more ...string) []string {
	seen := map[string]bool{}
	for _, c := range cols {
		seen[strings.ToLower(c)] = true
	}
	for _, m := range more {
		if !seen[strings.ToLower(m)] {
			seen[strings.ToLower(m)] = true
			cols = append(cols, m)
		}
	}
	return cols
}

func FuzzReadInsert(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	conn := fuzzConn(f, "")
	f.Fuzz(func(t *testing.T, stmt string) {
		stmt = cutNUL(stmt)
		var ins Insert
		bounded(t, "ReadInsert", func() { ins = ReadInsert(stmt) })
		if !ins.Read {
			return
		}
		w := WriteTarget(stmt)
		if w.Table == "" {
			return
		}
		var cols []string
		switch {
		case ins.Columns != nil:
			seen := map[string]bool{}
			for _, c := range ins.Columns {
				if seen[strings.ToLower(c)] {
					return // SQLite refuses a column named twice
				}
				seen[strings.ToLower(c)] = true
			}
			cols = addCols(append([]string(nil), ins.Columns...), append(words(stmt), "zz_omitted", "rowid", "oid", "_rowid_")...)
		case ins.DefaultValues || ins.Select:
			cols = addCols(words(stmt), "zz_omitted", "rowid", "oid", "_rowid_")
		default:
			for i := range ins.Rows[0] {
				cols = append(cols, fmt.Sprintf("c%d", i+1))
			}
		}
		if err := Raw(context.Background(), conn, func(c *Conn) error {
			run, ok, err := runInsert(c, stmt, w.Schema, w.Table, cols)
			if err != nil || !ok {
				return err
			}
			listed := map[string]bool{}
			for _, col := range ins.Columns {
				listed[strings.ToLower(col)] = true
			}
			for i, r := range run.rows {
				for _, col := range run.cols {
					if (ins.DefaultValues || ins.Columns != nil && !listed[strings.ToLower(col)]) && r[strings.ToLower(col)] != nil {
						return fmt.Errorf("ReadInsert(%q) = %+v: row %d gives %s (not in its columns) the value %v", stmt, ins, i, col, r[strings.ToLower(col)])
					}
				}
			}
			if ins.DefaultValues && len(run.rows) != 1 {
				return fmt.Errorf("ReadInsert(%q) = %+v: DEFAULT VALUES inserted %d rows", stmt, ins, len(run.rows))
			}
			if ins.Select || ins.DefaultValues {
				return nil
			}
			if len(run.rows) != len(ins.Rows) {
				return fmt.Errorf("ReadInsert(%q) = %+v: %d rows, SQLite inserted %d", stmt, ins, len(ins.Rows), len(run.rows))
			}
			for i, row := range ins.Rows {
				for j, v := range row {
					col := fmt.Sprintf("c%d", j+1)
					if ins.Columns != nil {
						if j >= len(ins.Columns) {
							return fmt.Errorf("ReadInsert(%q) = %+v: row %d has more values than columns, yet SQLite ran it", stmt, ins, i)
						}
						col = ins.Columns[j]
					}
					got := run.rows[i][strings.ToLower(col)]
					switch {
					case v.Null && got != nil:
						return fmt.Errorf("ReadInsert(%q) = %+v: row %d value %d is NULL, SQLite stored %v", stmt, ins, i, j, got)
					case v.Param != "" && got != param(v.N):
						return fmt.Errorf("ReadInsert(%q) = %+v: row %d value %d is parameter %s number %d (%d), SQLite stored %v", stmt, ins, i, j, v.Param, v.N, param(v.N), got)
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// insertPieces are the statements of text, and those of the bodies of the
// triggers it creates.
func insertPieces(text string) []string {
	var out []string
	for _, s := range SplitStatements(text) {
		out = append(out, s)
		if FirstKeyword(s) != "CREATE" {
			continue
		}
		tk := targetTokens{s: s}
		for {
			tok := tk.scan()
			if tok.text == "" && tk.s == "" {
				break
			}
			if tok.is("BEGIN") {
				body := tk.s
				for i := len(body) - 3; i >= 0; i-- {
					if strings.EqualFold(body[i:i+3], "END") {
						body = body[:i]
						break
					}
				}
				out = append(out, SplitStatements(body)...)
				break
			}
		}
	}
	return out
}

func FuzzInsertsOmit(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	conn := fuzzConn(f, "")
	keys := []string{"id", "rowid", "oid", "_rowid_"}
	f.Fuzz(func(t *testing.T, text string) {
		text = cutNUL(text)
		var omits bool
		bounded(t, "InsertsOmit", func() { omits = InsertsOmit(text, "t", keys...) })
		if !omits {
			return
		}
		for _, p := range insertPieces(text) {
			cols := addCols(append([]string(nil), keys...), append(words(p), "zz_omitted")...)
			if err := Raw(context.Background(), conn, func(c *Conn) error {
				run, ok, err := runInsert(c, p, "", "t", cols)
				if err != nil || !ok {
					return err
				}
				for i, r := range run.rows {
					for _, k := range keys {
						if r[k] != nil {
							return fmt.Errorf("InsertsOmit(%q) = true, but %q gives row %d's %s the value %v", text, p, i, k, r[k])
						}
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzSplitStatements(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Add("SELECT 1;SELECT 2;")
	f.Add("CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO a VALUES(1); DELETE FROM b; END; SELECT 2")
	conn := fuzzConn(f, "")
	f.Fuzz(func(t *testing.T, script string) {
		var stmts []string
		bounded(t, "SplitStatements", func() { stmts = SplitStatements(script) })
		bounded(t, "FirstKeyword", func() { FirstKeyword(script) })
		// SQLite's own split: prepare, take the tail, again. Each
		// statement SQLite finds must be one of ours, in order, as long
		// as every statement prepares.
		if err := Raw(context.Background(), conn, func(c *Conn) error {
			rest := cutNUL(script)
			var theirs []string
			for {
				st, tail, err := c.Prepare(rest)
				if err != nil {
					return nil // unchecked: SQLite stops at an error
				}
				if st == nil {
					break
				}
				theirs = append(theirs, st.SQL())
				st.Close()
				rest = tail
			}
			if len(theirs) != len(stmts) {
				return fmt.Errorf("SplitStatements(%q) = %q, SQLite's statements %q", script, stmts, theirs)
			}
			for i := range theirs {
				if norm(theirs[i]) != norm(stmts[i]) {
					return fmt.Errorf("SplitStatements(%q) = %q, SQLite's statements %q", script, stmts, theirs)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// norm is a statement without what surrounds it: blanks, comments, the
// final semicolon.
func norm(s string) string { return trimSpace(strings.TrimSuffix(stmtText(s), ";")) }
