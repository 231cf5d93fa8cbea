package interop

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/tursodatabase/libsql-client-go/libsql" // the "libsql" driver: Hrana over HTTP (v2) and WebSocket (hrana1)
)

// replicaPull pulls the @tursodatabase/sync replica of database db once
// (peer/replica.mjs) and returns whether that changed it and the ids of
// table afterwards.
func replicaPull(t *testing.T, srv *syncServer, clientDir, db, table string) (bool, string) {
	t.Helper()
	var res struct {
		Changed bool
		IDs     []int
	}
	runPeer(t, srv, clientDir, &res, "replica.mjs", db, table)
	return res.Changed, fmt.Sprint(res.IDs)
}

// Go's libsql-client-go against syncdb serve, over HTTP and WebSocket:
// database/sql transactions commit, roll back, read their own writes and
// survive a failing statement; a db.Conn runs many statements on one
// stream; two transactions at once; values and counts; a replica pulls
// exactly the committed transactions.
func TestLibsqlClientGo(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientDir := t.TempDir()
	for _, tc := range []struct{ label, url, db string }{
		{"http", srv.URL + "/db/gohttp", "gohttp"},
		{"ws", strings.Replace(srv.URL, "http://", "ws://", 1) + "/db/gows", "gows"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			testLibsqlGo(t, srv, clientDir, tc.url, tc.db)
		})
	}
}

func testLibsqlGo(t *testing.T, srv *syncServer, clientDir, url, dbName string) {
	ctx := context.Background()
	db, err := sql.Open("libsql", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) sql.Result {
		t.Helper()
		r, err := db.ExecContext(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return r
	}
	// replica checks the ids a replica has after one pull, and whether
	// that pull changed anything (unless it is the bootstrap).
	replica := func(what, want string, wantChanged bool) {
		t.Helper()
		changed, ids := replicaPull(t, srv, clientDir, dbName, "t")
		if ids != want || (what != "setup" && changed != wantChanged) {
			t.Fatalf("%s: the replica has %s (changed %v) after one pull, want %s (changed %v)", what, ids, changed, want, wantChanged)
		}
	}
	exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
	replica("setup", "[]", true)

	// Commit, with read-your-writes.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{1, 2} {
		if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (?, 'x')", id); err != nil {
			t.Fatalf("tx insert %d: %v", id, err)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("read-your-writes: %d %v", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	replica("commit", "[1 2]", true)

	// Rollback, and a failure in the middle.
	tx, _ = db.BeginTx(ctx, nil)
	tx.ExecContext(ctx, "INSERT INTO t VALUES (3, 'r')")
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (1, 'dup')"); err == nil || !strings.Contains(err.Error(), "SQLite error: UNIQUE constraint failed: t.id") {
		t.Fatalf("duplicate key in a transaction: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	replica("rollback", "[1 2]", false)

	// A connection keeps its stream: many statements, and a transaction
	// begun with SQL that spans requests (a temporary table lives as long
	// as the transaction: between autocommit requests the server resets
	// the writer connection it shares with other streams).
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"INSERT INTO t VALUES (4, 'c')", "DELETE FROM t WHERE id = 4", "BEGIN", "CREATE TEMP TABLE scratch (x)", "INSERT INTO scratch VALUES (1)", "INSERT INTO scratch VALUES (2)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("conn %s: %v", q, err)
		}
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM scratch").Scan(&n); err != nil || n != 2 {
		t.Fatalf("conn: %d %v", n, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// Two transactions at once: the second waits for the first.
	other, _ := sql.Open("libsql", url)
	defer other.Close()
	a, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExecContext(ctx, "INSERT INTO t VALUES (10, 'a')"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var berr error
	wg.Go(func() {
		b, err := other.BeginTx(ctx, nil)
		if err == nil {
			if _, err = b.ExecContext(ctx, "INSERT INTO t VALUES (11, 'b')"); err == nil {
				err = b.Commit()
			}
		}
		berr = err
	})
	time.Sleep(200 * time.Millisecond)
	a.ExecContext(ctx, "INSERT INTO t VALUES (12, 'a')")
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if berr != nil {
		t.Fatalf("the second transaction: %v", berr)
	}
	replica("concurrent", "[1 2 10 11 12]", true)

	// Values and counts.
	exec("CREATE TABLE vals (id INTEGER PRIMARY KEY, v)")
	vals := []any{int64(math.MaxInt64), int64(math.MinInt64), 1.5, "héllo 🌍", []byte{0, 1, 255}, nil}
	for i, v := range vals {
		r := exec("INSERT INTO vals VALUES (?, ?)", i+1, v)
		if k, _ := r.RowsAffected(); k != 1 {
			t.Fatalf("insert %d: %d rows affected", i, k)
		}
		if id, _ := r.LastInsertId(); id != int64(i+1) {
			t.Fatalf("insert %d: last insert id %d", i, id)
		}
	}
	rows, err := db.QueryContext(ctx, "SELECT typeof(v), v FROM vals ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var typ string
		var v any
		if err := rows.Scan(&typ, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%v", typ, v))
	}
	rows.Close()
	if s := strings.Join(got, " "); s != "integer:9223372036854775807 integer:-9223372036854775808 real:1.5 text:héllo 🌍 blob:[0 1 255] null:<nil>" {
		t.Fatalf("values: %s", s)
	}
	if k, _ := exec("CREATE TABLE later (x)").RowsAffected(); k != 0 {
		t.Fatalf("CREATE TABLE after inserts: %d rows affected", k)
	}
}
