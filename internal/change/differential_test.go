package change

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/syncdb/syncdb/internal/testutil"
)

// The differential test runs a random workload on a source database, captures
// every row change with modernc's preupdate hook (as the client does), sends
// each change through Encode, Decode and Statements, applies the statements
// to a replica that started equal, and checks that both hold exactly the same
// rows.

var diffSchema = []string{
	`CREATE TABLE t1(id INTEGER PRIMARY KEY, a TEXT, b REAL, c BLOB, d)`,
	`CREATE TABLE t2(k1 TEXT, k2 INTEGER, v, w NUMERIC, PRIMARY KEY(k1, k2))`,
	`CREATE TABLE "we""ird tåble"("order" TEXT, "a b" INTEGER, "ü", PRIMARY KEY("order", "a b")) WITHOUT ROWID`,
	`CREATE TABLE t4(rowid TEXT, x, y)`,
	`CREATE TABLE t5(x, "select")`,
}

const weird = `we"ird tåble`

// diffTables: name, query that lists the content in a deterministic order
// (with the rowid for tables keyed by it), and how to name a row.
var diffTables = []struct {
	name, dump, key string
}{
	{"t1", `SELECT * FROM t1 ORDER BY id`, `id`},
	{"t2", `SELECT * FROM t2 ORDER BY k1, k2`, `k1, k2`},
	{weird, `SELECT * FROM "we""ird tåble" ORDER BY "order", "a b"`, `"order", "a b"`},
	{"t4", `SELECT _rowid_, * FROM t4 ORDER BY _rowid_`, `_rowid_`},
	{"t5", `SELECT rowid, * FROM t5 ORDER BY rowid`, `rowid`},
}

type tableInfo struct {
	cols  []string
	pk    []int
	alias bool
}

// loadTableInfo reads what the capture side records about a table.
func loadTableInfo(t *testing.T, db *sql.DB, name string) tableInfo {
	t.Helper()
	var info tableInfo
	type pkCol struct{ ord, idx int }
	var pks []pkCol
	var types []string
	for i, r := range queryRows(t, db, `SELECT name, type, pk FROM pragma_table_xinfo(?) WHERE hidden = 0 ORDER BY cid`, name) {
		info.cols = append(info.cols, r[0].(string))
		types = append(types, r[1].(string))
		if ord := r[2].(int64); ord > 0 {
			pks = append(pks, pkCol{int(ord), i})
		}
	}
	sort.Slice(pks, func(a, b int) bool { return pks[a].ord < pks[b].ord })
	for _, p := range pks {
		info.pk = append(info.pk, p.idx)
	}
	wr := queryRows(t, db, `SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?`, name)[0][0].(int64)
	info.alias = len(info.pk) == 1 && wr == 0 && strings.EqualFold(types[info.pk[0]], "INTEGER")
	return info
}

// capture records the changes of one connection.
type capture struct {
	infos     map[string]tableInfo
	pending   []Change // changes of the open transaction, if any
	committed []Change
	err       error
}

func (c *capture) hook(d sqlite.SQLitePreUpdateData) {
	if d.DatabaseName != "main" || c.err != nil {
		return
	}
	info, ok := c.infos[d.TableName]
	if !ok {
		c.err = fmt.Errorf("change to unknown table %q", d.TableName)
		return
	}
	if d.Count() != len(info.cols) {
		c.err = fmt.Errorf("%s: preupdate count %d, %d columns", d.TableName, d.Count(), len(info.cols))
		return
	}
	ch := Change{Table: d.TableName, Columns: info.cols, PK: info.pk, RowidAlias: info.alias, OldRowid: d.OldRowID, NewRowid: d.NewRowID}
	var err error
	switch d.Op {
	case sqlite3.SQLITE_INSERT:
		ch.Op = Insert
	case sqlite3.SQLITE_UPDATE:
		ch.Op = Update
	case sqlite3.SQLITE_DELETE:
		ch.Op = Delete
	default:
		c.err = fmt.Errorf("unexpected preupdate op %d", d.Op)
		return
	}
	if ch.Op != Insert {
		ch.Before = make([]any, d.Count())
		err = d.Old(ch.Before...)
	}
	if ch.Op != Delete && err == nil {
		ch.After = make([]any, d.Count())
		err = d.New(ch.After...)
	}
	if err != nil {
		c.err = err
		return
	}
	c.pending = append(c.pending, ch)
}

