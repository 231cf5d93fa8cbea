package interop

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// Our Go client and @tursodatabase/sync 0.7.2 insert offline into one
// table with ids SQLite assigns: the JS row is pushed first, the Go
// client's collides with it, moves to a new id, and both clients end up
// with both rows.
func TestGoAndJSInsertInsert(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientDir := t.TempDir()
	ctx := context.Background()
	goDB, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(clientDir, "go.db"), URL: srv.URL, ClientName: "go"})
	if err != nil {
		t.Fatal(err)
	}
	defer goDB.Close()
	if _, err := goDB.Exec(ctx, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatal(err)
	}
	if err := goDB.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := goDB.Exec(ctx, "INSERT INTO notes(body) VALUES('from go')"); err != nil { // id 1, offline
		t.Fatal(err)
	}
	jsPeer(t, srv, clientDir, "notes-insert") // id 1 too, pushed first
	if err := goDB.Sync(ctx); err != nil {
		t.Fatalf("go sync: %v", err)
	}
	got := fmt.Sprint(jsPeer(t, srv, clientDir, "notes-dump")["rows"])
	if got != "[1|from js 2|from go]" {
		t.Errorf("JS has %s", got)
	}
	var n int
	if err := goDB.QueryRow(ctx, "SELECT count(*) FROM notes WHERE (id, body) IN (VALUES (1, 'from js'), (2, 'from go'))").Scan(&n); err != nil || n != 2 {
		t.Errorf("Go has %d of the two rows: %v", n, err)
	}
	hist, err := goDB.ConflictHistory(ctx)
	if err != nil || len(hist) != 1 || hist[0].Resolved != "rekeyed" {
		t.Errorf("Go's conflict history: %+v %v", hist, err)
	}
}

// @tursodatabase/sync adds a column and fills it in a row the Go client,
// which has not pulled the column, deletes: the delete is a delete-updated
// conflict, and the JS client's value stays on the server.
func TestGoDeleteMeetsJSAddedColumn(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientDir := t.TempDir()
	ctx := context.Background()
	goDB, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(clientDir, "go.db"), URL: srv.URL, ClientName: "go"})
	if err != nil {
		t.Fatal(err)
	}
	defer goDB.Close()
	if _, err := goDB.Exec(ctx, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES(1, 'one'), (2, 'two')"); err != nil {
		t.Fatal(err)
	}
	if err := goDB.Push(ctx); err != nil {
		t.Fatal(err)
	}
	jsPeer(t, srv, clientDir, "notes-add-column")
	if _, err := goDB.Exec(ctx, "DELETE FROM notes WHERE id IN (1, 2)"); err != nil {
		t.Fatal(err)
	}
	if err := goDB.Push(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("go push: %v, want ErrConflict", err)
	}
	cs, err := goDB.Conflicts(ctx)
	if err != nil || len(cs) != 1 || cs[0].Kind != "delete-updated" || fmt.Sprint(cs[0].Key) != "[1]" || cs[0].Remote["note"] != "from js" {
		t.Fatalf("conflicts: %+v %v", cs, err)
	}
	if got := fmt.Sprint(jsPeer(t, srv, clientDir, "notes-note-dump")["rows"]); got != "[1|one|from js]" {
		t.Errorf("JS has %s, want row 1 with its note (row 2, unchanged, deleted)", got)
	}
}
