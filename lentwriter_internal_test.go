package syncdb

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
