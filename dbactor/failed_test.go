package dbactor_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/messages"
)

// A Tx statement that returns ctx.Err() although it succeeded (modernc
// does when the context ends just after the step) and whose error the Tx
// function swallows: its rows are recorded, and a schema change it made
// refuses the commit (the schema diff is not taken after an error).
func TestTxStatementCanceledAfterItsStep(t *testing.T) {
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)"); err != nil {
		t.Fatal(err)
	}
	defer dbactor.SetAfterUserStatement(func(stmt string, err error) error {
		if err == nil && strings.Contains(stmt, "canceled") {
			return context.Canceled
		}
		return err
	})()
	tx := func(q string) error {
		return l.db.Tx(t.Context(), func(w messages.WriteConn) error {
			if _, err := w.Exec(t.Context(), q); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("the statement's error: %v", err)
			}
			return nil // swallowed
		})
	}
	if err := tx("INSERT INTO t VALUES(1, 'canceled')"); err != nil {
		t.Fatal(err)
	}
	if got := describe(l.pending(t, &messages.PendingChanges{}).Changes); got != "1:1:schema:[] 2:2:insert:[1]" {
		t.Errorf("the change log %s, want the insert recorded", got)
	}
	if err := tx("CREATE INDEX cx ON t(v) -- canceled"); err == nil || !strings.Contains(err.Error(), "schema change failed but SQLite kept it") {
		t.Fatalf("the index's commit: %v, want it refused", err)
	}
	if err := l.exec(t, "CREATE INDEX cx ON t(v)"); err != nil {
		t.Errorf("the index after the refused commit: %v, want none there", err)
	}
}

// swallowing runs each statement in a Tx whose function ignores their
// errors, and returns each statement's error and the commit's.
func swallowing(t *testing.T, l *local, stmts ...string) (errs []error, commit error) {
	t.Helper()
	commit = l.db.Tx(t.Context(), func(w messages.WriteConn) error {
		for _, q := range stmts {
			_, err := w.Exec(t.Context(), q)
			errs = append(errs, err)
		}
		return nil
	})
	return errs, commit
}

// cancelMarked makes a statement whose text says "canceled" return
// context.Canceled although it succeeded, as modernc does when the
// context ends just after its step.
func cancelMarked(t *testing.T) {
	t.Cleanup(dbactor.SetAfterUserStatement(func(stmt string, err error) error {
		if err == nil && strings.Contains(stmt, "canceled") {
			return context.Canceled
		}
		return err
	}))
}

// The rows of a WITHOUT ROWID table are known by their primary key (the
// hook's rowids mean nothing): a multi-row insert that hits UNIQUE
// (ABORT, undone) is dropped and the Tx goes on; one kept is recorded,
// also an update of a NOCASE key to another case of itself.
func TestTxFailedWithoutRowid(t *testing.T) {
	cancelMarked(t)
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE t(k TEXT PRIMARY KEY COLLATE NOCASE, v) WITHOUT ROWID; INSERT INTO t VALUES('a', 1)"); err != nil {
		t.Fatal(err)
	}
	n0 := len(l.pending(t, &messages.PendingChanges{}).Changes)
	errs, err := swallowing(t, l, "INSERT INTO t VALUES('b', 2), ('A', 3)", "INSERT INTO t VALUES('c', 4)")
	if err != nil || errs[0] == nil || !strings.Contains(errs[0].Error(), "UNIQUE") || errs[1] != nil {
		t.Fatalf("the unique insert: %v, the next: %v, commit: %v; want UNIQUE, nil, nil", errs[0], errs[1], err)
	}
	if got := describe(l.pending(t, &messages.PendingChanges{}).Changes[n0:]); got != fmt.Sprintf("%d:%d:insert:[c]", n0+1, n0+1) {
		t.Errorf("changes after the unique insert: %s, want c's insert only", got)
	}
	n0 += 1
	if _, err := swallowing(t, l, "UPDATE t SET k = 'A' WHERE k = 'a' -- canceled", "INSERT INTO t VALUES('d', 5) -- canceled"); err != nil {
		t.Fatalf("the canceled statements' commit: %v", err)
	}
	p := l.pending(t, &messages.PendingChanges{}).Changes[n0:]
	if got := describe(p); got != fmt.Sprintf("%d:%d:update:[a] %d:%d:insert:[d]", n0+1, n0+1, n0+2, n0+1) {
		t.Errorf("changes after the canceled statements: %s, want the update and the insert", got)
	}
}