type workload struct {
	t      *testing.T
	r      *rand.Rand
	ctx    context.Context
	conn   *sql.Conn
	cap    *capture
	inTx   bool
	ops    map[string]int
	failed int
}

// value returns a random value for the workload. Text never contains NUL:
// modernc's preupdate hook reads text as a C string and would cut it there.
func (w *workload) value() any {
	switch v := randValue(w.r).(type) {
	case string:
		return strings.ReplaceAll(v, "\x00", "")
	case []byte:
		if w.r.IntN(40) == 0 {
			return make([]byte, 100<<10+w.r.IntN(1000))
		}
		return v
	default:
		return v
	}
}

func (w *workload) pick(vals ...any) any { return vals[w.r.IntN(len(vals))] }

func (w *workload) t1Key() any   { return w.pick(nil, int64(w.r.IntN(40)+1), int64(w.r.IntN(40)+1)) }
func (w *workload) t2K1() any    { return w.pick(nil, "a", "b", "c", "d") }
func (w *workload) t2K2() any    { return w.pick(nil, int64(w.r.IntN(5)), int64(w.r.IntN(5)), 1.0) }
func (w *workload) order() any   { return w.pick("x", "y", "z", "X", "", nil) }
func (w *workload) ab() any      { return int64(w.r.IntN(6)) }
func (w *workload) rowid() int64 { return int64(w.r.IntN(50) + 1) }

// query reads through the source connection (inside its transaction, if any).
func (w *workload) query(q string, args ...any) [][]any {
	rs, err := w.conn.QueryContext(w.ctx, q, args...)
	if err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out [][]any
	for rs.Next() {
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, row)
	}
	return out
}

// existingKey returns the key of a random row of table (nil if empty).
func (w *workload) existingKey(table, key string) []any {
	rows := w.query(`SELECT ` + key + ` FROM ` + QuoteIdent(table) + ` ORDER BY ` + key)
	if len(rows) == 0 {
		return nil
	}
	return rows[w.r.IntN(len(rows))]
}

// t2Free reports whether t2 has no row with this key (compared with IS).
// SQLite lets rows with NULL key components repeat, but a change keyed by
// such a key cannot tell them apart, so the workload never creates
// duplicates.
func (w *workload) t2Free(k1, k2 any) bool {
	if k1 != nil && k2 != nil {
		return true // the primary key index itself rejects duplicates
	}
	return w.query(`SELECT 1 FROM t2 WHERE k1 IS ? AND k2 IS ?`, k1, k2) == nil
}

// exec runs one statement; on failure SQLite rolls back that statement, so
// the changes it captured are dropped.
func (w *workload) exec(kind, q string, args ...any) {
	w.ops[kind]++
	start := len(w.cap.pending)
	if _, err := w.conn.ExecContext(w.ctx, q, args...); err != nil {
		w.cap.pending = w.cap.pending[:start]
		w.failed++
		if !strings.Contains(err.Error(), "constraint failed") {
			w.t.Fatalf("%s %v: %v", q, args, err)
		}
	}
	if w.cap.err != nil {
		w.t.Fatalf("capture: %v", w.cap.err)
	}
	if !w.inTx {
		w.cap.committed = append(w.cap.committed, w.cap.pending...)
		w.cap.pending = nil
	}
}

