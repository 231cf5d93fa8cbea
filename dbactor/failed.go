package dbactor

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/syncdb/syncdb/internal/change"
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
		kept, known, verr := a.rowsKept(ctx, a.cap.rows)
		switch {
		case verr != nil || !known:
			a.cap.dropRows()
			why := "its rows are neither as it left them nor as they were before it"
			if verr != nil {
				why = verr.Error()
			}
			return captureError{fmt.Errorf("the statement failed after it changed rows, and whether SQLite undid them cannot be told (%s), so the transaction cannot commit: %w", why, err)}
		case kept:
			// flush reports the hook's own error, if any.
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

// rowKey is a row of a table, by rowid.
type rowKey struct {
	table string
	rowid int64
}

// rowState is a row's content as the preupdate hook saw it (every column
// of the record), or absent.
type rowState struct {
	absent bool
	image  []any
}

// rowsKept tells whether the changes rows describe are in the database
// (kept) or not (undone), from the rows they touched: each is compared with
// its state before the statement (the first change's before image, or
// absent for an insert) and after it (the last change's). A row whose two
// states the database cannot tell apart says nothing; known is false when
// a row matches neither (something the hook did not see changed it) or the
// rows disagree. No row that says anything: nothing to record, undone.
func (a *dbActor) rowsKept(ctx context.Context, rows []capturedRow) (kept, known bool, err error) {
	pre := map[rowKey]rowState{}
	post := map[rowKey]rowState{}
	var order []rowKey
	touch := func(k rowKey, was, now rowState) {
		if _, ok := pre[k]; !ok {
			pre[k] = was
			order = append(order, k)
		}
		post[k] = now
	}
	for _, r := range rows {
		switch r.op {
		case change.Insert:
			touch(rowKey{r.table, r.newRowid}, rowState{absent: true}, rowState{image: r.after})
		case change.Delete:
			touch(rowKey{r.table, r.oldRowid}, rowState{image: r.before}, rowState{absent: true})
		case change.Update:
			if r.oldRowid == r.newRowid {
				touch(rowKey{r.table, r.oldRowid}, rowState{image: r.before}, rowState{image: r.after})
				continue
			}
			touch(rowKey{r.table, r.oldRowid}, rowState{image: r.before}, rowState{absent: true})
			touch(rowKey{r.table, r.newRowid}, rowState{absent: true}, rowState{image: r.after})
		}
	}
	sawKept, sawUndone := false, false
	for _, k := range order {
		isPre, isPost, err := a.rowMatches(ctx, k, pre[k], post[k])
		if err != nil {
			return false, false, err
		}
		switch {
		case isPre && isPost: // the statement left it as it was
		case isPost:
			sawKept = true
		case isPre:
			sawUndone = true
		default:
			return false, false, nil
		}
	}
	if sawKept && sawUndone {
		return false, false, nil
	}
	return sawKept, true, nil
}

// rowMatches reports whether row k of the database is in state x, and
// whether it is in state y. Values compare exactly: the same storage
// class, and bytes (COLLATE BINARY), so that a row is in state x only if
// it holds x's values.
func (a *dbActor) rowMatches(ctx context.Context, k rowKey, x, y rowState) (isX, isY bool, err error) {
	if a.withoutRowid(ctx, k.table) {
		return false, false, fmt.Errorf("%s has no rowid", k.table)
	}
	ti, err := a.tableInfo(ctx, k.table)
	if err != nil {
		return false, false, err
	}
	var all []string
	r, err := a.conn.QueryContext(ctx, "SELECT name FROM pragma_table_xinfo(?)", k.table)
	if err != nil {
		return false, false, err
	}
	for r.Next() {
		var n string
		if err := r.Scan(&n); err != nil {
			r.Close()
			return false, false, err
		}
		all = append(all, n)
	}
	r.Close()
	if err := r.Err(); err != nil {
		return false, false, err
	}
	rowid, err := change.RowidName(all)
	if err != nil {
		return false, false, err
	}
	from := "FROM main." + change.QuoteIdent(k.table) + " WHERE " + rowid + " = ?1"
	args := []any{k.rowid}
	cond := func(s rowState) (string, error) {
		if s.absent {
			return "NOT EXISTS(SELECT 1 " + from + ")", nil
		}
		var b strings.Builder
		b.WriteString("EXISTS(SELECT 1 " + from)
		for i, col := range ti.columns {
			j := ti.stored[i]
			if j >= len(s.image) {
				return "", fmt.Errorf("the captured row of %s has %d values, want more than %d", k.table, len(s.image), j)
			}
			args = append(args, s.image[j])
			p := fmt.Sprintf("?%d", len(args))
			c := change.QuoteIdent(col)
			fmt.Fprintf(&b, " AND %s IS %s COLLATE BINARY AND typeof(%s) = typeof(%s)", c, p, c, p)
		}
		b.WriteString(")")
		return b.String(), nil
	}
	cx, err := cond(x)
	if err != nil {
		return false, false, err
	}
	cy, err := cond(y)
	if err != nil {
		return false, false, err
	}
	err = a.conn.QueryRowContext(ctx, "SELECT "+cx+", "+cy, args...).Scan(&isX, &isY)
	return isX, isY, err
}
