package sqlitex_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/internal/sqlitex"
)

// Many goroutines run more distinct statements than the cache holds, so
// entries are evicted while others still run them: every call succeeds
// with the right answer.
func TestStmtCacheConcurrentEviction(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "c.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) INSERT INTO t SELECT i, i*i FROM n"); err != nil {
		t.Fatal(err)
	}
	c := sqlitex.NewStmtCache(db)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				k := (g*7 + i) % 100 // 100 distinct texts for 64 entries
				st, release, err := c.Stmt(ctx, fmt.Sprintf("SELECT v + %d FROM t WHERE id = ?", k))
				if err != nil {
					errs <- err
					return
				}
				var v int
				err = st.QueryRowContext(ctx, k+1).Scan(&v)
				release()
				if err != nil || v != (k+1)*(k+1)+k {
					errs <- fmt.Errorf("query %d: %d, %v", k, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Closing the cache while a statement is in use closes it only after.
	st, release, err := c.Stmt(ctx, "SELECT count(*) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	var n int
	if err := st.QueryRowContext(ctx).Scan(&n); err != nil || n != 100 {
		t.Fatalf("in-use statement after Close: %d, %v", n, err)
	}
	release()
	if err := st.QueryRowContext(ctx).Scan(&n); err == nil {
		t.Fatal("the statement still runs after Close and release")
	}
}

// An Exec of a cached statement sees the schema change under it.
func TestStmtCacheAcrossSchemaChange(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := sqlitex.NewStmtCache(conn)
	defer c.Close()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE t(a, b)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO t VALUES (?, ?)", 1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "DROP TABLE t; CREATE TABLE t(b, a, c DEFAULT 'c')"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO t VALUES (?, ?)", 1, 2); err == nil {
		t.Fatal("two values into three columns: no error")
	}
	if _, err := c.Exec(ctx, "INSERT INTO t(a, b) VALUES (?, ?)", 3, 4); err != nil {
		t.Fatal(err)
	}
	var a, b int
	var cc string
	if err := conn.QueryRowContext(ctx, "SELECT a, b, c FROM t").Scan(&a, &b, &cc); err != nil || a != 3 || b != 4 || cc != "c" {
		t.Fatalf("row %d %d %q, %v", a, b, cc, err)
	}
}

func TestFirstKeyword(t *testing.T) {
	for in, want := range map[string]string{
		"select 1":                        "SELECT",
		"  \n\tInsert into t":             "INSERT",
		"-- name: X :one\nINSERT INTO t":  "INSERT",
		"/* a */ /* b */ PRAGMA x":        "PRAGMA",
		"-- a\n  /* b\n */\n-- c\nBEGIN;": "BEGIN",
		"-- only a comment":               "",
		"/* unterminated":                 "",
		"(SELECT 1)":                      "",
		" \vBEGIN":                        "BEGIN", // whitespace for SQLite
		"-- c\n\vATTACH 'x' AS y":         "ATTACH",
		"\vBEGIN":                         "", // an illegal token for SQLite
		"/* c */\vBEGIN":                  "",
	} {
		if got := sqlitex.FirstKeyword(in); got != want {
			t.Errorf("FirstKeyword(%q) = %q, want %q", in, got, want)
		}
	}
}
