package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// renameFaultFS fails the first rename that match accepts.
type renameFaultFS struct {
	fsx.FS
	failed *atomic.Bool
	match  func(from, to string) bool
}

var errRenameFault = errors.New("injected rename fault")

func (fs renameFaultFS) Rename(from, to string) error {
	if fs.match(from, to) && fs.failed.CompareAndSwap(false, true) {
		return errRenameFault
	}
	return fs.FS.Rename(from, to)
}

// A swap that fails after its marker is written (here: the rename of the
// rebuilt database into PATH) keeps the rebuilt replica the marker points
// to; the Open{Recover} says the next Open finishes the replacement, and
// that Open does: the unpushed local change is in the replica, the other
// program's write is not, the old files are in the backup directory.
func TestRecoverSwapFailureIsFinishedByTheNextOpen(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	path := closedReplica(t, url, dir, "local")
	otherProgram(t, path, "INSERT INTO t VALUES(50, 'not by syncdb')", false)
	var failed atomic.Bool
	fs := renameFaultFS{FS: fsx.OS, failed: &failed, match: func(from, to string) bool {
		return strings.Contains(from, ".recover") && to == path
	}}
	ctx := testhooks.With(context.Background(), testhooks.Hooks{FS: fs})
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, Recover: true})
	if err == nil {
		db.Close()
		t.Fatalf("Open{Recover} with a failing swap succeeded (fault hit: %v)", failed.Load())
	}
	if !errors.Is(err, errRenameFault) || !strings.Contains(err.Error(), "the next Open") {
		t.Errorf("Open{Recover} with a failing swap: %v, want the fault and that the next Open finishes the swap", err)
	}
	db, err = syncdb.Open(context.Background(), syncdb.Config{Path: path, URL: url})
	if err != nil {
		t.Fatalf("the next Open: %v", err)
	}
	defer db.Close()
	if got := rows(t, db, "SELECT count(*) FROM t WHERE v = 'local'"); got != "1" {
		t.Errorf("the unpushed local row after the next Open: %s, want 1", got)
	}
	if got := rows(t, db, "SELECT count(*) FROM t WHERE id = 50"); got != "0" {
		t.Errorf("the other program's row after the next Open: %s, want 0 (rebuilt)", got)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, "a.db.before-recover-*", "a.db"))
	if len(backups) != 1 {
		t.Errorf("backups of the old database: %q, want one", backups)
	}
}

// A successful rebuild removes its work directory before it releases the
// lock: once released, another Open{Recover} may rebuild there again.
func TestRecoverRemovesItsWorkDirectoryUnderTheLock(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	path := closedReplica(t, url, dir, "local")
	otherProgram(t, path, "INSERT INTO t VALUES(50, 'not by syncdb')", false)
	work := path + ".recover"
	var unlocks, withWork int
	ctx := testhooks.With(context.Background(), testhooks.Hooks{AfterUnlock: func() {
		unlocks++
		if _, err := os.Stat(work); err == nil {
			withWork = unlocks
		}
	}})
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, Recover: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := rows(t, db, "SELECT count(*) FROM t WHERE v = 'local'"); got != "1" {
		t.Fatalf("the local row after the rebuild: %s, want 1", got)
	}
	if _, err := os.Stat(work); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the work directory after the rebuild: %v", err)
	}
	// The old replica's and the fresh one's Close release the lock with
	// the work directory there; the swap's release must not.
	if unlocks < 3 || withWork == unlocks {
		t.Errorf("%d lock releases, the last with %s present: %d", unlocks, work, withWork)
	}
}
