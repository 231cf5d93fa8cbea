package sqlitex

import (
	"reflect"
	"testing"
)

func TestWriteTarget(t *testing.T) {
	ins := func(schema, table string) Write { return Write{Schema: schema, Table: table, Op: "INSERT"} }
	upd := func(schema, table string) Write { return Write{Schema: schema, Table: table, Op: "UPDATE"} }
	del := func(schema, table string) Write { return Write{Schema: schema, Table: table, Op: "DELETE"} }
	for _, c := range []struct {
		stmt string
		want Write
	}{
		{"INSERT INTO t VALUES(1)", ins("", "t")},
		{"insert into T(a, b) values(1, 2)", ins("", "T")},
		{"INSERT OR IGNORE INTO t VALUES(1)", ins("", "t")},
		{"INSERT or replace INTO t DEFAULT VALUES", ins("", "t")},
		{"REPLACE INTO t VALUES(1)", ins("", "t")},
		{"UPDATE t SET v = 1", upd("", "t")},
		{"UPDATE OR ROLLBACK t SET v = 1", upd("", "t")},
		{"UPDATE or fail main.t SET v = 1", upd("main", "t")},
		{"DELETE FROM t WHERE id = 1", del("", "t")},
		{"DELETE FROM temp . t", del("temp", "t")},
		{`INSERT INTO "my ""t""" VALUES(1)`, ins("", `my "t"`)},
		{"INSERT INTO `a``b` VALUES(1)", ins("", "a`b")},
		{"INSERT INTO [x y] VALUES(1)", ins("", "x y")},
		{"INSERT INTO 'lit' VALUES(1)", ins("", "lit")},
		{`UPDATE "main"."Order" SET v = 1`, upd("main", "Order")},
		{"  -- a comment\n /* another */ DELETE /* here */ FROM\tt;", del("", "t")},
		{"INSERT INTO t AS x VALUES(1) ON CONFLICT DO NOTHING", ins("", "t")},
		{"INSERT INTO t VALUES(1, 'do update') ON CONFLICT(id) DO UPDATE SET v = excluded.v",
			Write{Table: "t", Op: "INSERT", Upsert: true}},
		{"insert into t select * from u where true on conflict do nothing on conflict (id) do /* c */ update set v = 1",
			Write{Table: "t", Op: "INSERT", Upsert: true}},
		{"INSERT INTO t1", ins("", "t1")},
		{"DELETE; FROM t", Write{}}, // a semicolon ends the statement
		{"INSERT INTO t VALUES(1); UPDATE u SET v = 1", ins("", "t")},
		{"WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c", ins("", "t")},
		{"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 3), d AS NOT MATERIALIZED (SELECT ')' AS p) DELETE FROM main.t WHERE id IN c",
			del("main", "t")},
		{`WITH "update" AS MATERIALIZED (SELECT (1)) UPDATE OR IGNORE u SET v = 2`, upd("", "u")},
		{"with replace as (select 1) replace into r select * from replace", ins("", "r")},
		{"SELECT * FROM t", Write{}},
		{"WITH c AS (SELECT 1) SELECT * FROM c", Write{}},
		{"CREATE TABLE t(a)", Write{}},
		{"INSERT t VALUES(1)", Write{}},
		{"DELETE t", Write{}},
		{"INSERT INTO", Write{}},
		{"INSERT INTO main.", Write{}},
		{`INSERT INTO "unterminated`, Write{}},
		{"WITH c AS (SELECT 1", Write{}},
		{"", Write{}},
	} {
		if got := WriteTarget(c.stmt); got != c.want {
			t.Errorf("WriteTarget(%q) = %+v, want %+v", c.stmt, got, c.want)
		}
	}
}

