package syncdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// TestPullRawWritesStaleCache: a pull's T1 overwrites pages with
// sqlite_dbpage, below the b-tree layer, on the writer connection, whose
// page cache may hold those pages already decoded (a local insert just
// read the table's leaf). The writer must not go on with them: here
// another client's row lands on the leaf a's writer has cached, and a's
// next local insert goes to the same leaf. With the stale decoded page
// (cell count, free space of a's version) that insert overwrites the
// other client's cell or corrupts the page; the pull empties the cache
// (dbactor refreshWriter). Checked: the rows, integrity_check, and both
// again after a reopen and after the other client pulls a's rows.
func TestPullRawWritesStaleCache(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	aPath := filepath.Join(t.TempDir(), "a.db")
	a, err := syncdb.Open(ctx, syncdb.Config{Path: aPath, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Close() }()
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	bPath := filepath.Join(t.TempDir(), "b.db")
	b := open(t, syncdb.Config{Path: bPath, URL: url})
	var want []string
	insert := func(db *syncdb.DB, id int) {
		t.Helper()
		mustExec(t, db, "INSERT INTO t VALUES(?, ?)", id, fmt.Sprintf("row %d", id))
		want = append(want, fmt.Sprintf("%d", id))
	}
	check := func(db *syncdb.DB, when string) {
		t.Helper()
		if got := rows(t, db, "PRAGMA integrity_check"); got != "ok" {
			t.Fatalf("%s: integrity_check: %s", when, got)
		}
		if got, w := rows(t, db, "SELECT id FROM t ORDER BY id"), strings.Join(want, "\n"); got != w {
			t.Fatalf("%s: rows\n%s\nwant\n%s", when, got, w)
		}
	}
	for round := range 4 {
		insert(a, 10*round+1) // a's writer reads and caches the leaf
		if err := a.Push(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		insert(b, 10*round+2) // the other client's row, on the same leaf
		if err := b.Push(ctx); err != nil {
			t.Fatal(err)
		}
		if changed, err := a.Pull(ctx); err != nil || !changed {
			t.Fatalf("pull: changed %v, %v", changed, err)
		}
		insert(a, 10*round+3) // on the leaf T1 just overwrote
		check(a, fmt.Sprintf("round %d, after a's insert", round))
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	check(b, "the other client, after pulling a's rows")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = open(t, syncdb.Config{Path: aPath, URL: url})
	check(a, "after a reopen")
}
