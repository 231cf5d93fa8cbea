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
// page cache may hold those pages already decoded (cell count, free
// space); the pull empties the cache (dbactor refreshWriter). Without
// that, the first to trip is the pulling replica's own T2: its replay and
// its bookkeeping write on pages T1 just put back, through their stale
// decoded headers, and SQLite finds them malformed (planted: round 0's
// b.Pull already fails, 'replay local changes: database disk image is
// malformed (11)', b's writer having cached pages since its open). The
// rest checks what a cache stale where T2 does not write would break:
// another client's row lands on the leaf a's local insert just read, a
// pulls it and inserts on that leaf again; the rows and integrity_check,
// also after a reopen and on the other client after it pulls a's rows.
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
			t.Fatalf("round %d: b's pull (its T2 writes on pages its T1 put back): %v", round, err)
		}
		insert(b, 10*round+2) // the other client's row, on the same leaf
		if err := b.Push(ctx); err != nil {
			t.Fatal(err)
		}
		if changed, err := a.Pull(ctx); err != nil || !changed {
			t.Fatalf("round %d: a's pull (its T2 writes on pages its T1 put back): changed %v, %v", round, changed, err)
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

// TestPullTruncatesStaleCache: T1 also shrinks the database (sqlite_dbpage
// truncation, with page 1) when the local changes grew it beyond the
// server's size; the writer's page cache holds pages of the cut tail and
// decoded pages of the table they belonged to. After the pull (T2 replays
// the local rows, the file grows again) an insert and integrity_check, on
// a, after a reopen, and on the other client once a pushed. Planted (no
// cache reset): the pull itself fails, 'replay local changes: database
// disk image is malformed (11)'.
func TestPullTruncatesStaleCache(t *testing.T) {
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
	pages := func() int {
		var n int
		if err := a.QueryRow(ctx, "PRAGMA page_count").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := pages()
	// Local rows, not pushed: about 40 pages past the server's end.
	mustExec(t, a, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300) INSERT INTO t SELECT i, printf('%0500d', i) FROM n")
	grown := pages()
	if grown < base+30 {
		t.Fatalf("the local rows grew the database from %d to %d pages only", base, grown)
	}
	pullRemoteRow(t, url, a, 1000)
	want := "301 1000"
	check := func(db *syncdb.DB, when string) {
		t.Helper()
		if got := rows(t, db, "PRAGMA integrity_check"); got != "ok" {
			t.Fatalf("%s: integrity_check: %s", when, got)
		}
		if got := rows(t, db, "SELECT count(*) || ' ' || max(id) FROM t"); got != want {
			t.Fatalf("%s: count, max id %s, want %s", when, got, want)
		}
	}
	check(a, "after the truncating pull")
	mustExec(t, a, "INSERT INTO t VALUES(301, 'after')")
	want = "302 1000"
	check(a, "after an insert")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "c.db"), URL: url})
	check(b, "another client")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = open(t, syncdb.Config{Path: aPath, URL: url})
	check(a, "after a reopen")
}
