package dbactor

import (
	"context"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/sqlitex"
)

// A user statement that fails has not always been undone. SQLite keeps
// what a statement did before its error under OR FAIL (or a constraint's
// ON CONFLICT FAIL, or a trigger's RAISE(FAIL)), and modernc returns
// ctx.Err() when the context ended just after a step that succeeded (and
// INSERT ... RETURNING makes all its changes in its first step). Dropping
// the captured rows of such a statement commits its changes without
// their change records, if the Tx function goes on after the error: never
// pushed, and gone at the next pull. Its rows are therefore dropped only
// when the database shows the statement was undone, recorded when it
// shows the changes are there, and otherwise the transaction cannot
// commit.

// afterUserStatement, set by tests only, sees each user statement's error
// from Exec and returns the one execOne goes on with: a test turns a
// success into modernc's ctx.Err() after a step that succeeded.
var afterUserStatement func(stmt string, err error) error

// preUpdateFault, set by tests only, fails the preupdate hook's read of a
// row as a failed sqlite3_preupdate_old/new would.
var preUpdateFault func(table string, before, after []any) error

// statementFailed settles what the hook captured of a user statement that
// returned err, with the transaction still open, and returns the error the
// caller returns: err itself, or a capture error when the changes cannot
// be accounted for. before is the schema before a DDL statement, or nil.
func (a *dbActor) statementFailed(ctx context.Context, err error, before map[string]schemaObject) error {
	if isCaptureError(err) {
		a.cap.dropRows()
		return err
	}
	// The user's context may be the one that ended: the checks must run.
	ctx = context.WithoutCancel(ctx)
	if len(a.cap.rows) > 0 || a.cap.err != nil {
		v, verr := a.rowsKept(ctx, a.cap.rows)
		hookErr := a.cap.err
		switch {
		// A row the hook failed to read is missing from rows, and so are
		// the changes after it: only a row undone tells that the
		// statement, all of it, was.
		case verr != nil || v == inDoubt || hookErr != nil && v != undone:
			a.cap.dropRows()
			why := "its rows are neither as it left them nor as they were before it"
			if verr != nil {
				why = verr.Error()
			} else if v != inDoubt {
				why = fmt.Sprintf("the capture missed some of them: %v", hookErr)
			}
			return captureError{fmt.Errorf("the statement failed after it changed rows, and whether SQLite undid them cannot be told (%s), so the transaction cannot commit: %w", why, err)}
		case v == kept:
			if ferr := a.flush(ctx); ferr != nil {
				return captureError{fmt.Errorf("the statement failed but SQLite kept its changes, and recording them failed (%w): %w", ferr, err)}
			}
		default:
			a.cap.dropRows()
		}
	} else {
		a.cap.dropRows()
	}
	if before != nil {
		after, serr := a.schema(ctx)
		if serr != nil {
			return captureError{fmt.Errorf("the schema change failed, and reading the schema after it failed too (%w): %w", serr, err)}
		}
		if !sameSchema(before, after) {
			return captureError{fmt.Errorf("the schema change failed but SQLite kept it, so the transaction cannot commit: %w", err)}
		}
	}
	return err
}

func sameSchema(x, y map[string]schemaObject) bool {
	return maps.EqualFunc(x, y, func(o, p schemaObject) bool {
		return o.typ == p.typ && o.name == p.name && o.tbl == p.tbl &&
			(o.sql == nil) == (p.sql == nil) && (o.sql == nil || *o.sql == *p.sql)
	})
}

// verdict is what the rows a failed statement touched tell of it.
type verdict int

const (
	tellsNothing verdict = iota // no row, or none whose two states differ
	undone                      // rows as before it, none as after
	kept                        // rows as after it, none as before
	inDoubt                     // a row in neither state, or rows that disagree
)

// rowState is a row's stored columns (tableInfo.columns) as the preupdate
// hook saw them, or absent.
type rowState struct {
	absent bool
	cols   []any
}

