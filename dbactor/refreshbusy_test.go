package dbactor

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestRefreshWriterBusyStatement: a statement left stepped, not reset, on
// the writer when a pull refreshes it (rows open: a syncdb bug) fails the
// pull with errWriterBusy instead of replacing the connection, whose close
// would wait for those rows forever; the cache stays marked stale, and
// once the rows are closed haveWriter empties it. Planted (refreshWriter
// reopening as before, without the busy check): the call does not return
// (see the commit).
func TestRefreshWriterBusyStatement(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE t(v); CREATE TABLE u(v)"); err != nil {
		t.Fatal(err)
	}
	a := &dbActor{conn: conn}
	a.cfg.Path = filepath.Join(t.TempDir(), "y.db")

	rows, err := conn.QueryContext(ctx, "SELECT name FROM main.sqlite_schema")
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	done := make(chan error, 1)
	go func() { done <- a.refreshWriter(ctx) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("refreshWriter with rows open on the writer did not return in 10 s")
	}
	if !errors.Is(err, errWriterBusy) {
		t.Fatalf("refreshWriter with rows open: %v, want errWriterBusy", err)
	}
	if a.conn != conn || !a.staleCache {
		t.Fatalf("after the refusal: conn replaced %v, staleCache %v; want the same conn, stale", a.conn != conn, a.staleCache)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.haveWriter(ctx); err != nil {
		t.Fatalf("haveWriter after the rows closed: %v", err)
	}
	if a.conn != conn || a.staleCache {
		t.Fatalf("after haveWriter: conn replaced %v, staleCache %v; want the same conn, refreshed", a.conn != conn, a.staleCache)
	}
}
