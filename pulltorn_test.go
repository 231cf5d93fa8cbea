package syncdb_test

import (
	"context"
	"os"
	"testing"

	"github.com/syncdb/syncdb/internal/walfile"
)

// T1 commits without an fsync of its own (T2's commit syncs both), so a
// power loss before T2's fsync may keep T2's frames and lose one of T1's:
// the state made here by hand (T1's first frame damaged, T2's intact,
// the process killed after T2). Recovery finds no T1 (the valid log ends
// at the bad frame, as SQLite reads it) and abandons the pull, keeping the
// local row; the retried pull of the same revision writes T1 again over
// the same frames and runs its own T2 (the old T2's frames do not chain on
// to the new T1: see docs/ARCHITECTURE.md, the note after "Not handled"),
// and the replica syncs.
func TestPullRetryAfterTornT1(t *testing.T) {
	ctx := context.Background()
	a, url := pullKilledAt(t, "pull.t2", false)
	wal := a.cfg.Path + "-wal"
	_, frames, err := walfile.ReadAll(wal)
	if err != nil {
		t.Fatal(err)
	}
	var commits []int // indexes into frames
	for i, f := range frames {
		if f.IsCommit() {
			commits = append(commits, i)
		}
	}
	if len(commits) < 3 {
		t.Fatalf("the WAL holds %d commits, want T1 and T2 after the anchor", len(commits))
	}
	first := frames[commits[len(commits)-3]+1] // T1's first frame
	f, err := os.OpenFile(wal, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, first.Offset+100); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, first.Offset+100); err != nil {
		t.Fatal(err)
	}
	f.Close()

	a.open()
	checkTU(t, a.db, "after the reopen", "1|local", "")
	if _, err := a.db.Pull(ctx); err != nil {
		t.Fatalf("the retried pull: %v", err)
	}
	checkTU(t, a.db, "after the retried pull", "1|local", "2|remote")
	a.checkBase(url)
	if err := a.db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	a.allPushed("after a sync")
	a.checkBase(url)
}
