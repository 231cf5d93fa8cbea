package syncdb_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// A write waiting for the writer while a transaction holds it (DB.Exec,
// DB.Tx, a database/sql Exec or BeginTx on DB.SQL()) gives up when its
// context ends, with the context's error, and leaves nothing behind: once
// the holding transaction commits, writes run again, and the writes that
// gave up never happen (a DB.Tx whose turn comes after its deadline rolls
// back without running).
func TestTxWaitHonoursContext(t *testing.T) {
	ctx := context.Background()
	d, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- d.Tx(ctx, func(tx *syncdb.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(1)"); err != nil {
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	select {
	case <-holding:
	case err := <-held:
		t.Fatalf("the holding transaction: %v", err)
	}
	waits := map[string]func(ctx context.Context) error{
		"DB.Exec": func(ctx context.Context) error {
			_, err := d.Exec(ctx, "INSERT INTO t VALUES(2)")
			return err
		},
		"DB.Tx": func(ctx context.Context) error {
			return d.Tx(ctx, func(tx *syncdb.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO t VALUES(3)")
				return err
			})
		},
		"sql Exec": func(ctx context.Context) error {
			_, err := d.SQL().ExecContext(ctx, "INSERT INTO t VALUES(4)")
			return err
		},
		"sql BeginTx": func(ctx context.Context) error {
			tx, err := d.SQL().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			_, err = tx.ExecContext(ctx, "INSERT INTO t VALUES(5)")
			return err
		},
	}
	for name, wait := range waits {
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- wait(wctx) }()
		select {
		case err := <-errc:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s waiting for the writer past its deadline: %v, want context.DeadlineExceeded", name, err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("%s took %v to give up, after a 100ms deadline", name, took)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s still waits for the writer 3s after its 100ms deadline", name)
		}
		cancel()
	}
	close(release)
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("the holding transaction: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the holding transaction did not end")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := d.Exec(wctx, "INSERT INTO t VALUES(6)"); err != nil {
		t.Fatalf("a write after the holding transaction: %v", err)
	}
	if err := d.Tx(wctx, func(tx *syncdb.Tx) error {
		_, err := tx.Exec(wctx, "INSERT INTO t VALUES(7)")
		return err
	}); err != nil {
		t.Fatalf("a transaction after the holding transaction: %v", err)
	}
	var ids string
	if err := d.QueryRow(ctx, "SELECT group_concat(id) FROM (SELECT id FROM t ORDER BY id)").Scan(&ids); err != nil || ids != "1,6,7" {
		t.Fatalf("rows: %q (%v), want 1,6,7 (the writes that gave up never ran)", ids, err)
	}
}
