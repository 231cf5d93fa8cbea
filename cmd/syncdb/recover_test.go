package main

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// Case 5 at the command line: touching the file, or reading it read-write
// with another program, is harmless; a write by another program makes
// writes and syncs fail with a message that says
// what changed and what to run, while reads go on; "syncdb recover"
// rebuilds the replica, keeping the unpushed change.
func TestCLIExternalModificationAndRecover(t *testing.T) {
	srv := startServer(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "app.db")
	ok(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES('pushed');", "shell", "--url", srv.url, path)
	ok(t, "", "push", path)
	ok(t, "INSERT INTO t(v) VALUES('unpushed');", "shell", path)

	later := time.Now().Add(time.Hour)
	os.Chtimes(path, later, later)
	contains(t, "stats after touch", ok(t, "", "stats", path).stdout, "unpushed changes: 1")

	// Another program opens it read-write: only reading is harmless (syncdb
	// left the WAL empty when it closed), a write is not.
	other := func(query string) {
		t.Helper()
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(query); err != nil {
			t.Fatal(err)
		}
	}
	other("SELECT count(*) FROM t")
	contains(t, "stats after a read-write read", ok(t, "", "stats", path).stdout, "unpushed changes: 1")
	other("CREATE TABLE foreign_t(x)")

	r := ok(t, "", "shell", path, "SELECT v FROM t ORDER BY id")
	contains(t, "a read", r.stdout, "pushed", "unpushed")
	r = runBin(t, "", nil, "push", path)
	if r.code != 1 {
		t.Fatalf("push after a foreign checkpoint: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	contains(t, "push error", r.stderr, "modified outside syncdb", "WAL", "Local reads still work", "syncdb recover "+path, "1 unpushed change")
	if strings.Contains(r.stderr, "size 4096→4096") || strings.Contains(r.stderr, "bootstrap a fresh replica") {
		t.Errorf("the old message: %s", r.stderr)
	}

	r = ok(t, "", "recover", path)
	contains(t, "recover", r.stdout, "rebuilt "+path+" from the server", "keeping 1 unpushed change", ".before-recover-")
	contains(t, "push after recover", ok(t, "", "push", path).stdout, "pushed 1 change")
	contains(t, "recover again", ok(t, "", "recover", path).stdout, "needed no repair")
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	contains(t, "another replica", ok(t, "", "shell", "--url", srv.url, fresh, "SELECT v FROM t ORDER BY id").stdout, "pushed", "unpushed")
}

// Case 7 at the command line: a wrong --url on an existing replica fails,
// says which database the replica belongs to, and is not saved.
func TestCLIWrongURL(t *testing.T) {
	srv := startServer(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "app.db")
	ok(t, "CREATE TABLE t(id INTEGER PRIMARY KEY);", "shell", "--url", srv.url+"/db/one", path)
	ok(t, "", "push", path)
	r := runBin(t, "", nil, "pull", "--url", srv.url+"/db/two", path)
	if r.code != 1 {
		t.Fatalf("pull with a wrong URL: exit %d", r.code)
	}
	contains(t, "wrong URL", r.stderr, "serves another database", srv.url+"/db/one", "nothing was saved")
	if strings.Contains(r.stderr, "bootstrap a fresh replica") {
		t.Errorf("advice that loses changes: %s", r.stderr)
	}
	contains(t, "stats", ok(t, "", "stats", path).stdout, srv.url+"/db/one")
}

// Case 9 at the command line: a relative PATH works (the commands run in
// the directory that holds it).
func TestCLIRelativePath(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("syncdb %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("shell", "--url", srv.url, "rel.db", "CREATE TABLE t(id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES(1)")
	contains(t, "push", run("push", "rel.db"), "pushed 2 changes")
	contains(t, "stats", run("stats", "rel.db"), "database:         rel.db")
	if _, err := os.Stat(filepath.Join(dir, "rel.db-info")); err != nil {
		t.Fatal(err)
	}
}

// Case 6 at the command line: the shell refuses DROP TABLE _syncdb_changes
// (it was accepted, and the next write was lost); the next write travels.
func TestCLIInternalTablesRefused(t *testing.T) {
	srv := startServer(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "app.db")
	ok(t, "CREATE TABLE t(id INTEGER PRIMARY KEY);", "shell", "--url", srv.url, path)
	r := runBin(t, "", nil, "shell", path, "DROP TABLE _syncdb_changes")
	if r.code == 0 {
		t.Fatalf("DROP TABLE _syncdb_changes: exit 0\n%s", r.stdout)
	}
	contains(t, "refusal", r.stderr, "_syncdb_changes")
	ok(t, "INSERT INTO t VALUES(1);", "shell", path)
	contains(t, "push", ok(t, "", "push", path).stdout, "pushed 2 changes")
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	contains(t, "fresh", ok(t, "", "shell", "--url", srv.url, fresh, "SELECT count(*) FROM t").stdout, "1")
}
