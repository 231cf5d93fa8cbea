package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Cases 1 and 3 at the command line: a push that meets another replica's
// row with the same key, or its UNIQUE value, prints what happened and
// what waits, exits 1 while something waits, never shows generated SQL,
// and "syncdb conflicts" lists and resolves; nothing goes to a side file.
func TestCLIConflicts(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	ok(t, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE);", "shell", "--url", srv.url, a)
	ok(t, "", "push", a)
	ok(t, "", "pull", "--url", srv.url, b)
	ok(t, "INSERT INTO notes(body) VALUES('from a'); INSERT INTO users(email) VALUES('x@example.com');", "shell", a)
	ok(t, "INSERT INTO notes(body) VALUES('from b'); INSERT INTO users(id, email) VALUES(7, 'x@example.com');", "shell", b)
	ok(t, "", "push", a)

	r := runIn(t, "", "push", b)
	if r.code != 1 {
		t.Fatalf("push with a conflict: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	contains(t, "push stdout", r.stdout, "insert-insert on notes [1]", "moved to [2]", "constraint on users [7]", "waits",
		"local:  email='x@example.com', id=7", "1 conflict waits: see 'syncdb conflicts "+b+"'")
	contains(t, "push stderr", r.stderr, "syncdb push: local changes wait for a conflict to be resolved: constraint on users [7]")
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, "INSERT INTO") || strings.Contains(out, "ON CONFLICT") || strings.Contains(out, "DB.Conflicts") {
			t.Errorf("the output shows generated SQL or the Go API:\n%s", out)
		}
	}
	// Every later command says so too, until it is resolved.
	r = runIn(t, "", "pull", b)
	if r.code != 1 || !strings.Contains(r.stdout, "constraint on users [7]") {
		t.Fatalf("pull: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = ok(t, "", "stats", b)
	contains(t, "stats", r.stdout, "conflicts:        1 waiting")
	r = ok(t, "", "conflicts", b)
	contains(t, "conflicts", r.stdout, "conflict 2, constraint on users [7]", "UNIQUE constraint failed: users.email", "resolve with: syncdb conflicts")
	r = ok(t, "", "conflicts", "--all", "--json", b)
	contains(t, "conflicts --json", r.stdout, `"kind":"insert-insert"`, `"resolved":"rekeyed"`, `"kind":"constraint"`)

	ok(t, "", "conflicts", b, "resolve", "2", "local")
	r = ok(t, "", "sync", b)
	if strings.Contains(r.stdout, "waits") {
		t.Errorf("sync after resolving: %s", r.stdout)
	}
	ok(t, "", "pull", a)
	r = ok(t, "SELECT id, email FROM users; SELECT id, body FROM notes;", "shell", a)
	contains(t, "a", r.stdout, "7 | x@example.com", "1 | from a", "2 | from b")
	if strings.Contains(r.stdout, " 1 | x@example.com") {
		t.Errorf("the row that gave way is still there: %s", r.stdout)
	}
	if _, err := os.Stat(b + "-conflicts"); err == nil {
		t.Error("a -conflicts file was written")
	}
	if r := runIn(t, "", "conflicts", b, "resolve", "x", "local"); r.code != 2 {
		t.Errorf("bad ID: exit %d", r.code)
	}
}

// Case 2 at the command line: a replica copied with cp -a pushes under a
// client id of its own; each push counts what the server took, and every
// row, inherited or new, reaches the server once.
func TestCLICopiedReplica(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	orig := filepath.Join(dir, "app.db")
	ok(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES('pushed');", "shell", "--url", srv.url, orig)
	ok(t, "", "push", orig)
	ok(t, "INSERT INTO t(v) VALUES('inherited');", "shell", orig)
	if err := os.Mkdir(filepath.Join(dir, "elsewhere"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(orig + "*")
	args := append([]string{"-a"}, files...)
	if out, err := exec.Command("cp", append(args, filepath.Join(dir, "elsewhere"))...).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	cp := filepath.Join(dir, "elsewhere", "app.db")
	ok(t, "INSERT INTO t(id, v) VALUES(10, 'copy');", "shell", cp)
	ok(t, "INSERT INTO t(id, v) VALUES(20, 'original');", "shell", orig)
	contains(t, "copy push", ok(t, "", "push", cp).stdout, "pushed 2 changes")
	contains(t, "original push", ok(t, "", "push", orig).stdout, "pushed 1 change")
	ok(t, "", "pull", orig)
	ok(t, "", "pull", cp)
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	want := "1 | pushed\n2 | inherited\n10 | copy\n20 | original"
	for _, p := range []string{fresh, orig, cp} {
		r := ok(t, "", "shell", "--url", srv.url, p, "SELECT id, v FROM t ORDER BY id")
		for _, line := range strings.Split(want, "\n") {
			contains(t, p, r.stdout, line)
		}
		if n := strings.Count(r.stdout, "inherited"); n != 1 {
			t.Errorf("%s: 'inherited' %d times:\n%s", p, n, r.stdout)
		}
	}
}
