package dbactor_test

import (
	"context"
	"database/sql/driver"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/messages"
)

// panicValuer is an argument whose Value panics: database/sql calls it
// while the writer runs the user's statement (in asUser).
type panicValuer struct{}

func (panicValuer) Value() (driver.Value, error) { panic("planted") }

// A user's statement that panics (here in an argument's Value) inside a
// Tx function rolls back the transaction, and the writer is no longer
// under the user's rules after it: syncdb's own writes (RecordPush, which
// writes its own tables) are not refused as a user's change to them.
func TestUserStatementPanicEndsUserRules(t *testing.T) {
	ctx := t.Context()
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	for _, q := range []string{"CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)"} {
		if err := l.exec(t, q); err != nil {
			t.Fatal(err)
		}
	}
	err := l.db.Tx(ctx, func(w messages.WriteConn) error {
		// Not an INSERT (assignedKey would call Value before the
		// statement runs), and not a statement kept prepared: a panic
		// inside sql.Stmt's Exec leaks its connection's lock (database/sql
		// releases it without defer), and closing the writer would hang.
		_, err := w.Exec(context.Background(), "SELECT ?", panicValuer{})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "planted") {
		t.Fatalf("the transaction whose statement panicked: %v, want the panic", err)
	}
	gen := l.pending(t, &messages.PendingChanges{}).PullGen
	if err := l.db.RecordPush(ctx, gen, 2, 1); err != nil {
		t.Fatalf("syncdb's own write after the user's statement panicked: %v", err)
	}
	if p := l.pending(t, &messages.PendingChanges{Unpushed: true}); len(p.Changes) != 0 || !p.Recorded {
		t.Fatalf("after the push: %s unpushed (recorded %v), want none", describe(p.Changes), p.Recorded)
	}
}
