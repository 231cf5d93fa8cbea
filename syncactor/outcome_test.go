package syncactor

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/wire/hrana"
)

// outcome tells a conflict from a batch the server merely stopped: an
// interruption (the server's statement timeout) or a busy writer at any
// step, a guard's included, is transient and records nothing, whatever
// step it hit. Under load a 20,000-row push interrupted at a guard used to
// be taken for a conflict on that row ("the server's row is not as this
// change expects"), and at a statement for a constraint conflict.
func TestBatchOutcome(t *testing.T) {
	ins := change.Change{ID: 7, Op: change.Insert, Table: "t", Columns: []string{"id", "v"}, PK: []int{0}, RowidAlias: true, NewRowid: 1, After: []any{int64(1), "x"}}
	b := newBatch()
	b.continuity("client", 1, 0)
	if err := b.change(ins); err != nil {
		t.Fatal(err)
	}
	b.mark("client", 1, ins.ID, messages.ChainInfo{OK: true, Value: 1})
	b.commit()
	guard, stmt := -1, -1
	for i := range b.steps {
		if _, ok := b.changeAt[i]; ok {
			if b.guards[i] && guard < 0 {
				guard = i
			} else if !b.guards[i] && stmt < 0 {
				stmt = i
			}
		}
	}
	if guard < 0 || stmt < 0 {
		t.Fatalf("the batch has no guard or statement step: %d %d", guard, stmt)
	}

	// What SQLite says when the guard finds the row changed: the
	// classification depends on its wording.
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g, _, _ := change.Guard(ins)
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'other')"); err != nil {
		t.Fatal(err)
	}
	var s string
	gerr := db.QueryRow(g.SQL, g.Args...).Scan(&s)
	if gerr == nil || !strings.Contains(gerr.Error(), guardFailure) {
		t.Fatalf("a failing guard says %v; outcome looks for %q", gerr, guardFailure)
	}
	guardErr := &hrana.Error{Message: "SQLite error: " + gerr.Error(), Code: "SQLITE_UNKNOWN"}

	answer := func(at int, e *hrana.Error) *hrana.BatchResult {
		br := &hrana.BatchResult{StepResults: make([]*hrana.StmtResult, len(b.steps)), StepErrors: make([]*hrana.Error, len(b.steps))}
		for i := range b.steps {
			if i < at || at < 0 {
				br.StepResults[i] = &hrana.StmtResult{}
			}
		}
		if at >= 0 {
			br.StepErrors[at] = e
		}
		return br
	}
	interrupted := &hrana.Error{Message: "SQLite error: interrupted (context deadline exceeded)", Code: "SQLITE_INTERRUPT"}
	busy := &hrana.Error{Message: "SQLite error: database is locked", Code: "SQLITE_BUSY"}
	unique := &hrana.Error{Message: "SQLite error: UNIQUE constraint failed: t.v", Code: "SQLITE_CONSTRAINT"}

	check := func(name string, err error, conflict bool, retried bool) {
		t.Helper()
		var pc *pushConflict
		if errors.As(err, &pc) != conflict {
			t.Errorf("%s: conflict = %v, want %v (%v)", name, !conflict, conflict, err)
		}
		if netactor.IsTransient(err) != retried {
			t.Errorf("%s: transient = %v, want %v (%v)", name, !retried, retried, err)
		}
	}
	if err := b.outcome(answer(-1, nil)); err != nil {
		t.Errorf("committed batch: %v", err)
	}
	check("guard found the row changed", b.outcome(answer(guard, guardErr)), true, false)
	if err := b.outcome(answer(guard, guardErr)); !strings.Contains(err.Error(), "not as this change expects") {
		t.Errorf("guard conflict: %v", err)
	}
	check("constraint at a statement", b.outcome(answer(stmt, unique)), true, false)
	check("interrupted at the guard", b.outcome(answer(guard, interrupted)), false, true)
	check("interrupted at a statement", b.outcome(answer(stmt, interrupted)), false, true)
	check("interrupted at BEGIN", b.outcome(answer(0, interrupted)), false, true)
	check("busy at the guard", b.outcome(answer(guard, busy)), false, true)
	if err := b.outcome(answer(stmt, interrupted)); !errors.Is(err, errBatchInterrupted) {
		t.Errorf("interrupted: %v", err)
	}
	check("continuity guard", b.outcome(answer(b.marks[0], guardErr)), false, true)
}
