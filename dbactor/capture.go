package dbactor

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/sqlitex"
)

// ErrNoPrimaryKey reports a write to a table without a declared primary
// key: its rows have no identity that survives replication (the server
// would give them other rowids), so syncdb refuses to sync them.
var ErrNoPrimaryKey = errors.New("table has no PRIMARY KEY")

// capture is the change-capture state of the writer connection.
type capture struct {
	rows   []capturedRow
	err    error                 // set inside the hook, reported after the statement
	tables map[string]*tableInfo // by table name; reset on schema change
	nextID int64                 // next change id; 0 = read it from the table
	txnID  int64                 // change id of the current transaction's first change
	insert *sql.Stmt             // the change log insert, prepared on the writer connection
	// assigned tells, for an insert, whether SQLite chose the rowid (set
	// around each statement; nil: no). The hook asks it.
	assigned func(rowid int64) bool
}

// capturedRow is what the preupdate hook saw; it is turned into a Change
// after the statement, when SQL may run again on the connection.
type capturedRow struct {
	op                 change.Op
	table              string
	oldRowid, newRowid int64
	before, after      []any
	assigned           bool // an insert whose rowid SQLite chose (see capture.assigned)
	trigger            bool // made by a trigger the user's statement fired (depth 1)
}

// onPreUpdate runs inside sqlite3_step: it must not use the connection.
// A statement's own changes are captured (depth 0): triggers run again
// wherever the change is applied. The changes of the triggers a user's
// statement fires directly (depth 1) are kept too, for flush to take if
// the statement itself changed no row: then no trigger would make them
// again (a write to a view through its INSTEAD OF trigger).
func (a *dbActor) onPreUpdate(d sqlite.SQLitePreUpdateData) {
	depth := d.Depth()
	if a.cap.err != nil || d.DatabaseName != "main" || isInternalTable(d.TableName) || depth > 1 || depth == 1 && !a.user {
		return
	}
	r := capturedRow{table: d.TableName, oldRowid: d.OldRowID, newRowid: d.NewRowID, trigger: depth == 1}
	var err error
	switch d.Op {
	case sqlite3.SQLITE_INSERT:
		r.op = change.Insert
		r.after, err = sqlitex.PreUpdate(&d, true)
		r.assigned = !r.trigger && a.cap.assigned != nil && a.cap.assigned(d.NewRowID)
	case sqlite3.SQLITE_DELETE:
		r.op = change.Delete
		r.before, err = sqlitex.PreUpdate(&d, false)
	case sqlite3.SQLITE_UPDATE:
		r.op = change.Update
		if r.before, err = sqlitex.PreUpdate(&d, false); err == nil {
			r.after, err = sqlitex.PreUpdate(&d, true)
		}
	default:
		return
	}
	if err != nil {
		a.cap.err = fmt.Errorf("capture change to %s: %w", d.TableName, err)
		return
	}
	a.cap.rows = append(a.cap.rows, r)
}

// tableInfo is what a Change needs to know about its table.
type tableInfo struct {
	columns    []string
	stored     []int // indexes into the preupdate record of the stored, non-generated columns
	pk         []int // indexes into columns
	rowidAlias bool
}

