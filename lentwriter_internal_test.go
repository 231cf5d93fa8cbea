package syncdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/syncdb/syncdb/messages"
)

// A statement of a DB.Tx runs on the caller's goroutine with the writer
// its transaction holds (writeTx.do). A panic there ends the transaction
// as a panic inside the actor's Tx function does (dbactor's tx recovers
// it): the transaction rolls back with an error naming the panic, no
// statement runs in it after, and the writer takes the next write.
func TestLentWriterPanicRollsBack(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "a.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	wtx, err := d.beginWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wtx.do(ctx, func(ctx context.Context, w messages.WriteConn) error {
		_, err := w.Exec(ctx, "INSERT INTO t VALUES(1)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	err = wtx.do(ctx, func(context.Context, messages.WriteConn) error { panic("planted") })
	if err == nil || !strings.Contains(err.Error(), "panic in transaction function: planted") {
		t.Fatalf("a statement that panicked: %v, want the transaction function's panic", err)
	}
	if err := wtx.do(ctx, func(context.Context, messages.WriteConn) error {
		t.Error("a statement ran after the panic")
		return nil
	}); err == nil {
		t.Fatal("a statement after the panic succeeded")
	}
	if err := wtx.end(true); err == nil {
		t.Fatal("the commit after the panic succeeded")
	}
	if _, err := d.Exec(ctx, "INSERT INTO t VALUES(2)"); err != nil {
		t.Fatalf("a write after the panic: %v", err)
	}
	var ids string
	if err := d.QueryRow(ctx, "SELECT group_concat(id) FROM t").Scan(&ids); err != nil || ids != "2" {
		t.Fatalf("rows: %q (%v), want only the later write's", ids, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// Statements racing the end of their transaction (its context cancelled,
// the DB closed) either run before the serving loop takes the writer back
// or not at all; run with -race, it also shows the writer's state handed
// between the goroutines without a data race.
func TestLentWriterRacesTheEnd(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			d, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "a.db")})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if _, err := d.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
			tctx, cancel := context.WithCancel(ctx)
			defer cancel()
			wtx, err := d.beginWrite(tctx)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; ; i++ {
					err := wtx.do(ctx, func(ctx context.Context, w messages.WriteConn) error {
						_, err := w.Exec(ctx, "INSERT INTO t VALUES(?)", i)
						return err
					})
					if err != nil {
						return
					}
				}
			}()
			if how == "cancel" {
				cancel()
			} else if err := d.Close(); err != nil {
				t.Error(err)
			}
			wg.Wait()
			if err := wtx.end(true); err == nil {
				t.Fatal("the commit after the end succeeded")
			}
			if how == "cancel" {
				var n int
				if err := d.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 0 {
					t.Fatalf("rows after the cancelled transaction: %d (%v), want 0", n, err)
				}
			}
		})
	}
}

