package syncdb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// pair is two replicas of one fresh remote database with a schema.
func pair(t *testing.T, schema string, opts ...func(*syncdb.Config)) (a, b *syncdb.DB, dir string) {
	t.Helper()
	url := newServer(t)
	dir = t.TempDir()
	cfg := func(name string) syncdb.Config {
		c := syncdb.Config{Path: filepath.Join(dir, name+".db"), URL: url, ClientName: name}
		for _, o := range opts {
			o(&c)
		}
		return c
	}
	a = open(t, cfg("a"))
	mustExec(t, a, schema)
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	b = open(t, cfg("b"))
	return a, b, dir
}

func conflicts(t *testing.T, db *syncdb.DB) []syncdb.Conflict {
	t.Helper()
	cs, err := db.Conflicts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func syncAll(t *testing.T, dbs ...*syncdb.DB) {
	t.Helper()
	for _, db := range dbs {
		if err := db.Sync(context.Background()); err != nil && !errors.Is(err, syncdb.ErrConflict) {
			t.Fatal(err)
		}
	}
}

// Case 1: two replicas insert offline into the README's table, ids
// assigned by SQLite. Both rows survive on every replica (the later one is
// re-keyed, its foreign keys follow), and the re-key is on record.
func TestInsertInsertAssignedKeysKeepsBothRows(t *testing.T) {
	ctx := context.Background()
	a, b, dir := pair(t, `CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
		CREATE TABLE tags(id INTEGER PRIMARY KEY, note_id INTEGER REFERENCES notes(id), tag TEXT)`)
	mustExec(t, a, "INSERT INTO notes(body) VALUES('from a')")
	err := b.Tx(ctx, func(tx *syncdb.Tx) error {
		res, err := tx.Exec(ctx, "INSERT INTO notes(body) VALUES('from b')")
		if err != nil {
			return err
		}
		id, _ := res.LastInsertId()
		_, err = tx.Exec(ctx, "INSERT INTO tags(note_id, tag) VALUES(?, 'b-tag')", id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, b, "UPDATE notes SET body = 'from b, edited' WHERE id = 1")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil { // detected at push: B pulls, re-keys, pushes
		t.Fatalf("b sync: %v", err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	want := "1|from a\n2|from b, edited"
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, body FROM notes ORDER BY id"); got != want {
			t.Errorf("%s notes: %q, want %q", name, got, want)
		}
		if got := rows(t, db, "SELECT n.body, t.tag FROM tags t JOIN notes n ON n.id = t.note_id"); got != "from b, edited|b-tag" {
			t.Errorf("%s: the tag does not follow its note: %q", name, got)
		}
	}
	if cs := conflicts(t, b); len(cs) != 0 {
		t.Errorf("unresolved conflicts after a re-key: %+v", cs)
	}
	hist, err := b.ConflictHistory(ctx)
	if err != nil || len(hist) != 1 {
		t.Fatalf("conflict history: %+v %v", hist, err)
	}
	c := hist[0]
	if c.Kind != "insert-insert" || c.Table != "notes" || c.Resolved != "rekeyed" || fmt.Sprint(c.Key) != "[1]" || fmt.Sprint(c.NewKey) != "[2]" ||
		c.Local["body"] != "from b" || c.Remote["body"] != "from a" {
		t.Errorf("conflict record: %+v", c)
	}
	st, err := b.Stats(ctx)
	if err != nil || st.Conflicts != 0 {
		t.Errorf("stats: %d conflicts %v", st.Conflicts, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.db-conflicts")); err == nil {
		t.Error("a -conflicts file was written")
	}
}

// The same collision found by a pull (B pulls before it pushes).
func TestInsertInsertFoundAtPull(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
	mustExec(t, a, "INSERT INTO notes(body) VALUES('from a')")
	mustExec(t, b, "INSERT INTO notes(body) VALUES('from b')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, "SELECT id, body FROM notes ORDER BY id"); got != "1|from a\n2|from b" {
		t.Fatalf("b after pull: %q", got)
	}
	syncAll(t, b, a)
	if got := rows(t, a, "SELECT id, body FROM notes ORDER BY id"); got != "1|from a\n2|from b" {
		t.Fatalf("a: %q", got)
	}
}

// An explicit key is the user's: a collision is refused with ErrConflict
// until resolved; resolving keeps the chosen side everywhere.
func TestInsertInsertExplicitKeyRefused(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO kv VALUES(5, 'a')")
	mustExec(t, b, "INSERT INTO kv VALUES(?, 'b')", 5)
	mustExec(t, b, "UPDATE kv SET v = 'b2' WHERE k = 5") // depends on b's row
	mustExec(t, b, "INSERT INTO kv VALUES(6, 'b6')")     // does not
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	err := b.Sync(ctx)
	if !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b sync: %v, want ErrConflict", err)
	}
	noPrefix(t, "sync", err)
	if !strings.Contains(err.Error(), "kv") {
		t.Errorf("the error does not say where: %v", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].Kind != "insert-insert" || fmt.Sprint(cs[0].Key) != "[5]" || cs[0].Local["v"] != "b2" || cs[0].Remote["v"] != "a" || cs[0].Resolved != "" {
		t.Fatalf("conflicts: %+v", cs)
	}
	if st, _ := b.Stats(ctx); st.Conflicts != 1 {
		t.Errorf("stats: %d conflicts", st.Conflicts)
	}
	// The rest went through; the remote row shows until resolved.
	if got := rows(t, b, "SELECT k, v FROM kv ORDER BY k"); got != "5|a\n6|b6" {
		t.Fatalf("b: %q", got)
	}
	// Every sync reports it until it is resolved.
	if err := b.Sync(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("second sync: %v", err)
	}
	if err := b.ResolveConflict(ctx, cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	if err := b.ResolveConflict(ctx, cs[0].ID, "remote"); err == nil {
		t.Error("resolving a conflict twice, differently, succeeded")
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT k, v FROM kv ORDER BY k"); got != "5|b2\n6|b6" {
			t.Errorf("%s after resolving local: %q", name, got)
		}
	}
	if cs := conflicts(t, b); len(cs) != 0 {
		t.Errorf("still unresolved: %+v", cs)
	}
}

// Config.OnConflict decides instead of the default policy.
func TestOnConflict(t *testing.T) {
	ctx := context.Background()
	var seen []syncdb.Conflict
	a, b, _ := pair(t, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)", func(c *syncdb.Config) {
		c.OnConflict = func(ctx context.Context, c syncdb.Conflict) (string, error) {
			seen = append(seen, c)
			if c.Local["body"] == "keep mine" {
				return "local", nil
			}
			return "remote", nil
		}
	})
	mustExec(t, a, "INSERT INTO notes(body) VALUES('a1'), ('a2')")
	mustExec(t, b, "INSERT INTO notes(body) VALUES('drop mine'), ('keep mine')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	syncAll(t, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, body FROM notes ORDER BY id"); got != "1|a1\n2|keep mine" {
			t.Errorf("%s: %q", name, got)
		}
	}
	if len(seen) != 2 || seen[0].Kind != "insert-insert" || seen[0].Remote["body"] != "a1" {
		t.Errorf("OnConflict saw %+v", seen)
	}
	hist, _ := b.ConflictHistory(ctx)
	if len(hist) != 2 || hist[0].Resolved != "remote" || hist[1].Resolved != "local" {
		t.Errorf("history: %+v", hist)
	}
}

// Case 3: a local change the rebase cannot replay (two replicas insert the
// same UNIQUE email) is kept as a conflict, refused until resolved, with a
// clear message; nothing goes to a side file.
func TestConstraintConflict(t *testing.T) {
	ctx := context.Background()
	a, b, dir := pair(t, "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT)")
	mustExec(t, a, "INSERT INTO users(email, name) VALUES('x@example.com', 'Ann')")
	mustExec(t, b, "INSERT INTO users(email, name) VALUES('x@example.com', 'Bob')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	err := b.Push(ctx)
	if !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b push: %v, want ErrConflict", err)
	}
	if strings.Contains(err.Error(), "INSERT INTO") || strings.Contains(err.Error(), "ON CONFLICT") {
		t.Errorf("the error shows generated SQL: %v", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].Kind != "constraint" || cs[0].Table != "users" || cs[0].Local["name"] != "Bob" || cs[0].Remote["name"] != "Ann" ||
		!strings.Contains(cs[0].Error, "UNIQUE") {
		t.Fatalf("conflicts: %+v", cs)
	}
	if _, err := b.Pull(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("pull with a pending conflict: %v", err)
	}
	if got := rows(t, b, "SELECT id, email, name FROM users ORDER BY id"); got != "1|x@example.com|Ann" {
		t.Fatalf("b: %q", got)
	}
	// Keeping the local row replaces the one that holds the email.
	if err := b.ResolveConflict(ctx, cs[0].ID, "local"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT email, name FROM users ORDER BY id"); got != "x@example.com|Bob" {
			t.Errorf("%s: %q", name, got)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b.db-conflicts")); err == nil {
		t.Error("a -conflicts file was written")
	}
}

// Case 4: an offline UPDATE of a row deleted elsewhere does not silently
// bring it back, and a DELETE of a row changed elsewhere does not silently
// drop the other change: both are conflicts, refused until resolved.
func TestUpdateDeletedAndDeleteUpdated(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, w TEXT);
		INSERT INTO t VALUES(1, 'one', 'x'), (2, 'two', 'x')`)
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "DELETE FROM t WHERE id = 1")
	mustExec(t, a, "UPDATE t SET w = 'a' WHERE id = 2")
	mustExec(t, b, "UPDATE t SET v = 'b' WHERE id = 1")
	mustExec(t, b, "DELETE FROM t WHERE id = 2")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("b sync: %v", err)
	}
	cs := conflicts(t, b)
	if len(cs) != 2 {
		t.Fatalf("conflicts: %+v", cs)
	}
	kinds := map[string]syncdb.Conflict{}
	for _, c := range cs {
		kinds[c.Kind] = c
	}
	ud, du := kinds["update-deleted"], kinds["delete-updated"]
	if fmt.Sprint(ud.Key) != "[1]" || ud.Local["v"] != "b" || ud.Remote != nil {
		t.Errorf("update-deleted: %+v", ud)
	}
	if fmt.Sprint(du.Key) != "[2]" || du.Local != nil || du.Remote["w"] != "a" {
		t.Errorf("delete-updated: %+v", du)
	}
	if got := rows(t, b, "SELECT id, v, w FROM t ORDER BY id"); got != "2|two|a" {
		t.Fatalf("b while refused: %q", got)
	}
	if err := b.ResolveConflict(ctx, ud.ID, "local"); err != nil { // bring row 1 back, with b's update
		t.Fatal(err)
	}
	if err := b.ResolveConflict(ctx, du.ID, "remote"); err != nil { // keep row 2 with a's update
		t.Fatal(err)
	}
	syncAll(t, b, a)
	for name, db := range map[string]*syncdb.DB{"a": a, "b": b} {
		if got := rows(t, db, "SELECT id, v, w FROM t ORDER BY id"); got != "1|b|x\n2|two|a" {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// Conflicts survive pulls and reopening, keep their ids, and a resolution
// made offline is pushed later.
func TestConflictsAreDurable(t *testing.T) {
	ctx := context.Background()
	a, b, dir := pair(t, "CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO kv VALUES('k', 'a')")
	mustExec(t, b, "INSERT INTO kv VALUES('k', 'b')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); !errors.Is(err, syncdb.ErrConflict) {
		t.Fatalf("pull: %v", err)
	}
	id := conflicts(t, b)[0].ID
	mustExec(t, a, "INSERT INTO kv VALUES('other', 'a')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); !errors.Is(err, syncdb.ErrConflict) { // a second pull carries it over
		t.Fatalf("pull: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(t, syncdb.Config{Path: filepath.Join(dir, "b.db")})
	cs := conflicts(t, b)
	if len(cs) != 1 || cs[0].ID != id || fmt.Sprint(cs[0].Key) != "[k]" {
		t.Fatalf("after reopening: %+v", cs)
	}
	if err := b.ResolveConflict(ctx, id, "local"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, a)
	if got := rows(t, a, "SELECT k, v FROM kv ORDER BY k"); got != "k|b\nother|a" {
		t.Fatalf("a: %q", got)
	}
}

// The push's checks compare rows exactly, whatever they hold: no false
// conflict for empty text and blobs, NULLs, floats, large integers, or
// text that is not valid UTF-8.
func TestNoFalseConflicts(t *testing.T) {
	ctx := context.Background()
	a, b, _ := pair(t, "CREATE TABLE v(id INTEGER PRIMARY KEY, t TEXT, bl BLOB, r REAL, i INTEGER, n)")
	vals := []string{"'', x'', 0.1, 9007199254740993, NULL", "'a', zeroblob(3), -0.0, -9223372036854775808, 1.5",
		"CAST(x'00ff41c3' AS TEXT), randomblob(100), 1e308, 0, 'x'"}
	for i, v := range vals {
		mustExec(t, a, fmt.Sprintf("INSERT INTO v VALUES(%d, %s)", i+1, v))
	}
	syncAll(t, a, b)
	mustExec(t, b, "UPDATE v SET n = 'upd' WHERE id = 1")
	mustExec(t, b, "DELETE FROM v WHERE id IN (2, 3)")
	mustExec(t, b, "INSERT INTO v VALUES(4, '', x'', 0.0, 0, NULL)")
	if err := b.Push(ctx); err != nil {
		t.Fatalf("push: %v", err)
	}
	if hist, _ := b.ConflictHistory(ctx); len(hist) != 0 {
		t.Fatalf("false conflicts: %+v", hist)
	}
	syncAll(t, a)
	if got := rows(t, a, "SELECT id, n FROM v ORDER BY id"); got != "1|upd\n4|<nil>" {
		t.Fatalf("a: %q", got)
	}
}
