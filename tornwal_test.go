package syncdb_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/syncdb/syncdb"
)

// A checkpoint truncates the WAL; the next commit writes a new header,
// fsyncs it, then its frames. A power loss before that fsync can leave,
// on a real disk, a WAL of exactly one header's size whose bytes did not
// reach it (zeros): SQLite takes such a WAL for an empty one, and no frame
// can be lost with it. The open after it, also one that recovers the
// interrupted checkpoint, must not take it for a foreign write. A WAL with
// an invalid header and frames after it is no state syncdb's crash leaves:
// it stays refused.
func TestTornWALHeader(t *testing.T) {
	for _, tc := range []struct {
		name     string
		point    string // the crash: in the checkpoint, or right after it
		size     int
		refusing bool
	}{
		{"recovering a checkpoint", "checkpoint.copied", 32, false},
		{"after a checkpoint", "", 32, false},
		{"recovering, frames after it", "checkpoint.copied", 32 + 24 + 4096, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := newLossyReplica(t, newServer(t))
			a.createTU()
			mustExec(t, a.db, "INSERT INTO t VALUES(1, 'one')")
			if tc.point != "" {
				a.crashedCheckpoint(tc.point)
			} else {
				if err := a.db.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
				a.kill()
			}
			a.restartKilled(func() { // the torn header, on a real disk
				if st, err := os.Stat(a.cfg.Path + "-wal"); err != nil || st.Size() != 0 {
					t.Fatalf("the WAL after the checkpoint: %v %v, want empty", st, err)
				}
				if err := os.WriteFile(a.cfg.Path+"-wal", make([]byte, tc.size), 0o644); err != nil {
					t.Fatal(err)
				}
			})
			_, err := a.db.Exec(ctx, "INSERT INTO t VALUES(2, 'two')")
			if tc.refusing {
				if !errors.Is(err, syncdb.ErrExternalModification) {
					t.Fatalf("a write after an invalid WAL header with frames: %v, want ErrExternalModification", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("a write after a torn WAL header: %v", err)
			}
			if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|one\n2|two" {
				t.Fatalf("rows %q", got)
			}
			if err := a.db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			a.allPushed("after the sync")
		})
	}
}