// A kept update from 0.0 to -0.0 is recorded, as on success: SQL's IS
// takes them as equal, the row would match both its states and be
// dropped.
func TestTxFailedNegativeZero(t *testing.T) {
	cancelMarked(t)
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 0.0)"); err != nil {
		t.Fatal(err)
	}
	n0 := len(l.pending(t, &messages.PendingChanges{}).Changes)
	if _, err := swallowing(t, l, "UPDATE t SET v = -0.0 WHERE id = 1 -- canceled"); err != nil {
		t.Fatal(err)
	}
	p := l.pending(t, &messages.PendingChanges{}).Changes[n0:]
	if len(p) != 1 || p[0].Op != change.Update || len(p[0].After) != 2 || !math.Signbit(p[0].After[1].(float64)) {
		t.Errorf("changes after the canceled update: %s, want the update to -0.0", describe(p))
	}
}

// A failed statement that touched many rows reads them in a few queries,
// not in queries per row (the actor waits for them).
func TestTxFailedManyRowsFewQueries(t *testing.T) {
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(0, 'x')"); err != nil {
		t.Fatal(err)
	}
	n0 := l.pending(t, &messages.PendingChanges{}).Changes
	q0 := dbactor.RowLookups()
	errs, err := swallowing(t, l, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 5000) INSERT INTO t SELECT i, 'v' FROM s UNION ALL SELECT 0, 'dup'")
	q := dbactor.RowLookups() - q0
	if err != nil || errs[0] == nil {
		t.Fatalf("the insert: %v, commit: %v; want UNIQUE, nil", errs[0], err)
	}
	// Parallel tests may add a few.
	if q > 100 {
		t.Errorf("%d queries read the 5000 rows of the failed insert, want about 25", q)
	}
	if p := l.pending(t, &messages.PendingChanges{}).Changes; len(p) != len(n0) {
		t.Errorf("%d changes after the undone insert, want %d", len(p), len(n0))
	}
}

// Outside a Tx a failed statement's transaction is rolled back whole: its
// error is the user's, not a verdict on rows about to be undone anyway.
func TestExecFailedNotSettled(t *testing.T) {
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE u(id INTEGER PRIMARY KEY, v); INSERT INTO u VALUES(1, 'one'); "+
		"CREATE TRIGGER u_ai AFTER INSERT ON u BEGIN UPDATE u SET v = v || '!' WHERE id = new.id; END"); err != nil {
		t.Fatal(err)
	}
	err := l.exec(t, "INSERT OR FAIL INTO u VALUES(2, 'two'), (1, 'dup')")
	if err == nil || !strings.Contains(err.Error(), "UNIQUE") || strings.Contains(err.Error(), "cannot be told") {
		t.Errorf("the OR FAIL insert's error: %v, want SQLite's UNIQUE error alone", err)
	}
}

// A row the hook failed to read is missing from the capture: a failed
// statement is then dropped only if a row shows it undone, else the
// commit is refused.
func TestTxFailedHookError(t *testing.T) {
	cancelMarked(t)
	t.Cleanup(dbactor.SetPreUpdateFault(func(_ string, _, after []any) error {
		if len(after) == 2 && after[1] == "unreadable" {
			return errors.New("planted preupdate failure")
		}
		return nil
	}))
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 'one')"); err != nil {
		t.Fatal(err)
	}
	n0 := len(l.pending(t, &messages.PendingChanges{}).Changes)
	// Kept, nothing captured: refused.
	if _, err := swallowing(t, l, "INSERT INTO t VALUES(2, 'unreadable') -- canceled"); err == nil || !strings.Contains(err.Error(), "planted preupdate failure") {
		t.Errorf("the kept unreadable insert's commit: %v, want it refused", err)
	}
	// Undone (ABORT), the row before the unreadable one shows it.
	errs, err := swallowing(t, l, "INSERT INTO t VALUES(3, 'three'), (4, 'unreadable'), (1, 'dup')", "INSERT INTO t VALUES(5, 'five')")
	if err != nil || errs[0] == nil || !strings.Contains(errs[0].Error(), "UNIQUE") {
		t.Errorf("the undone insert: %v, commit: %v; want UNIQUE, nil", errs[0], err)
	}
	if got := describe(l.pending(t, &messages.PendingChanges{}).Changes[n0:]); got != fmt.Sprintf("%d:%d:insert:[5]", n0+1, n0+1) {
		t.Errorf("changes: %s, want 5's insert only", got)
	}
}

