package main

import (
	"bytes"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		stmt      string
		kind      stmtKind
		returning bool
	}{
		{"SELECT 1", kindQuery, false},
		{"  /* c */ select 1", kindQuery, false},
		{"VALUES (1), (2)", kindQuery, false},
		{"EXPLAIN QUERY PLAN SELECT 1", kindQuery, false},
		{"EXPLAIN INSERT INTO t VALUES (1)", kindQuery, false},
		{"WITH x AS (SELECT 1) SELECT * FROM x", kindQuery, false},
		{"WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM x) SELECT * FROM x", kindQuery, false},
		{`WITH "insert"(n) AS (SELECT 1) SELECT * FROM "insert"`, kindQuery, false},
		{"WITH x AS MATERIALIZED (SELECT 1) INSERT INTO t SELECT * FROM x", kindWrite, false},
		{"WITH x AS (SELECT 1) DELETE FROM t WHERE id IN x RETURNING id", kindWrite, true},
		{"INSERT INTO t VALUES (1)", kindWrite, false},
		{"INSERT INTO t(returning) VALUES (1)", kindWrite, false},
		{"INSERT INTO t VALUES ('returning')", kindWrite, false},
		{"insert into t values (1) returning *", kindWrite, true},
		{"REPLACE INTO t VALUES (1)", kindWrite, false},
		{"UPDATE t SET a = 1", kindWrite, false},
		{"DELETE FROM t", kindWrite, false},
		{"CREATE TABLE t(id INTEGER PRIMARY KEY)", kindExec, false},
		{"DROP TABLE t", kindExec, false},
		{"PRAGMA user_version", kindQuery, false},
		{"PRAGMA main.user_version", kindQuery, false},
		{"PRAGMA user_version = 3", kindExec, false},
		{"PRAGMA main.user_version=3", kindExec, false},
		{"PRAGMA table_info(t)", kindQuery, false},
		{"PRAGMA main.index_list('t')", kindQuery, false},
		{"PRAGMA cache_size(100)", kindExec, false},
		{"PRAGMA wal_checkpoint", kindExec, false},
		{"PRAGMA optimize", kindExec, false},
		{"BEGIN", kindBegin, false},
		{"begin immediate transaction", kindBegin, false},
		{"COMMIT", kindCommit, false},
		{"END TRANSACTION", kindCommit, false},
		{"ROLLBACK", kindRollback, false},
		{"ROLLBACK TRANSACTION", kindRollback, false},
		{"ROLLBACK TO sp", kindExec, false},
		{"ROLLBACK TRANSACTION TO SAVEPOINT sp", kindExec, false},
		{"SAVEPOINT sp", kindExec, false},
		{"-- only a comment", kindExec, false},
	} {
		got := classify(tc.stmt)
		if got.kind != tc.kind || got.returning != tc.returning {
			t.Errorf("classify(%q) = kind %d returning %v, want kind %d returning %v", tc.stmt, got.kind, got.returning, tc.kind, tc.returning)
		}
	}
}

func TestSQLComplete(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"SELECT 1;", true},
		{"SELECT 1", false},
		{"SELECT ';'", false},
		{"SELECT ';';", true},
		{"SELECT 1; -- done\n", true},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;", false},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;", true},
		{"SELECT \"a;\nb\";", true},
		{"SELECT 1;\x00 garbage", true},
	} {
		if got := sqlComplete(tc.text); got != tc.want {
			t.Errorf("sqlComplete(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v       any
		want    string
		numeric bool
	}{
		{nil, "NULL", false},
		{int64(-7), "-7", true},
		{1.0, "1.0", true},
		{0.1, "0.1", true},
		{math.Inf(1), "Inf", true},
		{2.5e-10, "2.5e-10", true},
		{"plain", "plain", false},
		{"", "", false},
		{"a\tb\nc\r", `a\tb\nc\r`, false},
		{"bad\xffbyte", `bad\xffbyte`, false},
		{"ünïcode \uFFFD", "ünïcode \uFFFD", false},
		{[]byte{}, "x''", false},
		{[]byte{0, 0xab}, "x'00ab'", false},
		{bytes.Repeat([]byte{1}, 100), "x'01010101010101010101010101010101...' (100 bytes)", false},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), "2024-01-02 03:04:05Z", false},
	} {
		got, num := formatValue(tc.v)
		if got != tc.want || num != tc.numeric {
			t.Errorf("formatValue(%#v) = %q, %v; want %q, %v", tc.v, got, num, tc.want, tc.numeric)
		}
	}
}

