package syncdb_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// goTools is what Go tools ask of a database handle (sqlc's DBTX, sqlx,
// goose).
type goTools interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
	Conn(context.Context) (*sql.Conn, error)
}

// A compile-time check that DB.SQL provides it.
var _ = func(db *syncdb.DB) goTools { return db.SQL() }

// Everything through SQL() is captured and pushed like DB.Exec's writes:
// plain statements, prepared ones, named parameters, RETURNING through
// QueryRowContext, transactions committed and rolled back, and a Conn.
func TestSQLWritesSync(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	db := a.SQL()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	res, err := db.ExecContext(ctx, "INSERT INTO t(v) VALUES(?), (?)", "one", "two")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("rows affected %d", n)
	}
	if id, _ := res.LastInsertId(); id != 2 {
		t.Fatalf("last insert id %d", id)
	}
	st, err := db.PrepareContext(ctx, "INSERT INTO t(id, v) VALUES(:id, :v)")
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 13; i++ {
		if _, err := st.ExecContext(ctx, sql.Named("id", i), sql.Named("v", "named")); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	var id int64
	if err := db.QueryRowContext(ctx, "INSERT INTO t(v) VALUES('ret') RETURNING id").Scan(&id); err != nil || id != 13 {
		t.Fatalf("RETURNING: %d %v", id, err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t SET v = 'tx' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := tx.QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "tx" {
		t.Fatalf("read in tx: %q %v", v, err)
	}
	// Reads outside the transaction do not see it yet.
	if err := db.QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "one" {
		t.Fatalf("read outside tx: %q %v", v, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM t"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES(20, 'conn')"); err != nil {
		t.Fatal(err)
	}
	c.Close()

	want := "1|tx\n2|two\n10|named\n11|named\n12|named\n13|ret\n20|conn"
	if got := rows(t, a, "SELECT * FROM t ORDER BY id"); got != want {
		t.Fatalf("a: %q", got)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	if got := rows(t, b, "SELECT * FROM t ORDER BY id"); got != want {
		t.Fatalf("b: %q", got)
	}
	if st, err := a.Stats(ctx); err != nil || st.CDCOperations != 0 {
		t.Fatalf("after push: %+v %v", st, err)
	}
}

// SQL() refuses what DB.Exec refuses, with the same sentinel errors, in and
// out of transactions and through queries.
func TestSQLRefusals(t *testing.T) {
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	db := a.SQL()
	if _, err := db.ExecContext(ctx, "CREATE TABLE nopk(v TEXT); CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var tx *sql.Tx // opened after the checks outside transactions
	for _, tc := range []struct {
		name string
		run  func(q string) error
	}{
		{"Exec", func(q string) error { _, err := db.ExecContext(ctx, q); return err }},
		{"Query", func(q string) error {
			rs, err := db.QueryContext(ctx, q)
			if err == nil {
				rs.Close()
			}
			return err
		}},
		{"Tx.Exec", func(q string) error { _, err := tx.ExecContext(ctx, q); return err }},
		{"Tx.Query", func(q string) error {
			rs, err := tx.QueryContext(ctx, q)
			if err == nil {
				rs.Close()
			}
			return err
		}},
	} {
		if tc.name == "Tx.Exec" {
			var err error
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
		}
		for q, want := range map[string]error{
			"BEGIN":                           syncdb.ErrUnsupportedStatement,
			"COMMIT":                          syncdb.ErrUnsupportedStatement,
			"VACUUM":                          syncdb.ErrUnsupportedStatement,
			"PRAGMA journal_mode = DELETE":    syncdb.ErrUnsupportedStatement,
			"PRAGMA wal_checkpoint(FULL)":     syncdb.ErrUnsupportedStatement,
			"ATTACH ':memory:' AS x":          syncdb.ErrUnsupportedStatement,
			"SELECT 1; PRAGMA wal_checkpoint": syncdb.ErrUnsupportedStatement,
			"DELETE FROM _syncdb_changes RETURNING change_id": syncdb.ErrUnsupportedStatement,
			"INSERT INTO nopk VALUES('x')":                    syncdb.ErrNoPrimaryKey,
		} {
			if strings.HasPrefix(tc.name, "Tx.") && (want == syncdb.ErrNoPrimaryKey || strings.Contains(q, "_syncdb_")) {
				continue // these end the transaction: tested below
			}
			if err := tc.run(q); !errors.Is(err, want) {
				t.Errorf("%s(%q) = %v, want %v", tc.name, q, err, want)
			}
		}
	}
	// Tx.Query with a capture error poisons the transaction: it cannot commit.
	rs, err := tx.QueryContext(ctx, "INSERT INTO nopk VALUES('y') RETURNING v")
	if err == nil {
		rs.Close()
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES(1)"); !errors.Is(err, syncdb.ErrNoPrimaryKey) {
		t.Fatalf("after a capture error: %v", err)
	}
	if err := tx.Commit(); !errors.Is(err, syncdb.ErrNoPrimaryKey) {
		t.Fatalf("commit after a capture error: %v", err)
	}
	if got := rows(t, a, "SELECT count(*) FROM t"); got != "0" {
		t.Fatalf("t: %s", got)
	}
	if _, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted}); err == nil {
		t.Fatal("read committed accepted")
	}
}

// A read-only transaction reads one snapshot on the read pool, while writes
// go on.
func TestSQLReadOnlyTx(t *testing.T) {
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	db := a.SQL()
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	mustExec(t, a, "INSERT INTO t VALUES(1)")
	rtx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	count := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		var n int
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(rtx); n != 1 {
		t.Fatalf("snapshot: %d", n)
	}
	// A write transaction runs while the read transaction is open.
	wtx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wtx.ExecContext(ctx, "INSERT INTO t VALUES(2)"); err != nil {
		t.Fatal(err)
	}
	if err := wtx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(rtx); n != 1 {
		t.Fatalf("snapshot after a write: %d", n)
	}
	if n := count(db); n != 2 {
		t.Fatalf("outside: %d", n)
	}
	if _, err := rtx.ExecContext(ctx, "INSERT INTO t VALUES(3)"); err == nil {
		t.Fatal("a write in a read-only transaction succeeded")
	}
	if err := rtx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// A write transaction whose context ends rolls back and frees the writer;
// Close rolls back a transaction left open instead of hanging.
func TestSQLTxContextAndClose(t *testing.T) {
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	db := a.SQL()
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	tctx, cancel := context.WithCancel(ctx)
	tx, err := db.BeginTx(tctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES(1)"); err != nil {
		t.Fatal(err)
	}
	cancel()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := a.Exec(wctx, "INSERT INTO t VALUES(2)"); err != nil {
		t.Fatalf("write after the cancelled transaction: %v", err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("commit after cancel succeeded")
	}
	if got := rows(t, a, "SELECT id FROM t"); got != "2" {
		t.Fatalf("t: %q", got)
	}

	b, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	open, err := b.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.ExecContext(ctx, "INSERT INTO t VALUES(1)"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close hangs with a transaction open")
	}
	if _, err := open.ExecContext(ctx, "INSERT INTO t VALUES(2)"); err == nil {
		t.Fatal("a statement after Close succeeded")
	}
	if _, err := b.SQL().ExecContext(ctx, "SELECT 1"); err == nil {
		t.Fatal("SQL() after Close works")
	}
}

// Calling the DB from inside DB.Tx's function fails at once (it used to
// wait for the writer its own transaction holds, until ctx expired).
func TestTxReentrant(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	calls := map[string]func() error{
		"Exec":  func() error { _, err := a.Exec(ctx, "INSERT INTO t VALUES(9)"); return err },
		"Query": func() error { _, err := a.Query(ctx, "SELECT 1"); return err },
		"QueryRow": func() error {
			var n int
			return a.QueryRow(ctx, "SELECT 1").Scan(&n)
		},
		"Tx":         func() error { return a.Tx(ctx, func(*syncdb.Tx) error { return nil }) },
		"Checkpoint": func() error { return a.Checkpoint(ctx) },
		"Stats":      func() error { _, err := a.Stats(ctx); return err },
		"Push":       func() error { return a.Push(ctx) },
		"SQL.Exec":   func() error { _, err := a.SQL().ExecContext(ctx, "INSERT INTO t VALUES(9)"); return err },
	}
	for name, call := range calls {
		err := a.Tx(ctx, func(tx *syncdb.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(1)"); err != nil {
				return err
			}
			return call()
		})
		if !errors.Is(err, syncdb.ErrInTx) {
			t.Errorf("%s inside Tx: %v, want ErrInTx", name, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("%s inside Tx waited for the deadline", name)
		}
	}
	// Other goroutines wait for the transaction as before.
	done := make(chan error, 1)
	err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		go func() { _, err := a.Exec(ctx, "INSERT INTO t VALUES(2)"); done <- err }()
		_, err := tx.Exec(ctx, "INSERT INTO t VALUES(1)")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT id FROM t ORDER BY id"); got != "1\n2" {
		t.Fatalf("t: %q", got)
	}
	// A panic in the function rolls back and goes on.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		a.Tx(ctx, func(tx *syncdb.Tx) error {
			tx.Exec(ctx, "INSERT INTO t VALUES(3)")
			panic("boom")
		})
	}()
	if got := rows(t, a, "SELECT id FROM t ORDER BY id"); got != "1\n2" {
		t.Fatalf("after panic: %q", got)
	}
}

// sql.Open("syncdb", dsn) opens the replica the DSN names.
func TestSQLOpenDSN(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'from a')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("syncdb", "file:"+filepath.Join(dir, "b.db")+"?url="+url+"&client_name=dsn")
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "from a" {
		t.Fatalf("b: %q %v", v, err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES(2, 'from b')"); err != nil {
		t.Fatal(err)
	}
	// Closing the *sql.DB closed the replica: it opens again, and the
	// change is captured for its next push.
	closeAndPush(t, db, filepath.Join(dir, "b.db"), a)
	if got := rows(t, a, "SELECT * FROM t ORDER BY id"); got != "1|from a\n2|from b" {
		t.Fatalf("a: %q", got)
	}
	for _, bad := range []string{"", "x.db?nope=1", "x.db?long_poll=soon", "x.db?read_conns=many", "x.db?live=maybe"} {
		if _, err := syncdb.ParseDSN(bad); err == nil {
			t.Errorf("ParseDSN(%q) accepted", bad)
		}
	}
	cfg, err := syncdb.ParseDSN("file:my%20app.db?url=http%3A%2F%2Fh%3A1%2Fdb%2Fx&auth_token=T&long_poll=30s&read_conns=3&sync_normal=true&ignore_tables=a,b&push_delay=5ms")
	if err != nil || cfg.Path != "my app.db" || cfg.URL != "http://h:1/db/x" || cfg.AuthToken != "T" || cfg.LongPollTimeout != 30*time.Second ||
		cfg.ReadConns != 3 || !cfg.SyncNormal || len(cfg.IgnoreTables) != 2 || cfg.Live == nil || cfg.Live.PushDelay != 5*time.Millisecond {
		t.Fatalf("ParseDSN: %+v %v", cfg, err)
	}
}

// The read pool refuses what the writer refuses: a checkpoint or a BEGIN
// on a pooled reader would break the synced base or outlive the read.
func TestQueryRefusals(t *testing.T) {
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	mustExec(t, a, "INSERT INTO t VALUES(1)")
	for _, q := range []string{"PRAGMA wal_checkpoint(TRUNCATE)", "BEGIN", "SELECT 1; PRAGMA wal_checkpoint(TRUNCATE)", "ATTACH ':memory:' AS m",
		"/* a comment */ PRAGMA wal_checkpoint(TRUNCATE)", "-- a comment\nBEGIN"} {
		if _, err := a.Query(ctx, q); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
			t.Errorf("Query(%q): %v", q, err)
		}
		var n int
		if err := a.QueryRow(ctx, q).Scan(&n); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
			t.Errorf("QueryRow(%q): %v", q, err)
		}
	}
	if st, err := a.Stats(ctx); err != nil || st.MainWALSize == 0 {
		t.Fatalf("the WAL was checkpointed by a reader: %+v %v", st, err)
	}
}

// closeAndPush closes a *sql.DB that sql.Open("syncdb", ...) opened on the
// replica at path (closing the replica), opens the replica, pushes its
// changes and has to pull them.
func closeAndPush(t *testing.T, db *sql.DB, path string, to *syncdb.DB) {
	t.Helper()
	ctx := context.Background()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: path})
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := to.Pull(ctx); err != nil {
		t.Fatal(err)
	}
}
