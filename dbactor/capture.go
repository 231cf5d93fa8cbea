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
	// assigned tells, for an insert into a table whose rowid alias is
	// column key (at pos among the columns a VALUES row fills), whether
	// SQLite chose the rowid (set around each statement; nil: no). The
	// hook keeps it with the row, flush asks it.
	assigned func(key string, pos int) bool
	// The user statement whose changes rows holds (set when it starts,
	// kept until flush): flush reads its target table.
	stmt string
	// direct: the statement made a change itself (a preupdate call at
	// depth 0), even one that records nothing; then what its triggers did
	// is not captured (see flush).
	direct bool
	// inTxFn: a Tx function runs, which may go on after a statement's
	// error (see statementFailed); outside one, an error rolls the
	// transaction back.
	inTxFn bool
}

// startStmt notes the user statement that runs next; flush must have
// taken the previous one's rows.
func (c *capture) startStmt(stmt string) {
	c.stmt, c.direct = stmt, false
}

// dropRows forgets what the hook captured since the last flush.
func (c *capture) dropRows() {
	c.rows, c.err, c.direct, c.stmt = nil, nil, false, ""
}

// capturedRow is what the preupdate hook saw; it is turned into a Change
// after the statement, when SQL may run again on the connection.
type capturedRow struct {
	op                 change.Op
	table              string
	oldRowid, newRowid int64
	before, after      []any
	assigned           bool                           // an insert whose rowid SQLite chose (see capture.assigned)
	assignedBy         func(key string, pos int) bool // the statement's capture.assigned, for flush
	trigger            bool                           // made by a trigger the user's statement fired (depth 1)
}