func TestInsertsOmit(t *testing.T) {
	const trg = "CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN "
	for _, c := range []struct {
		text string
		want bool
	}{
		{trg + "INSERT INTO t(v) VALUES(new.v); END", true},
		{trg + "INSERT INTO t(v, n) VALUES(new.v, coalesce(new.n, 1)); END", true},
		{trg + "INSERT OR IGNORE INTO main.t AS x (\"v\") SELECT 1; END", true},
		{trg + "INSERT INTO t DEFAULT VALUES; END", true},
		{trg + "INSERT INTO other VALUES(1); INSERT INTO temp.t VALUES(1); UPDATE t SET id = 2; END", true},
		{trg + "SELECT replace(v, 'INSERT INTO t VALUES(1)', ''), 'insert into t select 1' FROM t; END", true},
		{"", true},
		{trg + "INSERT INTO t VALUES(new.id, new.v); END", false},
		{trg + "INSERT INTO T(v, ID) VALUES(new.v, 1); END", false},
		{trg + "INSERT INTO t(v, [rowid]) VALUES(new.v, 1); END", false},
		{trg + "REPLACE INTO t(oid, v) VALUES(1, new.v); END", false},
		{trg + "INSERT INTO t(v) VALUES(1); INSERT INTO main.\"t\" SELECT * FROM u; END", false},
		{trg + "INSERT INTO t(v", false},
		{trg + "INSERT INTO t(v) VALUES(1); END; " + trg + "INSERT INTO t(_rowid_) VALUES(1); END", false},
	} {
		if got := InsertsOmit(c.text, "t", "id", "rowid", "oid", "_rowid_"); got != c.want {
			t.Errorf("InsertsOmit(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

func TestReadInsert(t *testing.T) {
	p := func(param string, n int) Value { return Value{Param: param, N: n} }
	null, expr := Value{Null: true}, Value{}
	for _, c := range []struct {
		stmt string
		want Insert
	}{
		{"INSERT INTO t(v) VALUES(?)", Insert{Read: true, Columns: []string{"v"}, Rows: [][]Value{{p("?", 1)}}}},
		{"insert or ignore into main.\"t\" as x ([id], `v`) values (NULL, 'a, (b)'), (?2, :v), (?, :v) ON CONFLICT(v) DO UPDATE SET v = ?",
			Insert{Read: true, Columns: []string{"id", "v"}, Rows: [][]Value{{null, expr}, {p("?2", 2), p(":v", 3)}, {p("?", 4), p(":v", 3)}}}},
		{"REPLACE INTO t VALUES((SELECT max(id) FROM x) + 1, 'a'), (?+1, f(?, ?)), (@a, $b) RETURNING id",
			Insert{Read: true, Rows: [][]Value{{expr, expr}, {expr, expr}, {p("@a", 4), p("$b", 5)}}}},
		{"WITH c(x) AS (SELECT ?5) INSERT INTO t VALUES(?, /* ? */ '?'||x'3f' -- ?\n)",
			Insert{Read: true, Rows: [][]Value{{p("?", 6), expr}}}},
		{"INSERT INTO t DEFAULT VALUES", Insert{Read: true, DefaultValues: true}},
		{"INSERT INTO profiles(id, name) SELECT id, name FROM users", Insert{Read: true, Columns: []string{"id", "name"}, Select: true}},
		{"WITH c AS (SELECT 1) REPLACE INTO t SELECT * FROM c", Insert{Read: true, Select: true}},
		{"INSERT INTO t(id, v) VALUES(NULL, 'z') UNION ALL SELECT 5, 'a'",
			Insert{Read: true, Columns: []string{"id", "v"}, Select: true, Rows: [][]Value{{null, expr}}}},
		{"INSERT INTO t VALUES(NULL, 'z') union values(5, 'a')", Insert{Read: true, Select: true, Rows: [][]Value{{null, expr}}}},
		{"INSERT INTO t VALUES(NULL, 'z') ORDER BY 1 LIMIT 1", Insert{Read: true, Select: true, Rows: [][]Value{{null, expr}}}},
		{"INSERT INTO t VALUES($a::b, 1)", Insert{}},
		{"INSERT INTO t VALUES($a(x), 1)", Insert{}},
		{"INSERT INTO t(v VALUES(1)", Insert{}},
		{"INSERT INTO t VALUES(1", Insert{}},
		{"UPDATE t SET v = 1", Insert{}},
	} {
		if got := ReadInsert(c.stmt); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ReadInsert(%q) = %+v, want %+v", c.stmt, got, c.want)
		}
	}
}