func TestTable(t *testing.T) {
	rs := &resultSet{
		cols:    []string{"id", "name"},
		rows:    [][]string{{"1", "ann"}, {"1000", "NULL"}},
		numeric: [][]bool{{true, false}, {true, false}},
	}
	var b strings.Builder
	rs.print(&b)
	want := ` id   | name
------+------
    1 | ann
 1000 | NULL
(2 rows)
`
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	(&resultSet{cols: []string{"x"}}).print(&b)
	if want := " x\n---\n(0 rows)\n"; b.String() != want {
		t.Fatalf("empty table %q, want %q", b.String(), want)
	}
}

func TestHumanUnits(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		time.Second: "just now", 30 * time.Second: "30 seconds ago", time.Minute: "1 minute ago",
		3 * time.Minute: "3 minutes ago", 5 * time.Hour: "5 hours ago", 72 * time.Hour: "3 days ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	now := time.Now()
	if got := humanTime(0, now); got != "never" {
		t.Errorf("humanTime(0) = %q", got)
	}
	if got, want := humanTime(now.Add(-10*time.Minute).Unix(), now), now.Add(-10*time.Minute).Format(time.RFC3339)+" (10 minutes ago)"; got != want {
		t.Errorf("humanTime = %q, want %q", got, want)
	}
}

func TestParseFlagsAnywhere(t *testing.T) {
	cmd := findCommand("pull")
	c := &cli{stdout: io.Discard, stderr: io.Discard}
	for _, args := range [][]string{
		{"--json", "--url", "http://h", "p.db"},
		{"p.db", "--json", "--url", "http://h"},
		{"--url=http://h", "p.db", "-json"},
	} {
		fs, f := newFlagSet(cmd, true)
		pos, _, ok := c.parseFlags(cmd, fs, args)
		if !ok || len(pos) != 1 || pos[0] != "p.db" || !f.json || f.url != "http://h" {
			t.Errorf("%q: pos %q ok %v json %v url %q", args, pos, ok, f.json, f.url)
		}
	}
	fs, _ := newFlagSet(cmd, true)
	if pos, _, ok := c.parseFlags(cmd, fs, []string{"--", "--json"}); !ok || len(pos) != 1 || pos[0] != "--json" {
		t.Errorf("after --: %q", pos)
	}
	fs, _ = newFlagSet(cmd, true)
	if _, code, ok := c.parseFlags(cmd, fs, []string{"--nope", "p.db"}); ok || code != exitUsage {
		t.Errorf("unknown flag: ok %v code %d", ok, code)
	}
}

// term.Terminal reads keys through ctrlCReader: one line per read, and
// Ctrl-C becomes Enter plus a note.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	off := newProgress(&b, false)
	off.report("bootstrap", 1, 10)
	off.done()
	if b.Len() != 0 {
		t.Fatalf("a disabled progress wrote %q", b.String())
	}

	clock := time.Unix(1000, 0)
	p := newProgress(&b, true)
	p.now = func() time.Time { return clock }
	for i := int64(1); i <= 10; i++ {
		p.report("bootstrap", i, 10)
	}
	p.done()
	if !strings.Contains(b.String(), "downloading") || !strings.Contains(b.String(), "/10)") {
		t.Fatalf("bootstrap bar: %q", b.String())
	}

	// A quick pull shows nothing; a slow one shows a spinner.
	b.Reset()
	p.report("pull", 1, 0)
	p.report("pull", 2, 0)
	if b.Len() != 0 {
		t.Fatalf("a quick pull drew %q", b.String())
	}
	clock = clock.Add(time.Second)
	p.report("pull", 3, 0)
	p.done()
	if !strings.Contains(b.String(), "pulling") {
		t.Fatalf("slow pull: %q", b.String())
	}
}
