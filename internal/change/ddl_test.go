package change

import (
	"strings"
	"testing"
)

func TestCreateIfNotExists(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`CREATE TABLE t(a)`, `CREATE TABLE IF NOT EXISTS t(a)`},
		{`CREATE TABLE "t x"(a)`, `CREATE TABLE IF NOT EXISTS "t x"(a)`},
		{`CREATE TABLE"t"(a)`, `CREATE TABLE IF NOT EXISTS "t"(a)`},
		{`create table t (a)`, `create table IF NOT EXISTS t (a)`},
		{`CREATE INDEX i ON t(a)`, `CREATE INDEX IF NOT EXISTS i ON t(a)`},
		{`CREATE UNIQUE INDEX i ON t(a)`, `CREATE UNIQUE INDEX IF NOT EXISTS i ON t(a)`},
		{`CREATE VIEW v AS SELECT 1`, `CREATE VIEW IF NOT EXISTS v AS SELECT 1`},
		{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END`, `CREATE TRIGGER IF NOT EXISTS tr AFTER INSERT ON t BEGIN SELECT 1; END`},
		{`CREATE VIRTUAL TABLE f USING fts5(x)`, `CREATE VIRTUAL TABLE IF NOT EXISTS f USING fts5(x)`},
		{`CREATE TEMP TABLE t(a)`, `CREATE TEMP TABLE IF NOT EXISTS t(a)`},
		{`  CREATE /* x */ TABLE -- y` + "\n" + `t(a)`, `  CREATE /* x */ TABLE IF NOT EXISTS -- y` + "\n" + `t(a)`},
		{`CREATE TABLE IF NOT EXISTS t(a)`, `CREATE TABLE IF NOT EXISTS t(a)`},
		{`create table if  not /**/ exists t(a)`, `create table if  not /**/ exists t(a)`},
		{`CREATE TABLE "if"(a)`, `CREATE TABLE IF NOT EXISTS "if"(a)`},
		{`CREATE TABLE if_x(a)`, `CREATE TABLE IF NOT EXISTS if_x(a)`},
		{`CREATE TABLE ifnot(a)`, `CREATE TABLE IF NOT EXISTS ifnot(a)`},
		{`CREATE TABLE "IF NOT EXISTS"(a)`, `CREATE TABLE IF NOT EXISTS "IF NOT EXISTS"(a)`},
	} {
		got, err := CreateIfNotExists(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("CreateIfNotExists(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		``, `   `, `DROP TABLE t`, `ALTER TABLE t ADD x`, `CREATE`, `CREATE UNIQUE TABLE t(a)`,
		`CREATE VIRTUAL VIEW v`, `CREATE MATERIALIZED VIEW v AS SELECT 1`, `CREATEX TABLE t(a)`, `/* unterminated`,
	} {
		if got, err := CreateIfNotExists(in); err == nil {
			t.Errorf("CreateIfNotExists(%q) = %q, want an error", in, got)
		}
	}
}

func TestIsAddColumn(t *testing.T) {
	for in, want := range map[string]bool{
		`ALTER TABLE t ADD COLUMN c INT`:          true,
		`ALTER TABLE t ADD c`:                     true,
		`alter table "t x" add column "c"`:        true,
		`ALTER TABLE main.t ADD c`:                true,
		`ALTER TABLE "main" . "t" ADD c`:          true,
		`ALTER TABLE [t] ADD c`:                   true,
		"ALTER TABLE `t``x` ADD c":                true,
		`ALTER TABLE 't' ADD c`:                   true,
		`ALTER TABLE add ADD add2`:                true,
		`ALTER TABLE t /* c */ ADD -- x` + "\nc":  true,
		`ALTER TABLE t ADD "constraint" INT`:      true,
		`ALTER TABLE t ADD COLUMN "check" INT`:    true,
		`ALTER TABLE t ADD CONSTRAINT c CHECK(1)`: false,
		`ALTER TABLE t ADD CHECK(x > 0)`:          false,
		`ALTER TABLE t ADD`:                       false,
		`ALTER TABLE t DROP COLUMN c`:             false,
		`ALTER TABLE t RENAME TO u`:               false,
		`ALTER TABLE t RENAME COLUMN a TO add`:    false,
		`ALTER TABLE "t ADD c`:                    false,
		`ALTER TABLE`:                             false,
		`CREATE TABLE t(a)`:                       false,
		`ALTER VIEW t ADD c`:                      false,
		``:                                        false,
	} {
		if got := IsAddColumn(in); got != want {
			t.Errorf("IsAddColumn(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDropIfExists(t *testing.T) {
	for _, tc := range []struct{ typ, name, want string }{
		{"table", "t", `DROP TABLE IF EXISTS "t"`},
		{"INDEX", `we"ird`, `DROP INDEX IF EXISTS "we""ird"`},
		{"view", "order", `DROP VIEW IF EXISTS "order"`},
		{"trigger", "a b", `DROP TRIGGER IF EXISTS "a b"`},
		{"column", "x", ``},
		{"table; DROP TABLE x", "t", ``},
	} {
		if got := DropIfExists(tc.typ, tc.name); got != tc.want {
			t.Errorf("DropIfExists(%q, %q) = %q, want %q", tc.typ, tc.name, got, tc.want)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		``: `""`, `a`: `"a"`, `a"b`: `"a""b"`, `""`: `""""""`, `ü v`: `"ü v"`,
	} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
	if got, err := RowidName([]string{"ROWID", "x"}); got != "_rowid_" || err != nil {
		t.Errorf("RowidName = %q, %v", got, err)
	}
	if got, err := RowidName([]string{"rowid", "_Rowid_"}); got != "oid" || err != nil {
		t.Errorf("RowidName = %q, %v", got, err)
	}
	// Only ASCII case folds, as in SQLite: a dotless ı is not an i.
	if got, _ := RowidName([]string{"rowıd"}); got != "rowid" {
		t.Errorf("RowidName folded non-ASCII: %q", got)
	}
	if _, err := RowidName([]string{"oid", "ROWID", "_rowid_"}); err == nil || !strings.Contains(err.Error(), "shadow") {
		t.Errorf("all shadowed: %v", err)
	}
}