// A statement kept although it returned an error is recorded as the same
// statement succeeding would be, whatever its table's columns hold:
// affinity, a stored generated column, a REPLACE, a rowid change, an empty blob,
// a column added with a default.
func TestTxFailedKeptAsOnSuccess(t *testing.T) {
	cancelMarked(t)
	for _, tc := range []struct{ name, setup, stmt string }{
		{"real affinity insert", "CREATE TABLE t(id INTEGER PRIMARY KEY, v REAL)", "INSERT INTO t VALUES(1, 1.0)"},
		{"real affinity update", "CREATE TABLE t(id INTEGER PRIMARY KEY, v REAL); INSERT INTO t VALUES(1, 2.5)", "UPDATE t SET v = 3 WHERE id = 1"},
		{"stored generated", "CREATE TABLE t(id INTEGER PRIMARY KEY, a, g AS (a*2) STORED, c)", "INSERT INTO t(id, a, c) VALUES(1, 2, 3)"},
		{"virtual generated", "CREATE TABLE t(id INTEGER PRIMARY KEY, g AS (a*2) VIRTUAL, a, c); INSERT INTO t(id, a, c) VALUES(1, 2, 3)", "UPDATE t SET a = 4 WHERE id = 1"},
		{"replace", "CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE); INSERT INTO t VALUES(1,'a'),(2,'b')", "INSERT OR REPLACE INTO t VALUES(3, 'a')"},
		{"rowid change", "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1,'a')", "UPDATE t SET id = 5 WHERE id = 1"},
		{"empty blob", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t VALUES(1, x'')"},
		{"added column", "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1,'a'); ALTER TABLE t ADD COLUMN r REAL DEFAULT 1", "UPDATE t SET v = 'b' WHERE id = 1"},
		{"without rowid composite", "CREATE TABLE t(a TEXT, b INT, v, PRIMARY KEY(a, b)) WITHOUT ROWID; INSERT INTO t VALUES('x', 1, 'a')", "UPDATE t SET b = 2, v = 'b' WHERE a = 'x'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, got []change.Change
			for i, stmt := range []string{tc.stmt, tc.stmt + " -- canceled"} {
				l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
				if err := l.exec(t, tc.setup); err != nil {
					t.Fatal(err)
				}
				n0 := len(l.pending(t, &messages.PendingChanges{}).Changes)
				errs, err := swallowing(t, l, stmt)
				if err != nil || (i == 1) != (errs[0] != nil) {
					t.Fatalf("%s: statement %v, commit %v", stmt, errs[0], err)
				}
				p := l.pending(t, &messages.PendingChanges{}).Changes[n0:]
				if i == 0 {
					want = p
				} else {
					got = p
				}
			}
			if len(want) == 0 || fmt.Sprintf("%v", summary(got)) != fmt.Sprintf("%v", summary(want)) {
				t.Errorf("kept after an error: %v, want %v as on success", summary(got), summary(want))
			}
		})
	}
}

func summary(cs []change.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%v %s %d>%d %#v>%#v", c.Op, c.Table, c.OldRowid, c.NewRowid, c.Before, c.After))
	}
	return out
}

// A hook's row without a value for a stored column (sqlitex.NotStored
// where tableInfo expects data) fails the statement: recorded, it would
// push NULL for a value the row holds.
func TestCaptureNotStoredRefused(t *testing.T) {
	t.Cleanup(dbactor.SetPreUpdateFault(func(_ string, _, after []any) error {
		if len(after) == 3 && after[2] == "lost" {
			after[2] = sqlitex.NotStored
		}
		return nil
	}))
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	if err := l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, g AS (id*2) VIRTUAL, v)"); err != nil {
		t.Fatal(err)
	}
	if err := l.exec(t, "INSERT INTO t(id, v) VALUES(1, 'kept')"); err != nil {
		t.Fatalf("an insert beside a virtual column: %v", err)
	}
	if err := l.exec(t, "INSERT INTO t(id, v) VALUES(2, 'lost')"); err == nil || !strings.Contains(err.Error(), "lacks a stored column") {
		t.Errorf("the insert whose stored column the hook lacks: %v, want it refused", err)
	}
}
