package syncdb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// TestTxRowsLeftOpen: a DB.Tx function that returns with a query's rows
// not closed (read part-way, or not at all) must not leave a statement
// stepped on the writer: the next pull refreshes the writer and would fail
// with errWriterBusy for as long as those rows stayed open. Through the
// facade they are read in full (writeTx.query) and closed when the
// transaction ends; the pull then applies the remote row.
func TestTxRowsLeftOpen(t *testing.T) {
	for _, read := range []int{0, 1} {
		t.Run(map[int]string{0: "unread", 1: "read-one"}[read], func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url})
			mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			mustExec(t, a, "INSERT INTO t VALUES(1, 'one'), (2, 'two'), (3, 'three')")
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO t VALUES(4, 'remote')")
			var left *sql.Rows
			err := a.Tx(ctx, func(tx *syncdb.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(5, 'local')"); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, "SELECT id FROM t ORDER BY id")
				if err != nil {
					return err
				}
				for range read {
					rows.Next()
				}
				left = rows // not closed
				return nil
			})
			if err != nil {
				t.Fatalf("Tx: %v", err)
			}
			if _, err := a.Pull(ctx); err != nil {
				t.Fatalf("a pull after a Tx left rows open: %v", err)
			}
			if got := rows(t, a, "SELECT group_concat(id) FROM t"); got != "1,2,3,4,5" {
				t.Fatalf("after the pull: ids %s, want 1,2,3,4,5", got)
			}
			if left.Next() {
				t.Errorf("the rows left open still yield rows after the Tx ended")
			}
		})
	}
}
