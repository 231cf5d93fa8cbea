package syncdb_test

import (
	"testing"

	"github.com/syncdb/syncdb"
)

// A pull that stops right after its first transaction (the server's pages
// written, the local changes not yet replayed on them) or right after its
// second (replayed, the new base not yet recorded) is finished by the next
// Open: the remote row and the local unpushed one are both there, with no
// conflict and one change left to push, and the replica syncs on. After T1 the database holds only the
// server's pages, which have no _syncdb_local: recovery must take that for
// "T2 has not run", not fail.
func TestPullStoppedAfterEachTransaction(t *testing.T) {
	for _, point := range []string{"pull.t1", "pull.t2"} {
		t.Run(point, func(t *testing.T) {
			url := newServer(t)
			dir := t.TempDir()
			path := closedReplica(t, url, dir, "local") // row 1, not pushed
			b := pushedReplica(t, url, dir, "b.db", "INSERT INTO t VALUES(2, 'remote')")
			stoppedPull(t, path, point)
			a := open(t, syncdb.Config{Path: path})
			syncedPair(t, a, b, "1|local\n2|remote")
		})
	}
}