// touchedRow is a row a failed statement touched: its state before the
// statement (the first change's before image, or absent for an insert)
// and after it (the last change's), and how to look it up.
type touchedRow struct {
	pre, post rowState
	lookup    []any // the rowid, or the primary key's values (WITHOUT ROWID)
}

// touchedTable is the rows of one table, by rowKey.
type touchedTable struct {
	ti    *tableInfo
	rows  map[string]*touchedRow
	order []string
}

// lookupBatch is how many rows one query of rowsKept reads: a failed
// statement may have touched many (an INSERT ... SELECT that fails at its
// end), and a query per row made the actor wait seconds.
const lookupBatch = 200

// rowLookups counts the queries rowsKept ran, for a test of their number.
var rowLookups atomic.Int64

// rowKey names a row of a table exactly: by rowid, or in a WITHOUT ROWID
// table (whose rowids the hook reports are meaningless) by its primary
// key's values, storage class and bits, so that keys SQLite's collation
// takes as one (NOCASE 'a' and 'A') stay two rows here, as they are two
// states.
func rowKey(vals []any) string {
	var b strings.Builder
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			b.WriteString("n;")
		case int64:
			b.WriteString("i" + strconv.FormatInt(v, 10) + ";")
		case float64:
			b.WriteString("f" + strconv.FormatUint(math.Float64bits(v), 16) + ";")
		case string:
			b.WriteString("s" + strconv.Itoa(len(v)) + ":" + v)
		case []byte:
			b.WriteString("b" + strconv.Itoa(len(v)) + ":" + string(v))
		default:
			fmt.Fprintf(&b, "?%T:%v;", v, v)
		}
	}
	return b.String()
}

// rowsKept tells whether the changes rows describe are in the database
// (kept) or not (undone), from the rows they touched: each is compared with
// its state before the statement and after it. A row whose two states are
// the same says nothing; a row in neither state (something the hook did
// not see changed it), or rows that disagree, leave it in doubt. Values
// compare exactly (sameValue, as flush compares them): the same storage
// class and bits, so that 0.0 and -0.0, or 'a' and 'A' under NOCASE, are
// two states.
func (a *dbActor) rowsKept(ctx context.Context, rows []capturedRow) (verdict, error) {
	tables := map[string]*touchedTable{}
	var order []string
	for _, r := range rows {
		tt := tables[r.table]
		if tt == nil {
			ti, err := a.tableInfo(ctx, r.table)
			if err != nil {
				return inDoubt, err
			}
			tt = &touchedTable{ti: ti, rows: map[string]*touchedRow{}}
			tables[r.table] = tt
			order = append(order, r.table)
		}
		ti := tt.ti
		state := func(img []any) (rowState, error) {
			if !heldBy(img, ti.stored) {
				return rowState{}, fmt.Errorf("the captured row of %s lacks a stored column (%d values)", r.table, len(img))
			}
			return rowState{cols: pick(img, ti.stored)}, nil
		}
		// key returns a row's key and lookup values: its rowid, or its
		// primary key from its image.
		key := func(rowid int64, s rowState) (string, []any) {
			if !ti.withoutRowid {
				return strconv.FormatInt(rowid, 10), []any{rowid}
			}
			pk := pick(s.cols, ti.pk)
			return rowKey(pk), pk
		}
		touch := func(rowid int64, was, now rowState) {
			img := now
			if now.absent {
				img = was
			}
			k, lookup := key(rowid, img)
			t := tt.rows[k]
			if t == nil {
				t = &touchedRow{pre: was, lookup: lookup}
				tt.rows[k] = t
				tt.order = append(tt.order, k)
			}
			t.post = now
		}
		absent := rowState{absent: true}
		switch r.op {
		case change.Insert:
			after, err := state(r.after)
			if err != nil {
				return inDoubt, err
			}
			touch(r.newRowid, absent, after)
		case change.Delete:
			before, err := state(r.before)
			if err != nil {
				return inDoubt, err
			}
			touch(r.oldRowid, before, absent)
		case change.Update:
			before, err := state(r.before)
			if err != nil {
				return inDoubt, err
			}
			after, err := state(r.after)
			if err != nil {
				return inDoubt, err
			}
			kb, _ := key(r.oldRowid, before)
			ka, _ := key(r.newRowid, after)
			if kb == ka {
				touch(r.oldRowid, before, after)
				continue
			}
			touch(r.oldRowid, before, absent)
			touch(r.newRowid, absent, after)
		}
	}
	sawKept, sawUndone := false, false
	for _, name := range order {
		tt := tables[name]
		found, err := a.readRows(ctx, name, tt)
		if err != nil {
			return inDoubt, err
		}
		for _, k := range tt.order {
			t := tt.rows[k]
			now, ok := found[k]
			is := func(s rowState) bool {
				if s.absent {
					return !ok
				}
				return ok && sameRow(s.cols, now)
			}
			isPre, isPost := is(t.pre), is(t.post)
			switch {
			case isPre && isPost: // the statement left it as it was
			case isPost:
				sawKept = true
			case isPre:
				sawUndone = true
			default:
				return inDoubt, nil
			}
		}
	}
	switch {
	case sawKept && sawUndone:
		return inDoubt, nil
	case sawKept:
		return kept, nil
	case sawUndone:
		return undone, nil
	}
	return tellsNothing, nil
}

