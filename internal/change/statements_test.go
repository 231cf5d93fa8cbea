package change

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/testutil"
)

// tbl describes a table as the capture side would.
type tbl struct {
	name  string
	cols  []string
	pk    []int
	alias bool
}

func (tb tbl) ins(rowid int64, after ...any) Change {
	return Change{Op: Insert, Table: tb.name, Columns: tb.cols, PK: tb.pk, RowidAlias: tb.alias, NewRowid: rowid, After: after}
}

func (tb tbl) upd(oldRowid, newRowid int64, before, after []any) Change {
	return Change{Op: Update, Table: tb.name, Columns: tb.cols, PK: tb.pk, RowidAlias: tb.alias,
		OldRowid: oldRowid, NewRowid: newRowid, Before: before, After: after}
}

func (tb tbl) del(rowid int64, before ...any) Change {
	return Change{Op: Delete, Table: tb.name, Columns: tb.cols, PK: tb.pk, RowidAlias: tb.alias, OldRowid: rowid, NewRowid: rowid, Before: before}
}

func row(vs ...any) []any { return vs }

func mustStatements(t *testing.T, c Change) []Stmt {
	t.Helper()
	stmts, err := Statements(c)
	if err != nil {
		t.Fatalf("Statements: %v", err)
	}
	return stmts
}

func TestStatementShapes(t *testing.T) {
	n := tbl{name: "n", cols: []string{"a", "b", "v"}, pk: []int{1, 0}}
	cases := []struct {
		name string
		c    Change
		want []Stmt
	}{
		{"insert", n.ins(0, "x", "y", int64(1)), []Stmt{{
			SQL:  `INSERT INTO "n"("a","b","v") VALUES (?,?,?) ON CONFLICT("b","a") DO UPDATE SET "a" = excluded."a", "b" = excluded."b", "v" = excluded."v"`,
			Args: row("x", "y", int64(1)),
		}}},
		{"insert null key", n.ins(0, nil, "y", int64(1)), []Stmt{
			{SQL: `DELETE FROM "n" WHERE "b" IS ? AND "a" IS ?`, Args: row("y", nil)},
			{SQL: `INSERT INTO "n"("a","b","v") VALUES (?,?,?)`, Args: row(nil, "y", int64(1))},
		}},
		{"update", n.upd(0, 0, row("x", "y", int64(1)), row("x", "y", int64(2))), []Stmt{
			{SQL: `UPDATE "n" SET "v" = ? WHERE "b" IS ? AND "a" IS ?`, Args: row(int64(2), "y", "x")},
		}},
		{"update key", n.upd(0, 0, row("x", "y", int64(1)), row("z", "y", int64(1))), []Stmt{
			{SQL: `UPDATE "n" SET "a" = ? WHERE "b" IS ? AND "a" IS ?`, Args: row("z", "y", "x")},
		}},
		{"update null key", n.upd(0, 0, row(nil, "y", int64(1)), row(nil, "y", 1.0)), []Stmt{
			{SQL: `UPDATE "n" SET "v" = ? WHERE "b" IS ? AND "a" IS ?`, Args: row(1.0, "y", nil)},
		}},
		{"update nothing", n.upd(0, 0, row("x", "y", []byte(nil)), row("x", "y", []byte{})), nil},
		{"delete", n.del(0, "x", nil, int64(1)), []Stmt{
			{SQL: `DELETE FROM "n" WHERE "b" IS ? AND "a" IS ?`, Args: row(nil, "x")},
		}},
		{"empty blob arg", n.ins(0, "x", "y", []byte(nil)), []Stmt{{
			SQL:  `INSERT INTO "n"("a","b","v") VALUES (?,?,?) ON CONFLICT("b","a") DO UPDATE SET "a" = excluded."a", "b" = excluded."b", "v" = excluded."v"`,
			Args: row("x", "y", []byte{}),
		}}},
		{"rowid insert", tbl{name: "r", cols: []string{"x"}}.ins(7, "a"), []Stmt{
			{SQL: `INSERT OR REPLACE INTO "r"(rowid,"x") VALUES (?,?)`, Args: row(int64(7), "a")},
		}},
		{"rowid update", tbl{name: "r", cols: []string{"x", "y"}}.upd(7, 8, row("a", "b"), row("c", "b")), []Stmt{
			{SQL: `UPDATE "r" SET "x" = ?, rowid = ? WHERE rowid = ?`, Args: row("c", int64(8), int64(7))},
		}},
		{"rowid update nothing", tbl{name: "r", cols: []string{"x"}}.upd(7, 7, row("a"), row("a")), nil},
		{"rowid shadowed delete", tbl{name: "r", cols: []string{"ROWID", "x"}}.del(7, "a", "b"), []Stmt{
			{SQL: `DELETE FROM "r" WHERE _rowid_ = ?`, Args: row(int64(7))},
		}},
		{"add column", Change{Op: Schema, Table: "t", SQL: `ALTER TABLE "t" ADD COLUMN "c" INT`}, []Stmt{
			{SQL: `ALTER TABLE "t" ADD COLUMN "c" INT`, Tolerated: "duplicate column name"},
		}},
		{"create", Change{Op: Schema, Table: "t", SQL: `CREATE TABLE IF NOT EXISTS t(a)`}, []Stmt{
			{SQL: `CREATE TABLE IF NOT EXISTS t(a)`},
		}},
	}
	for _, tc := range cases {
		got, err := Statements(tc.c)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\ngot  %#v\nwant %#v", tc.name, got, tc.want)
		}
	}
}

