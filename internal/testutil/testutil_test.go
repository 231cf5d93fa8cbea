package testutil

import (
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

func TestMustExecAndEventually(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	MustExec(t, db, "CREATE TABLE t(x)")
	MustExec(t, db, "INSERT INTO t VALUES(?)", 7)
	var x int
	if err := db.QueryRow("SELECT x FROM t").Scan(&x); err != nil || x != 7 {
		t.Fatalf("x = %d, %v", x, err)
	}
	n := 0
	Eventually(t, time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("%d polls", n)
	}
}

func TestLockedBuffer(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { b.Write([]byte("ab")) })
	}
	wg.Wait()
	if s := b.String(); s != strings.Repeat("ab", 8) {
		t.Fatalf("%q", s)
	}
}
