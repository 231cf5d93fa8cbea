package syncdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// An open after a crash inside a checkpoint (Checkpointing recorded) runs
// the whole checkpoint again (recoverCheckpoint, copyWAL). A second crash
// inside that rerun, at each of its failpoints, killed or with a power
// loss, then another open: nothing is lost, the local write is pushed
// once, and another replica gets every row.
func TestCheckpointRecoveryRerunCrash(t *testing.T) {
	for _, first := range []string{"checkpoint.meta", "checkpoint.copied"} {
		for _, second := range []string{"checkpoint.revert", "checkpoint.meta", "checkpoint.copied"} {
			for _, power := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/power=%v", first, second, power), func(t *testing.T) {
					if first == "checkpoint.copied" && !power {
						t.Skip("the WAL is empty after the copy: the recovery only records it, no rerun")
					}
					ctx := context.Background()
					url := newServer(t)
					a := newLossyReplica(t, url)
					a.createTU()
					mustExec(t, a.db, "INSERT INTO t VALUES(1, 'pushed')")
					if err := a.db.Sync(ctx); err != nil {
						t.Fatal(err)
					}
					mustExec(t, a.db, "INSERT INTO t VALUES(2, 'local')")
					mustExec(t, a.db, "UPDATE t SET v = 'changed' WHERE id = 1")
					a.crashedCheckpoint(first)
					a.down(power)
					a.crashedOpen(second, power) // in the open's checkpoint recovery
					a.open()
					if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|changed\n2|local" {
						t.Fatalf("after the second crash: %q", got)
					}
					mustExec(t, a.db, "INSERT INTO t VALUES(3, 'after')")
					if err := a.db.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
					if err := a.db.Sync(ctx); err != nil {
						t.Fatal(err)
					}
					a.allPushed("after the sync")
					b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url})
					if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|changed\n2|local\n3|after" {
						t.Fatalf("the other replica has %q", got)
					}
				})
			}
		}
	}
}