func TestInsertUpsertLastWriterWins(t *testing.T) {
	db := openDB(t, "lww")
	testutil.MustExec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, a, b)`)
	testutil.MustExec(t, db, `CREATE TABLE c(k1 TEXT, k2 INT, v, w, PRIMARY KEY(k1, k2))`)
	testutil.MustExec(t, db, `INSERT INTO t VALUES(1, 'old', 'keep me?'), (2, 'two', 2)`)
	testutil.MustExec(t, db, `INSERT INTO c VALUES('a', 1, 'old', 'old')`)
	tt := tbl{name: "t", cols: []string{"id", "a", "b"}, pk: []int{0}, alias: true}
	cc := tbl{name: "c", cols: []string{"k1", "k2", "v", "w"}, pk: []int{0, 1}}
	apply(t, db,
		tt.ins(1, int64(1), "new", nil), // over an existing row: every column is written
		tt.ins(3, nil, "three", 3.5),    // NULL alias value stands for the rowid
		cc.ins(0, "a", int64(1), "new", nil),
		cc.ins(0, "b", int64(1), "fresh", []byte{}),
	)
	checkRows(t, db, `SELECT * FROM t ORDER BY id`, [][]any{
		{int64(1), "new", nil}, {int64(2), "two", int64(2)}, {int64(3), "three", 3.5}})
	checkRows(t, db, `SELECT * FROM c ORDER BY k1`, [][]any{
		{"a", int64(1), "new", nil}, {"b", int64(1), "fresh", []byte{}}})
	// Replaying the same insert again is harmless.
	apply(t, db, cc.ins(0, "b", int64(1), "fresh", []byte{}))
	checkRows(t, db, `SELECT count(*) FROM c`, [][]any{{int64(2)}})
}

// A key with a NULL component never conflicts in an upsert, so naive SQL
// would duplicate the row.
func TestNullKey(t *testing.T) {
	db := openDB(t, "null")
	testutil.MustExec(t, db, `CREATE TABLE n(a TEXT, b TEXT, v, PRIMARY KEY(a,b))`)
	n := tbl{name: "n", cols: []string{"a", "b", "v"}, pk: []int{0, 1}}
	q := `SELECT a, b, v FROM n ORDER BY a, b`

	apply(t, db, n.ins(0, nil, "x", int64(1)))
	apply(t, db, n.ins(0, nil, "x", int64(2))) // last writer wins, still one row
	apply(t, db, n.ins(0, "k", nil, int64(3)), n.ins(0, nil, nil, int64(4)))
	checkRows(t, db, q, [][]any{{nil, nil, int64(4)}, {nil, "x", int64(2)}, {"k", nil, int64(3)}})

	// Update of an existing NULL-keyed row.
	apply(t, db, n.upd(0, 0, row(nil, "x", int64(2)), row(nil, "x", "two")))
	apply(t, db, n.upd(0, 0, row(nil, nil, int64(4)), row(nil, nil, "four")))
	checkRows(t, db, q, [][]any{{nil, nil, "four"}, {nil, "x", "two"}, {"k", nil, int64(3)}})

	// Update of a NULL-keyed row deleted meanwhile changes nothing (the
	// replay and the push guard call that a conflict).
	testutil.MustExec(t, db, `DELETE FROM n WHERE a IS NULL AND b = 'x'`)
	c := n.upd(0, 0, row(nil, "x", int64(2)), row(nil, "x", "again"))
	apply(t, db, c, c)
	checkRows(t, db, q, [][]any{{nil, nil, "four"}, {"k", nil, int64(3)}})
	apply(t, db, n.ins(0, nil, "x", "again"))

	// Key change into and out of NULL.
	apply(t, db, n.upd(0, 0, row("k", nil, int64(3)), row("k", "y", int64(3))))
	apply(t, db, n.upd(0, 0, row(nil, nil, "four"), row("z", nil, "four")))
	checkRows(t, db, q, [][]any{{nil, "x", "again"}, {"k", "y", int64(3)}, {"z", nil, "four"}})

	apply(t, db, n.del(0, nil, "x", "again"), n.del(0, "z", nil, "four"))
	checkRows(t, db, q, [][]any{{"k", "y", int64(3)}})
}

// Update sets only changed columns: a concurrent change of another column of
// the same row survives.
func TestUpdateColumnMerge(t *testing.T) {
	db := openDB(t, "merge")
	testutil.MustExec(t, db, `CREATE TABLE p(id INTEGER PRIMARY KEY, a, b, c REAL)`)
	testutil.MustExec(t, db, `INSERT INTO p VALUES(1, 1, 1, 1.0)`)
	p := tbl{name: "p", cols: []string{"id", "a", "b", "c"}, pk: []int{0}, alias: true}
	// Locally: a 1 -> 2, c unchanged. Remotely meanwhile: b 1 -> 5, c -> 9.
	testutil.MustExec(t, db, `UPDATE p SET b = 5, c = 9 WHERE id = 1`)
	c := p.upd(1, 1, row(int64(1), int64(1), int64(1), 1.0), row(int64(1), int64(2), int64(1), 1.0))
	stmts := mustStatements(t, c)
	if !strings.HasPrefix(stmts[0].SQL, `UPDATE "p" SET "a" = ? WHERE`) {
		t.Errorf("update sets more than the changed column: %s", stmts[0].SQL)
	}
	apply(t, db, c)
	checkRows(t, db, `SELECT * FROM p`, [][]any{{int64(1), int64(2), int64(5), 9.0}})

	// Same value but another storage class is a change (1 vs 1.0).
	c = p.upd(1, 1, row(int64(1), int64(2), int64(5), 9.0), row(int64(1), 2.0, int64(5), 9.0))
	apply(t, db, c)
	checkRows(t, db, `SELECT a, typeof(a) FROM p`, [][]any{{2.0, "real"}})
}

// An update of a row deleted elsewhere meanwhile does not bring it back:
// that is a conflict for the replay and the push guard to report.
func TestUpdateOfDeletedRowChangesNothing(t *testing.T) {
	db := openDB(t, "resurrect")
	testutil.MustExec(t, db, `CREATE TABLE p(id INTEGER PRIMARY KEY, a, b)`)
	testutil.MustExec(t, db, `CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID`)
	p := tbl{name: "p", cols: []string{"id", "a", "b"}, pk: []int{0}, alias: true}
	w := tbl{name: "w", cols: []string{"k", "v"}, pk: []int{0}}
	apply(t, db,
		p.upd(4, 4, row(int64(4), "a", "b"), row(int64(4), "A", "b")),
		w.upd(0, 0, row("k", int64(1)), row("k", int64(2))),
	)
	checkRows(t, db, `SELECT * FROM p`, nil)
	checkRows(t, db, `SELECT * FROM w`, nil)
}

func TestKeyChangingUpdate(t *testing.T) {
	db := openDB(t, "keychange")
	testutil.MustExec(t, db, `CREATE TABLE k(a TEXT, b INT, v, PRIMARY KEY(a, b))`)
	testutil.MustExec(t, db, `CREATE TABLE p(id INTEGER PRIMARY KEY, v)`)
	testutil.MustExec(t, db, `INSERT INTO k VALUES('x', 1, 'v'), ('other', 1, 'o')`)
	testutil.MustExec(t, db, `INSERT INTO p VALUES(1, 'one')`)
	k := tbl{name: "k", cols: []string{"a", "b", "v"}, pk: []int{0, 1}}
	p := tbl{name: "p", cols: []string{"id", "v"}, pk: []int{0}, alias: true}
	apply(t, db,
		k.upd(0, 0, row("x", int64(1), "v"), row("y", int64(1), "v2")),
		p.upd(1, 10, row(int64(1), "one"), row(int64(10), "one")),
	)
	checkRows(t, db, `SELECT * FROM k ORDER BY a`, [][]any{{"other", int64(1), "o"}, {"y", int64(1), "v2"}})
	checkRows(t, db, `SELECT rowid, * FROM p`, [][]any{{int64(10), int64(10), "one"}})

	// The old key was deleted elsewhere: nothing changes.
	apply(t, db, k.upd(0, 0, row("gone", int64(2), "g"), row("new", int64(2), "g")))
	checkRows(t, db, `SELECT * FROM k WHERE b = 2`, nil)
}

func TestDelete(t *testing.T) {
	db := openDB(t, "delete")
	testutil.MustExec(t, db, `CREATE TABLE k(a TEXT, b INT, v, PRIMARY KEY(a, b))`)
	testutil.MustExec(t, db, `INSERT INTO k VALUES('x', 1, 'v'), ('x', 2, 'w')`)
	k := tbl{name: "k", cols: []string{"a", "b", "v"}, pk: []int{0, 1}}
	// The before image's non-key values do not matter.
	apply(t, db, k.del(0, "x", int64(1), "stale"), k.del(0, "missing", int64(1), nil))
	checkRows(t, db, `SELECT * FROM k`, [][]any{{"x", int64(2), "w"}})
}

func TestQuotedNames(t *testing.T) {
	for _, suffix := range []string{"", " WITHOUT ROWID"} {
		db := openDB(t, "quoted")
		testutil.MustExec(t, db, `CREATE TABLE "we""ird tåble"("order" TEXT, "a b" INT, "x""y", "ü", "select", PRIMARY KEY("a b", "order"))`+suffix)
		q := tbl{name: `we"ird tåble`, cols: []string{"order", "a b", `x"y`, "ü", "select"}, pk: []int{1, 0}}
		apply(t, db,
			q.ins(0, "o1", int64(1), "x", "ü", "s"),
			q.ins(0, "o1", int64(1), "x2", "ü2", "s2"),
			q.ins(0, "o2", int64(2), nil, nil, nil),
			q.upd(0, 0, row("o2", int64(2), nil, nil, nil), row("o3", int64(2), nil, "u", nil)),
			q.ins(0, "o9", int64(9), "res", nil, nil),
			q.del(0, "o1", int64(1), "x2", "ü2", "s2"),
		)
		checkRows(t, db, `SELECT * FROM "we""ird tåble" ORDER BY "order"`, [][]any{
			{"o3", int64(2), nil, "u", nil}, {"o9", int64(9), "res", nil, nil}})
		// Rowid-keyed table with odd names too.
		testutil.MustExec(t, db, `CREATE TABLE "ta""b le"("group", "x""y")`)
		r := tbl{name: `ta"b le`, cols: []string{"group", `x"y`}}
		apply(t, db, r.ins(5, "g", "x"), r.upd(5, 6, row("g", "x"), row("g", "z")))
		checkRows(t, db, `SELECT rowid, * FROM "ta""b le"`, [][]any{{int64(6), "g", "z"}})
	}
}

func TestWithoutRowid(t *testing.T) {
	db := openDB(t, "wr")
	testutil.MustExec(t, db, `CREATE TABLE w(a TEXT, b BLOB, v, PRIMARY KEY(b, a)) WITHOUT ROWID`)
	w := tbl{name: "w", cols: []string{"a", "b", "v"}, pk: []int{1, 0}}
	apply(t, db,
		w.ins(0, "a", []byte{1}, int64(1)),
		w.ins(0, "a", []byte{}, int64(2)),
		w.ins(0, "a", []byte{1}, int64(3)),
		w.upd(0, 0, row("a", []byte{}, int64(2)), row("b", []byte{}, int64(2))),
		w.upd(0, 0, row("a", []byte{1}, int64(3)), row("a", []byte{1}, "three")),
	)
	checkRows(t, db, `SELECT * FROM w ORDER BY b, a`, [][]any{{"b", []byte{}, int64(2)}, {"a", []byte{1}, "three"}})
	apply(t, db, w.del(0, "b", []byte{}, int64(2)))
	checkRows(t, db, `SELECT * FROM w`, [][]any{{"a", []byte{1}, "three"}})
}

func TestRowidKeyedTables(t *testing.T) {
	db := openDB(t, "rowid")
	testutil.MustExec(t, db, `CREATE TABLE r(x, y)`)
	testutil.MustExec(t, db, `CREATE TABLE s(RowId TEXT, x)`) // shadows rowid: _rowid_ is used
	testutil.MustExec(t, db, `CREATE TABLE u(rowid, _ROWID_, oid, x)`)
	r := tbl{name: "r", cols: []string{"x", "y"}}
	s := tbl{name: "s", cols: []string{"RowId", "x"}}
	apply(t, db,
		r.ins(10, "a", int64(1)),
		r.ins(11, "b", int64(2)),
		r.ins(10, "A", nil), // OR REPLACE: the row with this rowid is rewritten
		r.upd(11, 20, row("b", int64(2)), row("b", int64(3))),
		r.upd(10, 30, row("A", nil), row("A", nil)), // rowid change only
		s.ins(3, "text rowid", int64(1)),
		s.upd(3, 4, row("text rowid", int64(1)), row("changed", int64(1))),
	)
	checkRows(t, db, `SELECT rowid, * FROM r ORDER BY rowid`, [][]any{{int64(20), "b", int64(3)}, {int64(30), "A", nil}})
	checkRows(t, db, `SELECT _rowid_, * FROM s`, [][]any{{int64(4), "changed", int64(1)}})
	apply(t, db, r.del(20, "b", int64(3)), s.del(4, "changed", int64(1)))
	checkRows(t, db, `SELECT rowid, * FROM r`, [][]any{{int64(30), "A", nil}})
	checkRows(t, db, `SELECT count(*) FROM s`, [][]any{{int64(0)}})

	u := tbl{name: "u", cols: []string{"rowid", "_ROWID_", "oid", "x"}}
	for _, c := range []Change{u.ins(1, nil, nil, nil, nil), u.del(1, nil, nil, nil, nil)} {
		if _, err := Statements(c); err == nil || !strings.Contains(err.Error(), "shadow") {
			t.Errorf("%v with every rowid name shadowed: %v", c.Op, err)
		}
	}
}

func TestExactValuesThroughStatements(t *testing.T) {
	db := openDB(t, "exact")
	testutil.MustExec(t, db, `CREATE TABLE e(id INTEGER PRIMARY KEY, v)`) // no affinity: values kept as bound
	e := tbl{name: "e", cols: []string{"id", "v"}, pk: []int{0}, alias: true}
	big := make([]byte, 2<<20)
	for i := range big {
		big[i] = byte(i*31 + 7)
	}
	var vals []any
	vals = append(vals, nil, []byte{}, []byte(nil), "", big, []byte{0, 0xff})
	for _, v := range edgeInts {
		vals = append(vals, v)
	}
	for _, v := range edgeFloats {
		if !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	for _, v := range edgeStrings {
		vals = append(vals, v)
	}
	var want [][]any
	for i, v := range vals {
		id := int64(i + 1)
		apply(t, db, e.ins(id, id, v))
		if b, ok := v.([]byte); ok && b == nil {
			v = []byte{} // a nil []byte is an empty BLOB
		}
		want = append(want, []any{id, v})
	}
	checkRows(t, db, `SELECT id, v FROM e ORDER BY id`, want)
	checkRows(t, db, `SELECT typeof(v) FROM e WHERE id IN (2, 3)`, [][]any{{"blob"}, {"blob"}})

	// Rotate every value into the next row with updates.
	for i := range want {
		id := want[i][0].(int64)
		next := want[(i+1)%len(want)][1]
		apply(t, db, e.upd(id, id, row(id, want[i][1]), row(id, next)))
	}
	rotated := make([][]any, len(want))
	for i := range want {
		rotated[i] = []any{want[i][0], want[(i+1)%len(want)][1]}
	}
	checkRows(t, db, `SELECT id, v FROM e ORDER BY id`, rotated)

	// NaN cannot be stored (SQLite binds it as NULL) but must not crash.
	apply(t, db, e.ins(1000, int64(1000), math.NaN()))
	checkRows(t, db, `SELECT v FROM e WHERE id = 1000`, [][]any{{nil}})
}

// ON CONFLICT(pk) also matches a primary key with a non-binary collation.
func TestUpsertCollatedKey(t *testing.T) {
	db := openDB(t, "collate")
	testutil.MustExec(t, db, `CREATE TABLE c(k TEXT COLLATE NOCASE PRIMARY KEY, v)`)
	testutil.MustExec(t, db, `INSERT INTO c VALUES('Key', 1)`)
	c := tbl{name: "c", cols: []string{"k", "v"}, pk: []int{0}}
	apply(t, db, c.ins(0, "KEY", int64(2)))
	checkRows(t, db, `SELECT * FROM c`, [][]any{{"KEY", int64(2)}})
}

func TestSchemaStatements(t *testing.T) {
	src := openDB(t, "src")
	ddl := []string{
		`CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b)`,
		`create   table  "we""ird"  ( x , y )`,
		`CREATE TABLE IF NOT EXISTS already(x)`,
		`CREATE INDEX t_a ON t(a)`,
		`CREATE UNIQUE INDEX "t b" ON t(b) WHERE b IS NOT NULL`,
		`CREATE VIEW v AS SELECT a FROM t`,
		`CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET b = 1 WHERE id = new.id AND b IS NULL; END`,
		`CREATE /* c */ TABLE -- x
		 c2(x)`,
		`CREATE VIRTUAL TABLE fts USING fts5(body)`,
	}
	for _, s := range ddl {
		if _, err := src.Exec(s); err != nil {
			if strings.Contains(s, "fts5") {
				t.Logf("skipping fts5: %v", err)
				continue
			}
			t.Fatalf("%s: %v", s, err)
		}
	}
	schemaQ := `SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name`
	objs := queryRows(t, src, `SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'fts\_%' ESCAPE '\' ORDER BY rowid`)
	var changes []Change
	for _, o := range objs {
		s, err := CreateIfNotExists(o[0].(string))
		if err != nil {
			t.Fatalf("CreateIfNotExists(%q): %v", o[0], err)
		}
		changes = append(changes, Change{Op: Schema, SQL: s})
	}
	dst := openDB(t, "dst")
	apply(t, dst, changes...)
	apply(t, dst, changes...) // twice: harmless
	if got, want := queryRows(t, dst, schemaQ), queryRows(t, src, schemaQ); !reflect.DeepEqual(got, want) {
		t.Fatalf("schema differs\ngot:%s\nwant:%s", fmtRows(got), fmtRows(want))
	}

	// ADD COLUMN twice: the second fails with an error the Stmt tolerates.
	add := Change{Op: Schema, Table: "we\"ird", SQL: `ALTER TABLE "we""ird" ADD COLUMN "new col" INT DEFAULT 7`}
	stmts := mustStatements(t, add)
	apply(t, dst, add)
	_, err := dst.Exec(stmts[0].SQL)
	if err == nil || stmts[0].Tolerated == "" || !strings.Contains(err.Error(), stmts[0].Tolerated) {
		t.Fatalf("second ADD COLUMN: error %v, Tolerated %q", err, stmts[0].Tolerated)
	}
	apply(t, dst, add)
	checkRows(t, dst, `SELECT name FROM pragma_table_info('we"ird') ORDER BY cid`, [][]any{{"x"}, {"y"}, {"new col"}})

	// DROP ... IF EXISTS with a quoted name, twice.
	for _, d := range [][2]string{{"trigger", "tr"}, {"view", "v"}, {"index", "t b"}, {"table", `we"ird`}} {
		c := Change{Op: Schema, Table: d[1], SQL: DropIfExists(d[0], d[1])}
		apply(t, dst, c, c)
	}
	checkRows(t, dst, `SELECT name FROM sqlite_schema WHERE name IN ('tr', 'v', 't b', 'we"ird')`, nil)
}