// readRows reads the stored columns of tt's rows that are in table name,
// lookupBatch rows a query, by their rowKey. A lookup by primary key
// compares as the table does (its collation, its affinity): a row it
// returns is keyed by its own values, so only an exact match counts.
func (a *dbActor) readRows(ctx context.Context, name string, tt *touchedTable) (map[string][]any, error) {
	ti := tt.ti
	if !ti.withoutRowid && ti.rowid == "" {
		return nil, fmt.Errorf("columns named rowid, _rowid_ and oid shadow the rowid of %s", name)
	}
	cols := make([]string, len(ti.columns))
	for i, c := range ti.columns {
		cols[i] = change.QuoteIdent(c)
	}
	from := " FROM main." + change.QuoteIdent(name) + " WHERE "
	var sel, where, tuple string
	if ti.withoutRowid {
		sel = "SELECT " + strings.Join(cols, ", ") + from
		pk := make([]string, len(ti.pk))
		for i, p := range ti.pk {
			pk[i] = cols[p]
		}
		where = "(" + strings.Join(pk, ", ") + ") IN (VALUES "
		tuple = "(" + strings.TrimSuffix(strings.Repeat("?, ", len(pk)), ", ") + ")"
	} else {
		sel = "SELECT " + ti.rowid + ", " + strings.Join(cols, ", ") + from
		where = ti.rowid + " IN ("
		tuple = "?"
	}
	found := map[string][]any{}
	for start := 0; start < len(tt.order); start += lookupBatch {
		keys := tt.order[start:min(start+lookupBatch, len(tt.order))]
		var args []any
		for _, k := range keys {
			args = append(args, tt.rows[k].lookup...)
		}
		q := sel + where + strings.TrimSuffix(strings.Repeat(tuple+", ", len(keys)), ", ") + ")"
		rowLookups.Add(1)
		var got [][]any
		if err := sqlitex.Raw(ctx, a.conn, func(c *sqlitex.Conn) error {
			var err error
			got, err = c.Query(q, args...)
			return err
		}); err != nil {
			return nil, fmt.Errorf("read the rows of %s: %w", name, err)
		}
		for _, r := range got {
			if ti.withoutRowid {
				found[rowKey(pick(r, ti.pk))] = r
				continue
			}
			id, ok := r[0].(int64)
			if !ok {
				return nil, fmt.Errorf("read the rows of %s: a rowid %T", name, r[0])
			}
			found[strconv.FormatInt(id, 10)] = r[1:]
		}
	}
	return found, nil
}