func (w *workload) step() {
	r := w.r
	switch n := r.IntN(100); {
	case n < 4 && !w.inTx:
		w.exec("begin", `BEGIN`)
		w.inTx = true
	case n < 8 && w.inTx:
		w.ops["commit"]++
		if _, err := w.conn.ExecContext(w.ctx, `COMMIT`); err != nil {
			w.t.Fatal(err)
		}
		w.inTx = false
		w.cap.committed = append(w.cap.committed, w.cap.pending...)
		w.cap.pending = nil
	case n < 10 && w.inTx:
		w.ops["rollback"]++
		if _, err := w.conn.ExecContext(w.ctx, `ROLLBACK`); err != nil {
			w.t.Fatal(err)
		}
		w.inTx = false
		w.cap.pending = nil
	case n < 30: // inserts
		verb := w.pick("INSERT", "INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE").(string)
		switch r.IntN(5) {
		case 0:
			w.exec("insert", verb+` INTO t1 VALUES(?,?,?,?,?)`, w.t1Key(), w.value(), w.value(), w.value(), w.value())
		case 1:
			k1, k2 := w.t2K1(), w.t2K2()
			if w.t2Free(k1, k2) {
				w.exec("insert", verb+` INTO t2 VALUES(?,?,?,?)`, k1, k2, w.value(), w.value())
			}
		case 2:
			w.exec("insert", verb+` INTO "we""ird tåble" VALUES(?,?,?)`, w.order(), w.ab(), w.value())
		case 3:
			if r.IntN(2) == 0 {
				w.exec("insert", verb+` INTO t4(_rowid_, rowid, x, y) VALUES(?,?,?,?)`, w.rowid(), w.value(), w.value(), w.value())
			} else {
				w.exec("insert", verb+` INTO t4(rowid, x, y) VALUES(?,?,?)`, w.value(), w.value(), w.value())
			}
		case 4:
			if r.IntN(2) == 0 {
				w.exec("insert", verb+` INTO t5(rowid, x, "select") VALUES(?,?,?)`, w.rowid(), w.value(), w.value())
			} else {
				w.exec("insert", verb+` INTO t5 VALUES(?,?)`, w.value(), w.value())
			}
		}
	case n < 38: // upserts in the source, captured as updates
		switch r.IntN(3) {
		case 0:
			w.exec("upsert", `INSERT INTO t1(id, a, d) VALUES(?,?,?) ON CONFLICT(id) DO UPDATE SET a = excluded.a, d = d || 'x'`,
				int64(r.IntN(40)+1), w.value(), w.value())
		case 1:
			k1, k2 := w.pick("a", "b").(string), int64(r.IntN(5))
			w.exec("upsert", `INSERT INTO t2 VALUES(?,?,?,?) ON CONFLICT DO UPDATE SET v = excluded.v`, k1, k2, w.value(), w.value())
		case 2:
			w.exec("upsert", `INSERT INTO "we""ird tåble" VALUES(?,?,?) ON CONFLICT("order", "a b") DO UPDATE SET "ü" = excluded."ü"`,
				w.pick("x", "y").(string), w.ab(), w.value())
		}
	case n < 65: // single-row updates of random columns, sometimes the key
		w.updateOne()
	case n < 75: // multi-row updates
		switch r.IntN(5) {
		case 0:
			w.exec("update many", `UPDATE t1 SET d = ?, b = ? WHERE id % 3 = ?`, w.value(), w.value(), int64(r.IntN(3)))
		case 1:
			w.exec("update many", `UPDATE t2 SET w = ? WHERE k2 IS ?`, w.value(), w.t2K2())
		case 2:
			w.exec("update many", `UPDATE "we""ird tåble" SET "ü" = ? WHERE "a b" % 2 = ?`, w.value(), int64(r.IntN(2)))
		case 3:
			w.exec("update many", `UPDATE t4 SET y = ?, rowid = ? WHERE _rowid_ % 2 = ?`, w.value(), w.value(), int64(r.IntN(2)))
		case 4:
			w.exec("update many", `UPDATE t5 SET x = ? WHERE rowid % 3 = ?`, w.value(), int64(r.IntN(3)))
		}
	case n < 80: // rowid changes
		switch r.IntN(3) {
		case 0:
			if k := w.existingKey("t1", "id"); k != nil {
				w.exec("rowid change", `UPDATE t1 SET id = ? WHERE id = ?`, int64(r.IntN(60)+1), k[0])
			}
		case 1:
			if k := w.existingKey("t4", "_rowid_"); k != nil {
				w.exec("rowid change", `UPDATE t4 SET _rowid_ = ? WHERE _rowid_ = ?`, w.rowid(), k[0])
			}
		case 2:
			if k := w.existingKey("t5", "rowid"); k != nil {
				w.exec("rowid change", `UPDATE t5 SET rowid = ?, x = ? WHERE rowid = ?`, w.rowid(), w.value(), k[0])
			}
		}
	case n < 94: // single-row deletes
		tb := diffTables[r.IntN(len(diffTables))]
		if k := w.existingKey(tb.name, tb.key); k != nil {
			w.exec("delete", `DELETE FROM `+QuoteIdent(tb.name)+` WHERE (`+tb.key+`) IS (`+placeholders(len(k))+`)`, k...)
		}
	default: // multi-row deletes
		switch r.IntN(3) {
		case 0:
			w.exec("delete many", `DELETE FROM t1 WHERE id % 7 = ?`, int64(r.IntN(7)))
		case 1:
			w.exec("delete many", `DELETE FROM t2 WHERE k1 IS ?`, w.t2K1())
		case 2:
			w.exec("delete many", `DELETE FROM t5 WHERE rowid % 5 = ?`, int64(r.IntN(5)))
		}
	}
}

