package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// result is what a run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runBin runs the syncdb binary with stdin and extra environment.
func runBin(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, authTokenEnv+"=") })
	cmd.Env = append(cmd.Env, env...)
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("syncdb %q: %v", args, err)
	}
	return r
}

// ok runs the binary and fails the test unless it exits 0.
func ok(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := runBin(t, stdin, nil, args...)
	if r.code != 0 {
		t.Fatalf("syncdb %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// runIn runs the command in this process (so that the race detector sees
// the command's own code), with stdin and no terminal.
func runIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{
		stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr,
		getenv:     func(string) string { return "" },
		notify:     func(chan<- os.Signal) {},
		stopNotify: func(chan<- os.Signal) {},
	}
	code := c.run(args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", s)
	}
	return m
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func wantKeys(t *testing.T, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(m); !slices.Equal(got, want) {
		t.Fatalf("JSON keys %v, want %v", got, want)
	}
}

func contains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

// The path a user takes: create and fill a database in the shell, push
// it, pull it into a second replica, read it there, exchange changes with
// the shell's dot-commands, inspect and checkpoint.
func TestCLIEndToEnd(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")

	r := ok(t, `CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, score REAL, data BLOB);
INSERT INTO notes(body, score, data)
  VALUES ('hello', 1.5, x'00ff'), (NULL, 2, NULL);
SELECT id, body, score, data FROM notes ORDER BY id;
`, "shell", "--url", srv.url, one)
	want := `2 rows affected
 id | body  | score | data
----+-------+-------+---------
  1 | hello |   1.5 | x'00ff'
  2 | NULL  |   2.0 | NULL
(2 rows)
`
	if r.stdout != want {
		t.Fatalf("shell printed:\n%s\nwant:\n%s", r.stdout, want)
	}
	if r.stderr != "" {
		t.Fatalf("shell stderr: %s", r.stderr)
	}

	// push: no --url needed any more.
	r = ok(t, "", "push", one)
	if !regexp.MustCompile(`^pushed 3 changes \(.*B\) in \S+\n$`).MatchString(r.stdout) {
		t.Fatalf("push printed %q", r.stdout)
	}
	r = ok(t, "", "push", "--json", one)
	m := decodeJSON(t, r.stdout)
	wantKeys(t, m, "pushed_changes", "pushed_bytes", "revision", "seconds", "conflicts")
	if m["pushed_changes"] != json.Number("0") {
		t.Fatalf("second push: %s", r.stdout)
	}

	// A second replica.
	r = ok(t, "", "pull", "--url", srv.url, "--json", two)
	if r.stderr != "" {
		t.Fatalf("pull wrote to stderr (no progress bars without a terminal): %q", r.stderr)
	}
	m = decodeJSON(t, r.stdout)
	wantKeys(t, m, "changed", "bootstrapped", "revision", "pulled_bytes", "seconds", "conflicts")
	if m["changed"] != true || m["bootstrapped"] != true || m["revision"] == "" {
		t.Fatalf("pull of a new replica: %s", r.stdout)
	}
	if n, _ := m["pulled_bytes"].(json.Number).Int64(); n <= 0 {
		t.Fatalf("pulled_bytes: %s", r.stdout)
	}
	if _, err := m["seconds"].(json.Number).Float64(); err != nil {
		t.Fatalf("seconds: %s", r.stdout)
	}
	rev := m["revision"].(string)
	r = ok(t, "SELECT id, body FROM notes ORDER BY id;\n", "shell", two)
	if want := " id | body\n----+-------\n  1 | hello\n  2 | NULL\n(2 rows)\n"; r.stdout != want {
		t.Fatalf("second replica:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = ok(t, "", "pull", two)
	if r.stdout != "already up to date at revision "+rev+"\n" {
		t.Fatalf("pull without changes printed %q", r.stdout)
	}

	// stats, as JSON and for humans.
	r = ok(t, "", "stats", "--json", two)
	m = decodeJSON(t, r.stdout)
	wantKeys(t, m, "path", "url", "revision", "cdc_operations", "main_wal_size", "revert_wal_size",
		"last_pull_unix_time", "last_push_unix_time", "network_sent_bytes", "network_received_bytes", "conflicts")
	if m["revision"] != rev || m["url"] != srv.url || m["path"] != two || m["cdc_operations"] != json.Number("0") {
		t.Fatalf("stats: %s (revision %s)", r.stdout, rev)
	}
	if n, _ := m["last_pull_unix_time"].(json.Number).Int64(); time.Since(time.Unix(n, 0)) > time.Hour {
		t.Fatalf("last_pull_unix_time: %s", r.stdout)
	}
	r = ok(t, "", "stats", two)
	contains(t, "stats", r.stdout, "revision:         "+rev+"\n", "server:           "+srv.url+"\n",
		"last push:        never\n", "unpushed changes: 0\n")
	if !regexp.MustCompile(`last pull: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \((just now|\d+ seconds? ago)\)\n`).MatchString(r.stdout) {
		t.Fatalf("stats: last pull:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`WAL: +[\d.]+ (B|KiB|MiB)\n`).MatchString(r.stdout) {
		t.Fatalf("stats: WAL:\n%s", r.stdout)
	}

	// checkpoint.
	r = ok(t, "", "checkpoint", one)
	if !regexp.MustCompile(`^checkpointed .*one\.db: WAL [\d.]+ (B|KiB|MiB) -> [\d.]+ (B|KiB|MiB)\n$`).MatchString(r.stdout) {
		t.Fatalf("checkpoint printed %q", r.stdout)
	}
	r = ok(t, "", "checkpoint", "--json", one)
	wantKeys(t, decodeJSON(t, r.stdout), "main_wal_size_before", "main_wal_size", "revert_wal_size", "seconds")

	// The shell's dot-commands move changes both ways.
	r = ok(t, `INSERT INTO notes(body) VALUES ('from two');
.push
.stats
`, "shell", two)
	contains(t, "shell .push", r.stdout, "1 row affected\npushed 1 change (", "unpushed changes: 0\n", "last push:")
	r = ok(t, `.pull
SELECT body FROM notes WHERE id = 3;
UPDATE notes SET body = 'edited' WHERE id = 1;
.sync
.checkpoint
.stats
`, "shell", one)
	contains(t, "shell .pull/.sync", r.stdout, "pulled ", " body\n----------\n from two\n(1 row)\n", "1 row affected\npushed 1 change (",
		"checkpointed ", "unpushed changes: 0\n")
	r = ok(t, ".sync\nSELECT body FROM notes WHERE id = 1;\n", "shell", two)
	contains(t, "shell .sync", r.stdout, "nothing to push\npulled ", " edited\n")

	// sync --json.
	r = ok(t, "", "sync", "--json", two)
	wantKeys(t, decodeJSON(t, r.stdout), "pushed_changes", "changed", "revision", "pushed_bytes", "pulled_bytes", "seconds", "conflicts")
}

func TestCLIErrors(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	db := filepath.Join(dir, "db.db")
	ok(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n", "shell", "--url", srv.url, db)

	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
		msgs  []string // in stderr
	}{
		{"unknown command", []string{"frob"}, "", 2, []string{`unknown command "frob"`, "shell", "pull"}},
		{"no command", nil, "", 2, []string{"Usage:", "Commands:"}},
		{"missing PATH", []string{"pull"}, "", 2, []string{"syncdb pull: missing PATH", "Usage: syncdb pull"}},
		{"missing PATH shell", []string{"shell", "--url", srv.url}, "", 2, []string{"syncdb shell: missing PATH"}},
		{"two paths", []string{"push", db, db}, "", 2, []string{"expected one PATH"}},
		{"unknown flag", []string{"stats", "--frob", db}, "", 2, []string{"flag provided but not defined: -frob"}},
		{"no database", []string{"pull", filepath.Join(dir, "new.db")}, "", 1, []string{"no database at", "give --url URL"}},
		{"not a syncdb database", []string{"stats", filepath.Join(dir, "plain")}, "", 1, []string{"not a syncdb database"}},
		{"unreachable server", []string{"pull", "--url", "http://127.0.0.1:1", filepath.Join(dir, "x.db")}, "", 1,
			[]string{"syncdb pull: download", "cannot reach the server at http://127.0.0.1:1", "connection refused"}},
		{"malformed URL", []string{"shell", "--url", "localhost:8080", filepath.Join(dir, "x.db")}, "", 1, []string{"is not an http(s) URL"}},
		{"bad database name", []string{"pull", "--url", srv.url + "/db/no!pe", filepath.Join(dir, "x.db")}, "", 1, []string{"HTTP 400", "bad database name"}},
		{"SQL error", []string{"shell", db}, "SELECT 1;\n\nSELECT * FROM nope;\nSELECT 2;\n", 1, []string{"Error near line 3:", "no such table: nope"}},
		{"unknown dot-command", []string{"shell", db}, ".frob\n", 1, []string{"Error near line 1: unknown command .frob"}},
		{"unsupported statement", []string{"shell", db}, "VACUUM;\n", 1, []string{"Error near line 1: statement not supported on a synced database: VACUUM"}},
		{"missing COMMIT", []string{"shell", db}, "BEGIN;\nINSERT INTO t(v) VALUES ('lost');\n", 1, []string{"the open transaction was rolled back"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "not a syncdb database" {
				os.WriteFile(filepath.Join(dir, "plain"), []byte("not a database"), 0o644)
			}
			start := time.Now()
			r := runBin(t, tc.stdin, nil, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			contains(t, "stderr", r.stderr, tc.msgs...)
			if d := time.Since(start); d > 15*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	// A failed download or a mistyped PATH leaves no files behind, but a
	// failed Open's PATH-lock (unlinking it would break the lock, see the
	// root package's TestFailedOpenRemovesItsFilesUnderTheLock).
	m, _ := filepath.Glob(filepath.Join(dir, "[xn]*.db*"))
	m = slices.DeleteFunc(m, func(f string) bool { return strings.HasSuffix(f, ".db-lock") })
	if len(m) > 0 {
		t.Fatalf("files left by failed downloads: %v", m)
	}
	// The shell went on after the error, and nothing of the unfinished
	// transaction stayed.
	r := runBin(t, "SELECT * FROM nope;\nSELECT 2 AS two;\nSELECT count(*) AS n FROM t;\n", nil, "shell", db)
	contains(t, "stdout after an error", r.stdout, " two\n-----\n   2\n", " n\n---\n 0\n")
	// --bail stops there.
	r = runBin(t, "SELECT * FROM nope;\nSELECT 2 AS two;\n", nil, "shell", "--bail", db)
	if r.code != 1 || strings.Contains(r.stdout, "two") {
		t.Fatalf("--bail: exit %d, stdout %q", r.code, r.stdout)
	}

	// One process at a time per replica.
	shell := exec.Command(binary, "shell", db)
	stdin, _ := shell.StdinPipe()
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(db + "-lock")
		if strings.TrimSpace(string(b)) == strconv.Itoa(shell.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell did not take the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r = runBin(t, "", nil, "push", db)
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("the database is in use by process %d: %s", shell.Process.Pid, db)) {
		t.Fatalf("push while a shell is open: exit %d, %q", r.code, r.stderr)
	}
	stdin.Close()
	if err := shell.Wait(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	ok(t, "", "push", db)

	// A table without a primary key: the message fits the command line.
	r = runBin(t, "CREATE TABLE nopk(a);\nINSERT INTO nopk VALUES (1);\n", nil, "shell", db)
	if r.code != 1 || !strings.Contains(r.stderr, "Error near line 2: table has no PRIMARY KEY") || strings.Contains(r.stderr, "Config.") {
		t.Fatalf("no primary key: exit %d, %q", r.code, r.stderr)
	}

	// A server that went away: a quick, clear failure.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.done
	start := time.Now()
	r = runBin(t, "", nil, "pull", db)
	if r.code != 1 || !strings.Contains(r.stderr, "syncdb pull: cannot reach the server at "+srv.url) {
		t.Fatalf("pull from a stopped server: exit %d, stderr %q", r.code, r.stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("pull from a stopped server took %v", d)
	}
	// Offline, the shell still reads and writes; .push fails and it goes on.
	r = runBin(t, "INSERT INTO t(v) VALUES ('offline');\n.push\nSELECT v FROM t;\n", nil, "shell", db)
	if r.code != 1 {
		t.Fatalf("offline .push: exit %d", r.code)
	}
	contains(t, "offline shell stdout", r.stdout, "1 row affected\n", " offline\n")
	contains(t, "offline shell stderr", r.stderr, "Error near line 2: cannot reach the server")
}

func TestCLIAuthToken(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--auth-token", "s3cret")
	dir := t.TempDir()
	db := filepath.Join(dir, "a.db")
	r := runBin(t, "", nil, "pull", "--url", srv.url, db)
	if r.code != 1 {
		t.Fatalf("pull without a token: exit %d", r.code)
	}
	contains(t, "stderr", r.stderr, "HTTP 401", authTokenEnv)
	r = runBin(t, "", nil, "pull", "--url", srv.url, "--auth-token", "wrong", db)
	if r.code != 1 || !strings.Contains(r.stderr, "HTTP 401") {
		t.Fatalf("pull with a wrong token: exit %d, %s", r.code, r.stderr)
	}
	r = runBin(t, "CREATE TABLE t(id INTEGER PRIMARY KEY);\nINSERT INTO t VALUES (1);\n.push\n", []string{authTokenEnv + "=s3cret"}, "shell", "--url", srv.url, db)
	if r.code != 0 || !strings.Contains(r.stdout, "pushed 2 changes") {
		t.Fatalf("shell with %s: exit %d\n%s\n%s", authTokenEnv, r.code, r.stdout, r.stderr)
	}
	// Flags may follow PATH.
	ok(t, "", "pull", db, "--auth-token", "s3cret", "--json")
}

func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := ok(t, "", args...)
		for _, c := range commands {
			contains(t, "help", r.stdout, "\n  "+c.name+" ")
		}
		contains(t, "help", r.stdout, "--url", authTokenEnv)
	}
	for _, c := range commands {
		if c.name == "serve" || c.name == "help" {
			continue
		}
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			r := ok(t, "", args...)
			if c.name == "version" {
				contains(t, strings.Join(args, " "), r.stdout, "Usage: syncdb version", "print the version")
				continue
			}
			if c.name == "migrate-store" {
				contains(t, strings.Join(args, " "), r.stdout, "Usage: syncdb migrate-store ", "--store", "--data")
				continue
			}
			contains(t, strings.Join(args, " "), r.stdout, "Usage: syncdb "+c.name+" ", "-url", "-auth-token")
		}
	}
	if r := runBin(t, "", nil, "serve", "-h"); r.code != 0 || !strings.Contains(r.stderr, "-addr") {
		t.Fatalf("serve -h: exit %d\n%s", r.code, r.stderr)
	}
}

// The shell in-process, so that the race detector watches its goroutines:
// transactions, RETURNING, schema commands, and the dot-commands.
func TestShellInProcess(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	r := runIn(t, `CREATE TABLE kv(k TEXT PRIMARY KEY, v);
CREATE INDEX kv_v ON kv(v);
CREATE TRIGGER kv_t AFTER INSERT ON kv WHEN NEW.v = 'x' BEGIN
  SELECT 1; -- a ";" inside a trigger body does not end the statement
END;
INSERT INTO kv VALUES ('a', 1) RETURNING k, v;
BEGIN;
INSERT INTO kv VALUES ('b', 'two; three');
SELECT count(*) AS n FROM kv;
.push
ROLLBACK;
BEGIN; INSERT INTO kv VALUES ('c', x'0102030405060708090a0b0c0d0e0f1011'); COMMIT;
WITH n(x) AS (VALUES (4)) UPDATE kv SET v = (SELECT x FROM n) WHERE k = 'a';
SELECT k, v FROM kv ORDER BY k;
PRAGMA table_info(kv);
.tables
.schema kv
.push
.stats
`, "shell", "--url", srv.url, a)
	if r.code != 1 { // the .push inside the transaction failed
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	want := ` k | v
---+---
 a | 1
(1 row)
1 row affected
 n
---
 2
(1 row)
1 row affected
1 row affected
 k | v
---+---------------------------------------------------
 a |                                                 4
 c | x'0102030405060708090a0b0c0d0e0f10...' (17 bytes)
(2 rows)
`
	if !strings.HasPrefix(r.stdout, want) {
		t.Fatalf("shell printed:\n%s\nwant it to start with:\n%s", r.stdout, want)
	}
	contains(t, "stdout", r.stdout, " cid | name | type | notnull | dflt_value | pk\n",
		"(2 rows)\nkv\nCREATE TABLE", // .tables lists only the user's table
		"CREATE TABLE kv(k TEXT PRIMARY KEY, v);\nCREATE INDEX kv_v ON kv(v);\nCREATE TRIGGER kv_t AFTER INSERT ON kv WHEN NEW.v = 'x' BEGIN\n",
		"pushed 6 changes", "unpushed changes: 0\n")
	if want := "Error near line 10: .push cannot run inside a transaction: COMMIT or ROLLBACK first\n"; r.stderr != want {
		t.Fatalf("stderr %q, want %q", r.stderr, want)
	}

	r = runIn(t, "SELECT k FROM kv ORDER BY k;\n", "shell", "--url", srv.url, b)
	if want := " k\n---\n a\n c\n(2 rows)\n"; r.stdout != want {
		t.Fatalf("second replica:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = runIn(t, "", "pull", "--json", b)
	if m := decodeJSON(t, r.stdout); r.code != 0 || m["changed"] != false {
		t.Fatalf("pull: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runIn(t, "SELECT 1 AS x;\n.quit\nSELECT 2;\n", "shell", b)
	if r.stdout != " x\n---\n 1\n(1 row)\n" || r.code != 0 {
		t.Fatalf(".quit: exit %d, %q", r.code, r.stdout)
	}
	// A last statement without ";" still runs.
	if r = runIn(t, "SELECT 'end' AS e", "shell", b); !strings.Contains(r.stdout, " end\n") {
		t.Fatalf("statement at EOF: %q %q", r.stdout, r.stderr)
	}
}
