package dbactor_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
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