// onPreUpdate runs inside sqlite3_step: it must not use the connection.
// A statement's own changes are captured (depth 0): triggers run again
// wherever the change is applied. The changes of the triggers a user's
// statement fires directly (depth 1) are kept too while the statement has
// made no change itself, for flush to decide.
func (a *dbActor) onPreUpdate(d sqlite.SQLitePreUpdateData) {
	depth := d.Depth()
	if depth == 0 && !isInternalTable(d.TableName) {
		a.cap.direct = true // in any schema: a change to a TEMP table is one too
	}
	if a.cap.err != nil || d.DatabaseName != "main" || isInternalTable(d.TableName) || depth > 1 ||
		depth == 1 && (!a.user || a.cap.direct) {
		return
	}
	r := capturedRow{table: d.TableName, oldRowid: d.OldRowID, newRowid: d.NewRowID, trigger: depth == 1}
	var err error
	switch d.Op {
	case sqlite3.SQLITE_INSERT:
		r.op = change.Insert
		r.after, err = sqlitex.PreUpdate(&d, true)
		if !r.trigger { // a trigger's: see flush
			r.assignedBy = a.cap.assigned
		}
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
	if err == nil && preUpdateFault != nil {
		err = preUpdateFault(d.TableName, r.before, r.after)
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
	stored     []int // cids (indexes into the hook's values) of the stored, non-generated columns
	pk         []int // indexes into columns
	rowidAlias bool
	// withoutRowid: a WITHOUT ROWID table, whose rows are known by pk
	// only (the hook's rowids mean nothing).
	withoutRowid bool
	rowid        string // how SQL names the rowid ("" if every name is a column's)
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
	var all []string
	for rows.Next() {
		var col, typ string
		var pk, hidden int
		if err := rows.Scan(&col, &typ, &pk, &hidden); err != nil {
			return nil, err
		}
		all = append(all, col)
		// hidden: 0 ordinary, 1 hidden (virtual tables), 2 virtual
		// generated, 3 stored generated. The hook's values are indexed by
		// cid (a virtual column's is sqlitex.NotStored); only ordinary
		// columns are synced, never named in SQL: SQLite computes the
		// others and refuses writes to them.
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
	ti.withoutRowid = a.withoutRowid(ctx, name)
	ti.rowidAlias = len(pks) == 1 && strings.EqualFold(pkType, "INTEGER") && !ti.withoutRowid
	ti.rowid, _ = change.RowidName(all) // "": refused where it is needed
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

// heldBy reports whether vals (a hook's row, nil for none) has a value at
// each of idx: a NotStored or missing one would be recorded as NULL.
func heldBy(vals []any, idx []int) bool {
	if vals == nil {
		return true
	}
	for _, j := range idx {
		if j >= len(vals) || vals[j] == sqlitex.NotStored {
			return false
		}
	}
	return true
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
//
// A statement's own changes are recorded; what its triggers did (depth 1)
// only if it made no change itself: a write to a view through its INSTEAD
// OF trigger, a row a BEFORE trigger logged and OR IGNORE or RAISE(IGNORE)
// skipped. Neither the server nor a pull's replay would make those rows.
// But any change of the statement's own, even one recorded as nothing (a
// no-op update, a TEMP table's row) or kept local (Config.IgnoreTables,
// replayed by every pull, its triggers with it), leaves its triggers'
// rows to wherever it is applied, or to nobody: their rows would describe
// a change nobody else sees. Of a trigger's rows, flush also leaves those
// of a table without a primary key that is not ignored (syncing them is
// impossible, and failing the statement would break what worked before
// triggers' rows were taken) and those of the statement's own table
// (WriteTarget) that, applied on the server, would fire the trigger that
// made them again (refires).
func (a *dbActor) flush(ctx context.Context) error {
	if err := a.cap.err; err != nil {
		a.cap.dropRows()
		return err
	}
	rows, direct, stmt := a.cap.rows, a.cap.direct, a.cap.stmt
	a.cap.dropRows()
	var w sqlitex.Write
	if !direct {
		w = sqlitex.WriteTarget(stmt)
	}
	var triggerText *string // the text of the triggers the statement fired; read once
	for _, r := range rows {
		if r.trigger && !direct && w.Table == "" {
			// Which of its rows would fire their trigger again where
			// applied cannot be told: refused, not dropped (nobody would
			// make them) nor pushed (the server might make them twice).
			return fmt.Errorf("%w: its triggers wrote %s, and the table it writes cannot be read from its text", ErrUnsupportedStatement, r.table)
		}
		if r.trigger && (direct || refires(w, r)) {
			continue
		}
		ti, err := a.tableInfo(ctx, r.table)
		if err != nil {
			return fmt.Errorf("capture change to %s: %w", r.table, err)
		}
		if len(ti.pk) == 0 && !a.ignored[r.table] {
			if r.trigger {
				continue
			}
			return fmt.Errorf("%w: %q; declare one (e.g. id INTEGER PRIMARY KEY) to sync it, or list it in Config.IgnoreTables to keep it local",
				ErrNoPrimaryKey, r.table)
		}
		if !heldBy(r.before, ti.stored) || !heldBy(r.after, ti.stored) {
			return fmt.Errorf("capture change to %s: the hook's row lacks a stored column (its schema changed?)", r.table)
		}
		c := change.Change{
			Op: r.op, Table: r.table, Columns: ti.columns, PK: ti.pk, RowidAlias: ti.rowidAlias,
			OldRowid: r.oldRowid, NewRowid: r.newRowid,
			Before: pick(r.before, ti.stored), After: pick(r.after, ti.stored),
		}
		if c.Op == change.Update && r.oldRowid == r.newRowid && sameRow(c.Before, c.After) {
			continue // nothing changed
		}
		if r.trigger && c.Op == change.Insert && c.RowidAlias {
			// The key is SQLite's choice (on a collision with another
			// replica's row the row moves to a new key instead of waiting
			// for the user) only if provably so: no insert into the table
			// in the triggers that fired gives the key column a value.
			// SQLite then picked it, whatever the statement's arguments.
			// Any value, even one that is NULL at run time, counts as the
			// trigger's: a key looked up, computed or copied from NEW
			// cannot be told from a chosen one by its number, and moving
			// it would silently attach the row to another key.
			if triggerText == nil {
				t, err := a.triggerSQL(ctx, w.Table)
				if err != nil {
					return fmt.Errorf("capture change to %s: read the triggers of %s: %w", r.table, w.Table, err)
				}
				triggerText = &t
			}
			r.assigned = sqlitex.InsertsOmit(*triggerText, r.table, ti.columns[ti.pk[0]], "rowid", "oid", "_rowid_")
		} else if r.assignedBy != nil && c.Op == change.Insert && c.RowidAlias {
			r.assigned = r.assignedBy(ti.columns[ti.pk[0]], ti.pk[0])
		}
		c.KeyAssigned = c.Op == change.Insert && c.RowidAlias && r.assigned
		if err := a.record(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// triggerSQL returns the text of the triggers on table (or view) name,
// the TEMP ones included.
func (a *dbActor) triggerSQL(ctx context.Context, name string) (string, error) {
	var text sql.NullString
	err := a.conn.QueryRowContext(ctx, `SELECT group_concat(sql, char(10)) FROM (
		SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE
		UNION ALL SELECT sql FROM sqlite_temp_schema WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE)`, name).Scan(&text)
	return text.String, err
}

// refires reports a row a trigger of statement w made in w's own table
// that, applied elsewhere, would fire that trigger again: locally it did
// not (SQLite fires no trigger inside itself), but there the row is a
// statement's own. Only a trigger of the kind w fired made it, so it
// refires only if applying it fires that kind: an insert is applied as an
// insert on a key the push guard keeps free, which fires INSERT triggers
// (an INSERT or upsert statement's); an update as an UPDATE (an UPDATE's,
// or an upsert's DO UPDATE); a delete as a DELETE. An UPDATE's trigger
// that appends a version of the row to its own table makes an insert that
// fires no UPDATE trigger there: it must be kept, or nobody makes it.
func refires(w sqlitex.Write, r capturedRow) bool {
	if !strings.EqualFold(r.table, w.Table) || w.Schema != "" && !strings.EqualFold(w.Schema, "main") {
		return false
	}
	switch r.op {
	case change.Insert:
		return w.Op == "INSERT"
	case change.Update:
		return w.Op == "UPDATE" || w.Upsert
	}
	return w.Op == "DELETE"
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
	a.cap.dropRows()
	a.cap.txnID = 0
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
