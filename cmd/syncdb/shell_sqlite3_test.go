package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// sqlite3Run runs the sqlite3 command with args and stdin.
func sqlite3Run(t *testing.T, bin, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// The shell on a synced replica prints what sqlite3 prints on a plain
// database with the same rows: every output mode chosen by a flag, by
// .mode in -cmd or in the input, SQL given as arguments, .dump, .import,
// .indexes; and it handles .quit with arguments as sqlite3 does.
func TestShellLikeSQLite3(t *testing.T) {
	bin := sqlite3Binary(t)
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	replica, plain := filepath.Join(dir, "r.db"), filepath.Join(dir, "plain.db")
	setup := sampleSQL + "\nCREATE INDEX t_x ON t(x);\nCREATE TABLE imp(id INTEGER PRIMARY KEY, name TEXT, note);\n"
	if r := runIn(t, setup, "shell", "--url", srv.url, replica); r.code != 0 {
		t.Fatalf("setup: %d %s", r.code, r.stderr)
	}
	sqlite3Run(t, bin, setup, plain)

	same := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s:\nsyncdb shell:\n%q\nsqlite3:\n%q", what, got, want)
		}
	}
	query := "SELECT * FROM t ORDER BY id"
	for _, m := range modeFlags {
		for _, h := range []string{"-header", "-noheader"} {
			r := runIn(t, "", "shell", "-"+m, h, replica, query)
			if r.code != 0 {
				t.Fatalf("-%s %s: exit %d: %s", m, h, r.code, r.stderr)
			}
			same("-"+m+" "+h, r.stdout, sqlite3Run(t, bin, "", "-"+m, h, plain, query))
		}
	}
	for _, m := range []string{"csv", "insert t2", "json", "line", "column"} {
		in := ".mode " + m + "\n.headers on\n" + query + ";\nSELECT 1 AS one;\n"
		same(".mode "+m+" in the input", runIn(t, in, "shell", replica).stdout, sqlite3Run(t, bin, in, plain))
		r := runIn(t, "", "shell", "-cmd", ".mode "+m, "-cmd", ".headers on", replica, query)
		same(".mode "+m+" in -cmd", r.stdout, sqlite3Run(t, bin, "", "-cmd", ".mode "+m, "-cmd", ".headers on", plain, query))
	}
	// Separators and NULL.
	args := []string{"-list", "-separator", ";", "-nullvalue", "(null)"}
	same("-separator -nullvalue", runIn(t, "", append(append([]string{"shell"}, args...), replica, query)...).stdout,
		sqlite3Run(t, bin, "", append(args, plain, query)...))
	in := ".separator ' :: ' '\\n--\\n'\n.nullvalue N\n" + query + ";\n"
	same(".separator .nullvalue", runIn(t, in, "shell", "-list", replica).stdout, sqlite3Run(t, bin, in, plain))

	// .dump leaves syncdb's own tables out; the rest is sqlite3's.
	same(".dump", runIn(t, "", "shell", replica, ".dump").stdout, sqlite3Run(t, bin, "", plain, ".dump"))
	same(".dump t", runIn(t, "", "shell", replica, ".dump t").stdout, sqlite3Run(t, bin, "", plain, ".dump t"))
	same(".indexes", runIn(t, "", "shell", replica, ".indexes").stdout, sqlite3Run(t, bin, "", plain, ".indexes"))

	// .import of a CSV file with a header line.
	csvPath := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(csvPath, []byte("id,name,note\n1,Ada,\"first, of all\"\n2,\"Grace \"\"Amazing\"\" Hopper\",\n3,Édith,x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imp := ".import --csv --skip 1 " + csvPath + " imp\n.mode quote\nSELECT * FROM imp ORDER BY id;\n"
	same(".import", runIn(t, imp, "shell", replica).stdout, sqlite3Run(t, bin, imp, plain))
	if r := runIn(t, "", "shell", replica, ".import --csv "+csvPath+" nosuch"); r.code == 0 || !strings.Contains(r.stderr, "PRIMARY KEY") {
		t.Fatalf(".import into a missing table: %d %q", r.code, r.stderr)
	}
	// The imported rows are captured: they reach the server.
	if r := runIn(t, "", "push", replica); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}

	// .quit with arguments quits, quietly, as in sqlite3.
	r := runIn(t, "SELECT 1;\n.quit please\nSELECT 2;\n", "shell", "-list", replica)
	if r.code != 0 || r.stdout != "1\n" || r.stderr != "" {
		t.Fatalf(".quit please: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	if r := runIn(t, ".exit 3\n", "shell", replica); r.code != 3 {
		t.Fatalf(".exit 3: exit %d", r.code)
	}
}

// .read, .output, .once, .print, .open, .show and SQL arguments.
func TestShellDotCommands(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	script := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(script, []byte("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\nINSERT INTO t VALUES (1, 'one'), (2, 'two');\n.print from the script\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out1, out2 := filepath.Join(dir, "all.txt"), filepath.Join(dir, "once.txt")
	in := ".read " + script + "\n.mode list\n.output " + out1 + "\nSELECT v FROM t ORDER BY id;\nSELECT 'still';\n.output\n" +
		".once " + out2 + "\nSELECT count(*) FROM t;\nSELECT 'back';\n.show\n"
	r := runIn(t, in, "shell", "--url", srv.url, a)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	contains(t, "stdout", r.stdout, "from the script\n", "back\n", "mode: list")
	if got, _ := os.ReadFile(out1); string(got) != "one\ntwo\nstill\n" {
		t.Fatalf(".output file: %q", got)
	}
	if got, _ := os.ReadFile(out2); string(got) != "2\n" {
		t.Fatalf(".once file: %q", got)
	}
	if r := runIn(t, "", "push", a); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	// .open switches to another replica (bootstrapping it from --url).
	r = runIn(t, ".open --url "+srv.url+" "+b+"\nSELECT v FROM t WHERE id = 2;\n", "shell", "-list", a)
	if r.code != 0 || r.stdout != "two\n" {
		t.Fatalf(".open: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	// SQL arguments: each runs, stdin is not read; errors set the status.
	r = runIn(t, "SELECT 'stdin';\n", "shell", "-csv", b, "SELECT id, v FROM t ORDER BY id", ".mode list", "SELECT 'x'")
	if r.code != 0 || r.stdout != "1,one\n2,two\nx\n" {
		t.Fatalf("SQL arguments: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	if r := runIn(t, "", "shell", b, "SELECT nosuch"); r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
		t.Fatalf("failing SQL argument: exit %d, %q", r.code, r.stderr)
	}
}

// syncdb stats reads a replica that another process (here, another DB in
// this process) has open, instead of refusing; other commands still refuse.
func TestStatsWhileInUse(t *testing.T) {
	srv := startServer(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "busy.db")
	if r := runIn(t, "CREATE TABLE t(id INTEGER PRIMARY KEY);\nINSERT INTO t VALUES (1), (2);\n", "shell", "--url", srv.url, path); r.code != 0 {
		t.Fatalf("setup: %s", r.stderr)
	}
	db, err := syncdb.Open(context.Background(), syncdb.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(context.Background(), "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, "", "stats", path)
	if r.code != 0 {
		t.Fatalf("stats while in use: exit %d: %s", r.code, r.stderr)
	}
	contains(t, "stats", r.stdout, "unpushed changes: 4", "another process has the replica open")
	r = runIn(t, "", "stats", "--json", path)
	if m := decodeJSON(t, r.stdout); r.code != 0 || m["cdc_operations"] != json.Number("4") {
		t.Fatalf("stats --json while in use: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runIn(t, "", "push", path); r.code != 1 || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("push while in use: %d %s", r.code, r.stderr)
	}
}

// Every command prints the version with --version, and says what it does
// with -h.
func TestVersionAndHelpEverywhere(t *testing.T) {
	for _, c := range commands {
		r := runIn(t, "", c.name, "--version")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "syncdb ") {
			t.Errorf("syncdb %s --version: exit %d, %q %q", c.name, r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if r := runIn(t, "", args...); r.code != 0 || !strings.HasPrefix(r.stdout, "syncdb ") {
			t.Errorf("syncdb %v: exit %d, %q", args, r.code, r.stdout)
		}
	}
	if r := runBin(t, "", nil, "serve", "-h"); !strings.Contains(r.stderr, "Runs the sync server") {
		t.Errorf("serve -h says nothing about what it does:\n%s", r.stderr)
	}
}
