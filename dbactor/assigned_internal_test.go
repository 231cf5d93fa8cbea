package dbactor

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"testing"
)

// secondPanics is an argument whose Value panics from its second call on:
// assignedKey calls it first (the parameter of an INSERT's column), then
// database/sql inside asUser.
type secondPanics struct{ n *int }

func (v secondPanics) Value() (driver.Value, error) {
	if *v.n++; *v.n > 1 {
		panic("planted")
	}
	return "x", nil
}

// A user's query on the writer that panics inside asUser (recovered above,
// by the Tx function's recovery or the lent writer's do) leaves no
// capture.assigned behind: the next changes captured, syncdb's own
// included, would be judged by the panicked statement's arguments.
func TestQueryPanicClearsAssigned(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Not closed: the panic inside database/sql's QueryContext leaves
	// conn's lock held (Go 1.26), and its Close would wait forever (see
	// dropConn). db.Close waits for no connection in use.
	for _, q := range []string{"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "BEGIN"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	a := &dbActor{conn: conn}
	w := &writeConn{a: a}
	func() {
		defer func() {
			if v := recover(); v != "planted" {
				t.Errorf("recovered %v, want the planted panic", v)
			}
		}()
		w.Query(ctx, "INSERT INTO t(v) VALUES(?) RETURNING id", secondPanics{new(int)})
	}()
	if a.cap.assigned != nil {
		t.Error("after a panic in a query's statement, capture.assigned is still the statement's")
	}
}