func TestValidate(t *testing.T) {
	k := tbl{name: "k", cols: []string{"a", "b"}, pk: []int{0}}
	bad := map[string]Change{
		"op":                 {Op: 5, Table: "k"},
		"schema no sql":      {Op: Schema, Table: "k"},
		"schema blank sql":   {Op: Schema, Table: "k", SQL: " \n\t"},
		"no table":           {Op: Insert, Columns: []string{"a"}, After: row(nil)},
		"no columns":         {Op: Insert, Table: "k", Columns: []string{}, After: row()},
		"duplicate column":   {Op: Insert, Table: "k", Columns: []string{"a", "A"}, After: row(nil, nil)},
		"pk out of range":    {Op: Insert, Table: "k", Columns: []string{"a"}, PK: []int{1}, After: row(nil)},
		"pk negative":        {Op: Insert, Table: "k", Columns: []string{"a"}, PK: []int{-1}, After: row(nil)},
		"pk twice":           {Op: Insert, Table: "k", Columns: []string{"a", "b"}, PK: []int{0, 0}, After: row(nil, nil)},
		"alias two keys":     {Op: Insert, Table: "k", Columns: []string{"a", "b"}, PK: []int{0, 1}, RowidAlias: true, After: row(int64(1), nil)},
		"alias no key":       {Op: Insert, Table: "k", Columns: []string{"a"}, RowidAlias: true, After: row(int64(1))},
		"insert no after":    {Op: Insert, Table: "k", Columns: k.cols, PK: k.pk},
		"insert with before": {Op: Insert, Table: "k", Columns: k.cols, PK: k.pk, Before: row(nil, nil), After: row(nil, nil)},
		"delete no before":   {Op: Delete, Table: "k", Columns: k.cols, PK: k.pk},
		"delete with after":  {Op: Delete, Table: "k", Columns: k.cols, PK: k.pk, Before: row(nil, nil), After: row(nil, nil)},
		"update short":       k.upd(0, 0, row(nil, nil), row(nil)),
		"update long":        k.upd(0, 0, row(nil, nil, nil), row(nil, nil)),
		"int value":          k.ins(0, 1, nil),
		"bool value":         k.upd(0, 0, row("a", true), row("a", false)),
		"alias mismatch":     tbl{"p", []string{"id"}, []int{0}, true}.ins(2, int64(1)),
		"alias text":         tbl{"p", []string{"id"}, []int{0}, true}.ins(2, "2"),
		"alias before":       tbl{"p", []string{"id", "v"}, []int{0}, true}.upd(1, 1, row(int64(2), nil), row(int64(1), "x")),
		"no key shadowed":    tbl{"p", []string{"OID", "rowid", "_rowid_"}, nil, false}.ins(1, nil, nil, nil),
		"add column no sql":  {Op: Schema, SQL: DropIfExists("column", "x")},
	}
	for name, c := range bad {
		if stmts, err := Statements(c); err == nil {
			t.Errorf("%s: no error, got %v", name, stmts)
		}
	}
	for name, c := range map[string]Change{
		"update nothing":       k.upd(0, 0, row("a", 1.5), row("a", 1.5)),
		"update nothing nan":   k.upd(0, 0, row("a", math.NaN()), row("a", math.NaN())),
		"rowid update nothing": tbl{name: "r", cols: []string{"x"}}.upd(3, 3, row(nil), row(nil)),
	} {
		if stmts, err := Statements(c); err != nil || stmts != nil {
			t.Errorf("%s: got %v, %v; want no statements", name, stmts, err)
		}
	}
	// -0.0 and 0.0 are different values.
	if stmts, err := Statements(k.upd(0, 0, row("a", 0.0), row("a", negZero))); err != nil || len(stmts) != 1 {
		t.Errorf("-0.0 vs 0.0: %v, %v", stmts, err)
	}
}
