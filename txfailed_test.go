package syncdb_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/syncdb/syncdb"
)

// cancelNow is what the SQL function syncdb_test_cancel() calls while its
// statement steps: it ends the statement's context, then waits for
// modernc's watcher to see it, so that the step completes and modernc
// returns ctx.Err() for a statement whose changes are made.
var (
	cancelMu  sync.Mutex
	cancelNow context.CancelFunc
)

func init() {
	fn := func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
		cancelMu.Lock()
		cancel := cancelNow
		cancelMu.Unlock()
		if cancel != nil {
			cancel()
			time.Sleep(50 * time.Millisecond)
		}
		return "canceled", nil
	}
	sqlite.MustRegisterScalarFunction("syncdb_test_cancel", 0, fn)
}

// A statement of a Tx that returns an error is not always undone: SQLite
// keeps what an OR FAIL statement did before its error, and modernc
// returns ctx.Err() when the context ends just after a step that
// succeeded (an INSERT ... RETURNING makes its changes in its first
// step). A Tx function that goes on after the error and returns nil
// committed those rows without their change records, never pushed and
// gone at a's next pull. Now they are recorded when the database shows
// them, dropped when it shows them undone, and the transaction is refused
// when it cannot tell.
func TestTxFailedStatementKept(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	a := pushedReplica(t, url, dir, "a.db",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO t VALUES(1, 'one')",
		"CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO u VALUES(1, 'one')",
		// Changes the row the statement inserted, unseen by the capture
		// (a trigger of a statement that made a change itself).
		"CREATE TRIGGER u_ai AFTER INSERT ON u BEGIN UPDATE u SET v = v || '!' WHERE id = new.id; END",
	)
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	canceling := func() context.Context {
		c, cancel := context.WithCancel(ctx)
		cancelMu.Lock()
		cancelNow = cancel
		cancelMu.Unlock()
		return c
	}
	defer func() {
		cancelMu.Lock()
		cancelNow = nil
		cancelMu.Unlock()
	}()
	for _, tc := range []struct {
		name string
		run  func(*syncdb.Tx) error // the statement's error
		is   error                  // what the statement's error must be
		want string                 // t's rows on a and b after both synced
		// present: SQLite kept the row inside the transaction (the
		// test's premise); refused: the commit must fail.
		present, refused bool
	}{
		{name: "exec canceled after its step", is: context.Canceled, present: true, want: "1|one\n2|canceled",
			run: func(tx *syncdb.Tx) error {
				_, err := tx.Exec(canceling(), "INSERT INTO t VALUES(2, syncdb_test_cancel())")
				return err
			}},
		{name: "returning canceled after its step", is: context.Canceled, present: true, want: "1|one\n2|canceled",
			run: func(tx *syncdb.Tx) error {
				rs, err := tx.Query(canceling(), "INSERT INTO t VALUES(2, syncdb_test_cancel()) RETURNING id")
				if err == nil {
					rs.Close()
				}
				return err
			}},
		{name: "or fail", present: true, want: "1|one\n2|kept",
			run: func(tx *syncdb.Tx) error {
				_, err := tx.Exec(ctx, "INSERT OR FAIL INTO t VALUES(2, 'kept'), (1, 'dup')")
				return err
			}},
		{name: "abort", want: "1|one",
			run: func(tx *syncdb.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO t VALUES(2, 'undone'), (1, 'dup')")
				return err
			}},
		{name: "or fail changed by a trigger", present: true, refused: true, want: "1|one",
			run: func(tx *syncdb.Tx) error {
				_, err := tx.Exec(ctx, "INSERT OR FAIL INTO u VALUES(2, 'kept'), (1, 'dup')")
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := "t"
			if strings.Contains(tc.name, "trigger") {
				table = "u"
			}
			err := a.Tx(ctx, func(tx *syncdb.Tx) error {
				serr := tc.run(tx)
				if serr == nil || tc.is != nil && !errors.Is(serr, tc.is) {
					return fmt.Errorf("the statement's error: %v, want %v", serr, tc.is)
				}
				if tc.refused { // the Tx takes no more statements
					return nil
				}
				var n int
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = 2").Scan(&n); err != nil {
					return err
				}
				if (n == 1) != tc.present {
					return fmt.Errorf("the test's premise: row 2 in the transaction %d times, want %v", n, tc.present)
				}
				return nil // the error swallowed
			})
			if tc.refused {
				if err == nil || !strings.Contains(err.Error(), "cannot be told") {
					t.Fatalf("commit: %v, want it refused", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for _, db := range []*syncdb.DB{a, b} {
				if err := db.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
				if got := rows(t, db, "SELECT id, v FROM "+table+" ORDER BY id"); got != tc.want {
					t.Errorf("%s: %s %q, want %q", name, table, got, tc.want)
				}
			}
			mustExec(t, a, "DELETE FROM "+table+" WHERE id = 2")
			for _, db := range []*syncdb.DB{a, b} {
				if err := db.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
