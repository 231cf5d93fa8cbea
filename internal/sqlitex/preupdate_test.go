package sqlitex

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"modernc.org/sqlite"
)

// PreUpdate keeps what modernc's Old/New lose: empty blobs and NUL bytes.
func TestPreUpdateExact(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got [][]any
	var herr error
	Raw(ctx, conn, func(c *Conn) error {
		c.Driver().(interface{ RegisterPreUpdateHook(sqlite.PreUpdateHookFn) }).RegisterPreUpdateHook(func(d sqlite.SQLitePreUpdateData) {
			newRow := d.Op != 9 // SQLITE_DELETE
			vals, err := PreUpdate(&d, newRow)
			if err != nil {
				herr = err
			}
			got = append(got, vals)
		})
		return nil
	})
	if _, err := conn.ExecContext(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB, s TEXT, f REAL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES(7, ?, ?, 1.5), (8, NULL, '', NULL)", []byte{}, "a\x00b"); err != nil {
		t.Fatal(err)
	}
	if herr != nil {
		t.Fatal(herr)
	}
	if len(got) != 2 {
		t.Fatalf("hook calls: %d", len(got))
	}
	r := got[0]
	if r[0] != int64(7) || r[1] == nil || len(r[1].([]byte)) != 0 || r[2] != "a\x00b" || r[3] != 1.5 {
		t.Fatalf("row 1: %#v", r)
	}
	if r := got[1]; r[1] != nil || r[2] != "" || r[3] != nil {
		t.Fatalf("row 2: %#v", r)
	}
}