func (w *workload) updateOne() {
	r := w.r
	switch r.IntN(5) {
	case 0:
		k := w.existingKey("t1", "id")
		if k == nil {
			return
		}
		cols := []string{"a", "b", "c", "d"}
		var set []string
		var args []any
		for _, c := range cols {
			if r.IntN(2) == 0 {
				set = append(set, c+" = ?")
				args = append(args, w.value())
			}
		}
		if r.IntN(5) == 0 {
			set = append(set, "id = ?")
			args = append(args, int64(r.IntN(60)+1))
		}
		if set == nil {
			set, args = []string{"a = a"}, nil // an update that changes nothing
		}
		w.exec("update", `UPDATE t1 SET `+strings.Join(set, ", ")+` WHERE id = ?`, append(args, k[0])...)
	case 1:
		k := w.existingKey("t2", "k1, k2")
		if k == nil {
			return
		}
		set := []string{"v = ?", "w = ?"}
		args := []any{w.value(), w.value()}
		if r.IntN(4) == 0 {
			k1, k2 := w.t2K1(), k[1]
			if r.IntN(2) == 0 {
				k2 = w.t2K2()
			}
			if !w.t2Free(k1, k2) {
				return
			}
			set = append(set, "k1 = ?", "k2 = ?")
			args = append(args, k1, k2)
		}
		w.exec("update", `UPDATE t2 SET `+strings.Join(set, ", ")+` WHERE k1 IS ? AND k2 IS ?`, append(args, k...)...)
	case 2:
		k := w.existingKey(weird, `"order", "a b"`)
		if k == nil {
			return
		}
		if r.IntN(3) == 0 {
			w.exec("update", `UPDATE "we""ird tåble" SET "order" = ?, "ü" = ? WHERE "order" = ? AND "a b" = ?`, w.order(), w.value(), k[0], k[1])
		} else {
			w.exec("update", `UPDATE "we""ird tåble" SET "ü" = ? WHERE "order" = ? AND "a b" = ?`, w.value(), k[0], k[1])
		}
	case 3:
		if k := w.existingKey("t4", "_rowid_"); k != nil {
			w.exec("update", `UPDATE t4 SET rowid = ?, x = ? WHERE _rowid_ = ?`, w.value(), w.value(), k[0])
		}
	case 4:
		if k := w.existingKey("t5", "rowid"); k != nil {
			w.exec("update", `UPDATE t5 SET "select" = ? WHERE rowid = ?`, w.value(), k[0])
		}
	}
}