// A transaction whose goroutine ends inside it, by runtime.Goexit
// (t.FailNow in a test) or by a panic, in the DB.Tx function or inside a
// statement on the lent writer (writeTx.do), rolls back and gives the
// writer back: the next write does not wait for it, and none of its rows
// stay. Each write here is bounded, so that a wedged writer fails the test
// instead of hanging it.
func TestLentWriterGoexit(t *testing.T) {
	ctx := context.Background()
	end := map[string]func(){
		"goexit": runtime.Goexit,
		"panic":  func() { panic("planted") },
	}
	for _, where := range []string{"fn", "statement", "sql.Tx statement"} {
		for how, stop := range end {
			t.Run(where+"/"+how, func(t *testing.T) {
				d, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "a.db")})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
					t.Fatal(err)
				}
				body := func(exec func(string, ...any) (sql.Result, error)) {
					if _, err := exec("INSERT INTO t VALUES(1)"); err != nil {
						t.Error(err)
					}
					if where == "fn" {
						stop()
					}
					// A statement whose argument's Value method
					// (database/sql calls it on the lent writer) ends
					// the goroutine.
					_, err := exec("INSERT INTO t VALUES(?)", stopValuer(stop))
					// Only a panic gets here: do recovers it, and the
					// transaction is over.
					if err == nil || !strings.Contains(err.Error(), "panic in transaction function: planted") {
						t.Errorf("a statement that panicked: %v, want the panic", err)
					}
				}
				exited := make(chan struct{})
				go func() {
					defer close(exited)
					defer func() { recover() }() // the panic variant's panic goes on out of DB.Tx
					if where == "sql.Tx statement" {
						// Left open: the user's goroutine is gone.
						tx, err := d.SQL().BeginTx(ctx, nil)
						if err != nil {
							t.Error(err)
							return
						}
						body(func(q string, args ...any) (sql.Result, error) { return tx.ExecContext(ctx, q, args...) })
						return
					}
					d.Tx(ctx, func(tx *Tx) error {
						body(func(q string, args ...any) (sql.Result, error) { return tx.Exec(ctx, q, args...) })
						return nil
					})
				}()
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
					t.Fatal("the transaction's goroutine did not end")
				}
				wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				if _, err := d.Exec(wctx, "INSERT INTO t VALUES(3)"); err != nil {
					t.Fatalf("a write after the transaction's goroutine ended (%s in the %s): %v", how, where, err)
				}
				var ids string
				if err := d.QueryRow(ctx, "SELECT group_concat(id) FROM t").Scan(&ids); err != nil || ids != "3" {
					t.Fatalf("rows: %q (%v), want only the later write's", ids, err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	for how, stop := range end {
		for _, c := range argCases {
			t.Run(c.name+"/"+how, func(t *testing.T) { testGoexitInArgument(t, c, how, stop) })
		}
	}
}

// The statements of TestLentWriterGoexit's second part, each with an
// argument whose Value (or, for "SQL function", a Go SQL function the
// statement calls) ends the goroutine. database/sql (Go 1.26) calls Value
// holding locks it releases without a deferred call, so each of these
// once left one held: Tx.QueryRow's transaction never ended (its
// rollback waited for it); a statement kept prepared (UPDATE, an
// INSERT ... RETURNING) left the writer's connection unclosable, and
// Close hung; DB.Exec's Value ran on the actor's goroutine (a panic failed
// the actor; a Goexit made the Exec never return); a read left its pooled
// connection taken. The SQL function's panic left its statement stepping:
// no later transaction could commit, and Close hung.
var argCases = []struct {
	name string
	inTx bool // run in a DB.Tx
	run  func(ctx context.Context, d *DB, tx *Tx, v stopValuer) error
}{
	{"Tx.QueryRow", true, func(ctx context.Context, _ *DB, tx *Tx, v stopValuer) error {
		var n int
		return tx.QueryRow(ctx, "SELECT ?", v).Scan(&n)
	}},
	{"Tx.Query", true, func(ctx context.Context, _ *DB, tx *Tx, v stopValuer) error {
		rows, err := tx.Query(ctx, "SELECT ?", v)
		if err == nil {
			rows.Close()
		}
		return err
	}},
	{"Tx.Exec cached UPDATE", true, func(ctx context.Context, _ *DB, tx *Tx, v stopValuer) error {
		_, err := tx.Exec(ctx, "UPDATE t SET id = 7 WHERE id = ?", v)
		return err
	}},
	{"Tx.QueryRow INSERT RETURNING", true, func(ctx context.Context, _ *DB, tx *Tx, v stopValuer) error {
		var n int
		return tx.QueryRow(ctx, "INSERT INTO t VALUES(?) RETURNING id", v).Scan(&n)
	}},
	{"SQL function", true, func(ctx context.Context, _ *DB, tx *Tx, v stopValuer) error {
		stopMu.Lock()
		stopFn = v
		stopMu.Unlock()
		defer func() {
			stopMu.Lock()
			stopFn = nil
			stopMu.Unlock()
		}()
		_, err := tx.Exec(ctx, "INSERT INTO t VALUES(5 + syncdb_test_stop())")
		return err
	}},
	{"DB.Exec", false, func(ctx context.Context, d *DB, _ *Tx, v stopValuer) error {
		_, err := d.Exec(ctx, "UPDATE t SET id = 7 WHERE id = ?", v)
		return err
	}},
	{"DB.QueryRow", false, func(ctx context.Context, d *DB, _ *Tx, v stopValuer) error {
		var n int
		return d.QueryRow(ctx, "SELECT ?", v).Scan(&n)
	}},
	{"DB.Query", false, func(ctx context.Context, d *DB, _ *Tx, v stopValuer) error {
		rows, err := d.Query(ctx, "SELECT id FROM t WHERE id = ?", v)
		if err == nil {
			rows.Close()
		}
		return err
	}},
}

var (
	stopMu sync.Mutex
	stopFn func() // what syncdb_test_stop() calls
)

func init() {
	sqlite.MustRegisterScalarFunction("syncdb_test_stop", 0, func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
		stopMu.Lock()
		f := stopFn
		stopMu.Unlock()
		if f != nil {
			f()
		}
		return int64(0), nil
	})
}

func testGoexitInArgument(t *testing.T, c struct {
	name string
	inTx bool
	run  func(ctx context.Context, d *DB, tx *Tx, v stopValuer) error
}, how string, stop func()) {
	ctx := context.Background()
	// One read connection: a read that kept its connection makes the
	// next read wait.
	d, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "a.db"), ReadConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			go d.Close() // a hung Close must not hang the test too
		}
	}()
	if _, err := d.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "INSERT INTO t VALUES(2)"); err != nil {
		t.Fatal(err)
	}
	var stmtErr error
	var panicked any
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		defer func() { panicked = recover() }()
		if !c.inTx {
			stmtErr = c.run(ctx, d, nil, stopValuer(stop))
			return
		}
		stmtErr = d.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(1)"); err != nil {
				t.Error(err)
			}
			err := c.run(ctx, d, tx, stopValuer(stop))
			if how == "panic" && (err == nil || !strings.Contains(err.Error(), "panic in transaction function: planted")) {
				t.Errorf("the statement: %v, want the panic as an error", err)
			}
			return nil
		})
	}()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the goroutine did not end")
	}
	switch {
	case how == "goexit":
	case c.inTx:
		// The transaction is over: DB.Tx's commit fails, with the panic.
		if stmtErr == nil || !strings.Contains(stmtErr.Error(), "planted") {
			t.Errorf("DB.Tx: %v, want the panic as an error", stmtErr)
		}
	default:
		// Outside a Tx, the panic is the caller's, as with database/sql.
		if panicked != "planted" {
			t.Errorf("the statement: %v, recovered %v; want the panic on the caller's goroutine", stmtErr, panicked)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := d.Exec(wctx, "INSERT INTO t VALUES(3)"); err != nil {
		t.Fatalf("a write after the %s in %s: %v", how, c.name, err)
	}
	var ids string
	if err := d.QueryRow(wctx, "SELECT group_concat(id) FROM (SELECT id FROM t ORDER BY id)").Scan(&ids); err != nil || ids != "2,3" {
		t.Fatalf("rows: %q (%v), want 2,3: the transaction's rolled back", ids, err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Close() }()
	select {
	case err := <-done:
		closed = true
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		closed = true // Close is running, hung
		t.Fatalf("Close did not return after the %s in %s", how, c.name)
	}
}

// stopValuer is an argument whose Value calls it.
type stopValuer func()

func (v stopValuer) Value() (driver.Value, error) { v(); return int64(2), nil }
