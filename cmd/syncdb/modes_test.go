package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// sqlite3Binary returns the sqlite3 command, or skips the test.
func sqlite3Binary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("the sqlite3 command is not installed (scripts/test.sh installs it: apt-get install -y sqlite3); " +
			"skipping the comparison of output modes with it")
	}
	return bin
}

// sampleSQL fills table t with values that exercise every formatting
// rule: integers, reals, text with quotes, separators, tabs, newlines,
// control characters and wide characters, blobs, NULL and empty strings.
const sampleSQL = `CREATE TABLE t(id INTEGER PRIMARY KEY, "a b" INTEGER, r REAL, "q""t" TEXT, bl BLOB, x);
INSERT INTO t VALUES
 (1, 1, 2.5, 'plain', x'00ff', NULL),
 (2, -20, 1e100, 'with "quote", comma', x'', 'x'),
 (3, 3, 0.1, 'tab	and' || char(10) || 'newline', NULL, 1.0),
 (4, 4, NULL, 'ünïcødé ✓ 日本', x'414243', ''),
 (5, 9223372036854775807, -0.0, ' lead', x'0a0b', 'ctl' || char(1) || 'x' || char(13) || 'y'),
 (6, -9223372036854775808, 123456789012345678.0, 'q''uote', NULL, 1.5e-7),
 (7, 0, 12345.678, '<tag a="1">&amp;</tag>', x'3c3e', 100.0),
 (8, 42, 0.30000000000000004, '', x'00', 'a,b'),
 (9, 7, 1e15, 'crlf' || char(13) || char(10) || 'end', NULL, 1e16);`

// sqlite3Out runs sql with sqlite3 on db after the dot-commands setup.
func sqlite3Out(t *testing.T, bin, db string, setup []string, sql string) string {
	t.Helper()
	cmd := exec.Command(bin, "-batch", db)
	cmd.Stdin = strings.NewReader(strings.Join(setup, "\n") + "\n" + sql + "\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("sqlite3 %v: %v %s", setup, err, errb.String())
	}
	return out.String()
}

// The output modes print exactly what sqlite3 prints, from the values
// database/sql returns for the same rows.
func TestModesMatchSQLite3(t *testing.T) {
	bin := sqlite3Binary(t)
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(sampleSQL); err != nil {
		t.Fatal(err)
	}
	queries := []string{
		"SELECT * FROM t ORDER BY id",
		"SELECT id, r FROM t WHERE id IN (1, 2)",
		"SELECT * FROM t WHERE 0",
		`SELECT 1 AS "a long column name", 'v' AS b`,
	}
	for _, mode := range modes {
		if mode == "aligned" {
			continue
		}
		for _, headers := range []bool{false, true} {
			for _, q := range queries {
				setup := []string{".mode " + mode, fmt.Sprintf(".headers %v", map[bool]string{true: "on", false: "off"}[headers])}
				want := sqlite3Out(t, bin, path, setup, q+";")
				o := defaultOutput()
				if err := o.setMode(mode, nil); err != nil {
					t.Fatal(err)
				}
				o.headers = headers
				rows, err := db.Query(q)
				if err != nil {
					t.Fatal(err)
				}
				res, err := collectResult(rows)
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				o.print(&got, res)
				if got.String() != want {
					t.Errorf(".mode %s, headers %v, %s:\ngot:\n%q\nsqlite3:\n%q", mode, headers, q, got.String(), want)
				}
			}
		}
	}
}

// sqliteFloat gives SQLite's digits for %!.15g and %!.20g, compared with
// the sqlite3 binary's printf() over random doubles.
func TestSQLiteFloat(t *testing.T) {
	bin := sqlite3Binary(t)
	rng := rand.New(rand.NewPCG(7, 7))
	var vals []float64
	for len(vals) < 2000 {
		var v float64
		switch len(vals) % 4 {
		case 0:
			v = math.Float64frombits(rng.Uint64())
		case 1:
			v = rng.Float64() * math.Pow(10, float64(rng.IntN(40)-20))
		case 2:
			v = float64(rng.IntN(1000000)) / 1000
		default:
			v = rng.NormFloat64() * 1e6
		}
		// Below about 1e-290 the 20-digit form may differ beyond the 17th
		// digit (see the README); those are left out.
		if !math.IsNaN(v) && !math.IsInf(v, 0) && (v == 0 || math.Abs(v) > 1e-290) {
			vals = append(vals, v)
		}
	}
	var script strings.Builder
	for _, v := range vals {
		fmt.Fprintf(&script, "SELECT printf('%%!.15g|%%!.20g', %[1]s, %[1]s);\n", fmt.Sprintf("%.17g", v))
	}
	cmd := exec.Command(bin, ":memory:")
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(vals) {
		t.Fatalf("%d lines for %d values", len(lines), len(vals))
	}
	bad := 0
	for i, l := range lines {
		want := strings.Split(l, "|")
		if g15, g20 := sqliteFloat(vals[i], 15), sqliteFloat(vals[i], 20); g15 != want[0] || g20 != want[1] {
			if bad++; bad < 10 {
				t.Errorf("%.17g: got %s %s, sqlite3 %s %s", vals[i], g15, g20, want[0], want[1])
			}
		}
	}
}
