package syncdb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// killedWriter (a crash worker, see TestMain) writes row 1, then dies by
// SIGKILL at the failpoint W_KILL_AT of its next write, row 2, made by
// W_HOW (exec: DB.Exec; sqltx: a DB.SQL transaction; tx: DB.Tx).
func killedWriter() error {
	ctx := context.Background()
	path, point, how := os.Getenv("W_PATH"), os.Getenv("W_KILL_AT"), os.Getenv("W_HOW")
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path})
	if err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "INSERT INTO t VALUES(1, 'committed')"); err != nil {
		return err
	}
	dieAt(path, point)
	const insert = "INSERT INTO t VALUES(2, 'killed')"
	switch how {
	case "exec":
		_, err = db.Exec(ctx, insert)
	case "sqltx":
		tx, berr := db.SQL().BeginTx(ctx, nil)
		if berr != nil {
			return berr
		}
		if _, err := tx.ExecContext(ctx, insert); err != nil {
			return err
		}
		err = tx.Commit()
	case "tx":
		err = db.Tx(ctx, func(tx *syncdb.Tx) error {
			_, err := tx.Exec(ctx, insert)
			return err
		})
	default:
		return fmt.Errorf("W_HOW %q", how)
	}
	return fmt.Errorf("the write returned (%v): the failpoint was not hit", err)
}

// A process killed inside a local write transaction, after its rows and
// their captured change were written but before COMMIT, or right after
// COMMIT, loses nothing committed and shows nothing uncommitted: after the
// reopen the row is there exactly when it committed, the change log holds
// exactly the committed rows, and a push brings exactly those to another
// replica. Each write path runs in the killed process.
func TestWriteKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes")
	}
	ctx := context.Background()
	for _, how := range []string{"exec", "sqltx", "tx"} {
		for _, point := range []string{"write.captured", "write.committed"} {
			t.Run(how+"/"+point, func(t *testing.T) {
				url := newServer(t)
				dir := t.TempDir()
				path := filepath.Join(dir, "a.db")
				a := open(t, syncdb.Config{Path: path, URL: url})
				mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
				if err := a.Push(ctx); err != nil {
					t.Fatal(err)
				}
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}

				runKilled(t, workerCmd("W_PATH="+path, "W_KILL_AT="+point, "W_HOW="+how), point)

				want := "1|committed"
				if point == "write.committed" {
					want += "\n2|killed"
				}
				a = open(t, syncdb.Config{Path: path, URL: url})
				integrity(t, a)
				if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != want {
					t.Fatalf("after the kill at %s: rows %q, want %q", point, got, want)
				}
				st, err := a.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n := int64(strings.Count(want, "\n") + 1); st.CDCOperations != n {
					t.Fatalf("after the kill at %s: %d changes to push, want %d", point, st.CDCOperations, n)
				}
				if err := a.Push(ctx); err != nil {
					t.Fatal(err)
				}
				b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
				if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != want {
					t.Fatalf("another replica after the push: rows %q, want %q", got, want)
				}
			})
		}
	}
}