func (a *dbActor) tableInfo(ctx context.Context, name string) (*tableInfo, error) {
	if ti := a.cap.tables[name]; ti != nil {
		return ti, nil
	}
	rows, err := a.conn.QueryContext(ctx, "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid", name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ti := &tableInfo{}
	type pkCol struct{ ord, idx int }
	var pks []pkCol
	var pkType string
	rec := 0 // position in the preupdate record
	for rows.Next() {
		var col, typ string
		var pk, hidden int
		if err := rows.Scan(&col, &typ, &pk, &hidden); err != nil {
			return nil, err
		}
		// hidden: 0 ordinary, 1 hidden (virtual tables), 2 virtual
		// generated, 3 stored generated. The preupdate record holds every
		// column, generated ones included; only ordinary ones are synced.
		if hidden == 0 {
			if pk > 0 {
				pks = append(pks, pkCol{pk, len(ti.columns)})
				pkType = typ
			}
			ti.columns = append(ti.columns, col)
			ti.stored = append(ti.stored, rec)
		}
		rec++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ti.columns) == 0 {
		return nil, fmt.Errorf("table %q has no columns", name)
	}
	slices.SortFunc(pks, func(x, y pkCol) int { return x.ord - y.ord })
	for _, p := range pks {
		ti.pk = append(ti.pk, p.idx)
	}
	ti.rowidAlias = len(pks) == 1 && strings.EqualFold(pkType, "INTEGER") && !a.withoutRowid(ctx, name)
	if a.cap.tables == nil {
		a.cap.tables = map[string]*tableInfo{}
	}
	a.cap.tables[name] = ti
	return ti, nil
}

func (a *dbActor) withoutRowid(ctx context.Context, name string) bool {
	var wr int
	// pragma_table_list's "wr" column is 1 for WITHOUT ROWID tables.
	if err := a.conn.QueryRowContext(ctx, "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", name).Scan(&wr); err != nil {
		return false
	}
	return wr == 1
}

func pick(vals []any, idx []int) []any {
	if vals == nil {
		return nil
	}
	out := make([]any, len(idx))
	for i, j := range idx {
		if j < len(vals) {
			out[i] = vals[j]
		}
	}
	return out
}

// flush turns the rows the hook captured into change records, inside the
// current transaction.
func (a *dbActor) flush(ctx context.Context) error {
	if err := a.cap.err; err != nil {
		a.cap.err, a.cap.rows = nil, nil
		return err
	}
	rows := a.cap.rows
	a.cap.rows = nil
	// A statement's own changes, or if it made none that count, what its
	// triggers did instead (onPreUpdate): a view's INSTEAD OF trigger, a
	// BEFORE trigger of a row that OR IGNORE then skipped, a trigger of a
	// no-op update. Neither the server nor a replay would make those.
	if n, err := a.recordRows(ctx, rows, false); err != nil || n > 0 {
		return err
	}
	_, err := a.recordRows(ctx, rows, true)
	return err
}

// recordRows records the captured rows made by triggers (trigger) or not,
// and says how many changes that made.
func (a *dbActor) recordRows(ctx context.Context, rows []capturedRow, trigger bool) (int, error) {
	n := 0
	for _, r := range rows {
		if r.trigger != trigger {
			continue
		}
		ti, err := a.tableInfo(ctx, r.table)
		if err != nil {
			return n, fmt.Errorf("capture change to %s: %w", r.table, err)
		}
		if len(ti.pk) == 0 && !a.ignored[r.table] {
			return n, fmt.Errorf("%w: %q; declare one (e.g. id INTEGER PRIMARY KEY) to sync it, or list it in Config.IgnoreTables to keep it local",
				ErrNoPrimaryKey, r.table)
		}
		c := change.Change{
			Op: r.op, Table: r.table, Columns: ti.columns, PK: ti.pk, RowidAlias: ti.rowidAlias,
			OldRowid: r.oldRowid, NewRowid: r.newRowid,
			Before: pick(r.before, ti.stored), After: pick(r.after, ti.stored),
		}
		if c.Op == change.Update && r.oldRowid == r.newRowid && sameRow(c.Before, c.After) {
			continue // nothing changed
		}
		c.KeyAssigned = c.Op == change.Insert && c.RowidAlias && r.assigned
		if err := a.record(ctx, c); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func sameRow(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameValue(a[i], b[i]) {
			return false
		}
	}
	return true
}

// record appends one change to the change log.
func (a *dbActor) record(ctx context.Context, c change.Change) error {
	rec, err := c.Encode()
	if err != nil {
		return fmt.Errorf("encode change to %s: %w", c.Table, err)
	}
	if a.cap.nextID == 0 {
		// Change ids only grow within a pull generation, also when pushed
		// changes were trimmed from the log (trimChanges keeps the floor).
		if err := a.conn.QueryRowContext(ctx, `SELECT max(coalesce((SELECT max(change_id) FROM _syncdb_changes), 0),
			coalesce((SELECT value FROM _syncdb_local WHERE key = 'trimmed'), 0)) + 1`).Scan(&a.cap.nextID); err != nil {
			return fmt.Errorf("read change log: %w", err)
		}
	}
	id := a.cap.nextID
	if a.cap.txnID == 0 {
		a.cap.txnID = id
	}
	if a.cap.insert == nil {
		st, err := a.conn.PrepareContext(ctx, `INSERT INTO _syncdb_changes(change_id, change_time, txn, op, table_name, record) VALUES(?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("record change: %w", err)
		}
		a.cap.insert = st
	}
	if _, err := a.cap.insert.ExecContext(ctx, id, a.now().Unix(), a.cap.txnID, int(c.Op), c.Table, rec); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	a.cap.nextID++
	return nil
}

// endTxn resets per-transaction capture state; after a rollback the next
// change id must be read again.
func (a *dbActor) endTxn(committed bool) {
	a.cap.rows, a.cap.err, a.cap.txnID = nil, nil, 0
	if !committed {
		a.cap.nextID = 0
	}
}

// schemaObject is one row of sqlite_schema.
type schemaObject struct {
	typ, name, tbl string
	sql            *string
}

func (a *dbActor) schema(ctx context.Context) (map[string]schemaObject, error) {
	rows, err := a.conn.QueryContext(ctx, "SELECT type, name, tbl_name, sql FROM sqlite_schema")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]schemaObject{}
	for rows.Next() {
		var o schemaObject
		if err := rows.Scan(&o.typ, &o.name, &o.tbl, &o.sql); err != nil {
			return nil, err
		}
		out[o.typ+"\x00"+o.name] = o
	}
	return out, rows.Err()
}

// captureDDL records the schema change a statement made. ALTER TABLE is
// recorded as written (it is not expressible as a create or a drop); other
// statements as the objects they created (made idempotent) and dropped.
func (a *dbActor) captureDDL(ctx context.Context, stmt, keyword string, before map[string]schemaObject) error {
	after, err := a.schema(ctx)
	if err != nil {
		return err
	}
	a.cap.tables = nil
	for k, o := range after {
		// A new object with a protected name (ALTER TABLE ... RENAME TO
		// _syncdb_x), or a trigger or view whose body reaches a protected
		// table: the statement cannot stand.
		if _, ok := before[k]; !ok && o.sql != nil && (protectedName(o.name) ||
			(o.typ == "trigger" || o.typ == "view") && mentionsProtected(*o.sql)) {
			return refusedProtected(o.name)
		}
	}
	if keyword == "ALTER" {
		tbl := alterTarget(stmt)
		if isInternalTable(tbl) {
			return nil
		}
		return a.record(ctx, change.Change{Op: change.Schema, Table: tbl, SQL: stmt})
	}
	var dropped []schemaObject
	for k, o := range before {
		if _, ok := after[k]; !ok && !isInternalTable(o.name) && o.sql != nil {
			dropped = append(dropped, o)
		}
	}
	// Tables first: dropping one drops its indexes and triggers.
	slices.SortFunc(dropped, tablesFirst)
	for _, o := range dropped {
		if err := a.record(ctx, change.Change{Op: change.Schema, Table: o.tbl, SQL: change.DropIfExists(o.typ, o.name)}); err != nil {
			return err
		}
	}
	var created []schemaObject
	for k, o := range after {
		if _, ok := before[k]; ok {
			continue
		}
		if !isInternalTable(o.name) && !isInternalTable(o.tbl) && o.sql != nil {
			created = append(created, o)
		}
	}
	// Tables before the indexes, triggers and views that refer to them.
	slices.SortFunc(created, tablesFirst)
	for _, o := range created {
		sql, err := change.CreateIfNotExists(*o.sql)
		if err != nil {
			return fmt.Errorf("capture %s %s: %w", o.typ, o.name, err)
		}
		if err := a.record(ctx, change.Change{Op: change.Schema, Table: o.tbl, SQL: sql}); err != nil {
			return err
		}
	}
	return nil
}

// alterTarget extracts the table name of an ALTER TABLE statement, for
// filtering; it is best effort.
// tablesFirst orders schema objects tables first, then by name.
func tablesFirst(x, y schemaObject) int {
	if (x.typ == "table") != (y.typ == "table") {
		if x.typ == "table" {
			return -1
		}
		return 1
	}
	return strings.Compare(x.name, y.name)
}

func alterTarget(stmt string) string {
	f := strings.Fields(stmt)
	if len(f) < 3 {
		return ""
	}
	name := f[2]
	if i := strings.IndexByte(name, '.'); i >= 0 && !strings.HasPrefix(name, "\"") {
		name = name[i+1:]
	}
	return strings.Trim(name, "\"`[]")
}

// sameValue compares two captured values exactly: same storage class and
// same bits.
func sameValue(x, y any) bool {
	switch xv := x.(type) {
	case nil:
		return y == nil
	case int64:
		yv, ok := y.(int64)
		return ok && xv == yv
	case float64:
		yv, ok := y.(float64)
		return ok && math.Float64bits(xv) == math.Float64bits(yv)
	case string:
		yv, ok := y.(string)
		return ok && xv == yv
	case []byte:
		yv, ok := y.([]byte)
		return ok && bytes.Equal(xv, yv)
	}
	return false
}