// replay sends changes through the encoding and Statements into dst, in one
// transaction.
func replay(t *testing.T, dst *sql.DB, changes []Change, stats map[Op]int) {
	t.Helper()
	var stmts []Stmt
	for _, c := range changes {
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", c, err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if diff := sameChange(c, d); diff != "" {
			t.Fatalf("round trip differs in %s: %+v", diff, c)
		}
		s, err := Statements(d)
		if err != nil {
			t.Fatalf("Statements(%+v): %v", d, err)
		}
		stats[c.Op]++
		stmts = append(stmts, s...)
	}
	if err := applyStmts(dst, stmts); err != nil {
		t.Fatal(err)
	}
}

func compareDBs(t *testing.T, src *sql.Conn, dst *sql.DB, when string) {
	t.Helper()
	for _, tb := range diffTables {
		w := &workload{t: t, ctx: context.Background(), conn: src}
		want := w.query(tb.dump)
		got := queryRows(t, dst, tb.dump)
		if !sameRows(got, want) {
			t.Fatalf("%s: table %q differs\nreplica:%s\nsource:%s", when, tb.name, fmtRows(got), fmtRows(want))
		}
	}
}

func TestDifferentialReplay(t *testing.T) {
	seeds := 8
	steps := 400
	if testing.Short() {
		seeds, steps = 2, 200
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			runDifferential(t, uint64(seed), steps)
		})
	}
}

func runDifferential(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	src, dst := openDB(t, "src"), openDB(t, "dst")
	for _, db := range []*sql.DB{src, dst} {
		for _, s := range diffSchema {
			testutil.MustExec(t, db, s)
		}
		// Some equal starting content, written before capture begins.
		testutil.MustExec(t, db, `INSERT INTO t1 VALUES(1, 'one', 1.5, x'01', NULL), (2, 'two', NULL, x'', 2)`)
		testutil.MustExec(t, db, `INSERT INTO t2 VALUES('a', 1, 'v', 1), (NULL, 2, 'null key', NULL)`)
		testutil.MustExec(t, db, `INSERT INTO t4(_rowid_, rowid, x, y) VALUES(5, 'r', 1, 2)`)
		testutil.MustExec(t, db, `INSERT INTO t5(rowid, x, "select") VALUES(7, 'seven', 7)`)
	}
	cap := &capture{infos: map[string]tableInfo{}}
	for _, tb := range diffTables {
		cap.infos[tb.name] = loadTableInfo(t, src, tb.name)
	}
	if !cap.infos["t1"].alias || cap.infos["t2"].alias || len(cap.infos["t4"].pk) != 0 {
		t.Fatalf("table info: %+v", cap.infos)
	}

	conn, err := src.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		h, ok := dc.(interface{ RegisterPreUpdateHook(sqlite.PreUpdateHookFn) })
		if !ok {
			return fmt.Errorf("driver connection %T has no RegisterPreUpdateHook", dc)
		}
		h.RegisterPreUpdateHook(cap.hook)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Raw(func(dc any) error {
		dc.(interface{ RegisterPreUpdateHook(sqlite.PreUpdateHookFn) }).RegisterPreUpdateHook(nil)
		return nil
	})

	w := &workload{t: t, r: rand.New(rand.NewPCG(seed, 0x5eed)), ctx: ctx, conn: conn, cap: cap, ops: map[string]int{}}
	stats := map[Op]int{}
	replayed := 0
	for i := range steps {
		w.step()
		if len(cap.committed) > replayed && (i%7 == 0 || w.r.IntN(3) == 0) {
			replay(t, dst, cap.committed[replayed:], stats)
			replayed = len(cap.committed)
			if !w.inTx {
				compareDBs(t, conn, dst, fmt.Sprintf("after step %d", i))
			}
		}
	}
	if w.inTx {
		if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
			t.Fatal(err)
		}
		cap.committed = append(cap.committed, cap.pending...)
	}
	replay(t, dst, cap.committed[replayed:], stats)
	compareDBs(t, conn, dst, "at the end")
	t.Logf("ops %v (%d failed as expected), changes %v", w.ops, w.failed, stats)
	if stats[Insert] == 0 || stats[Update] == 0 || stats[Delete] == 0 {
		t.Errorf("workload did not exercise every op: %v", stats)
	}
}
