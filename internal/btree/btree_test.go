package btree

import (
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// Children returns exactly the children SQLite's dbstat reports for
// every interior page of a table and an index (1-based page numbers).
func TestInteriorChildren(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT); CREATE INDEX t_k ON t(k);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 30000)
		INSERT INTO t SELECT i, printf('%020d-%s', i*7919 % 30011, hex(randomblob(8))) FROM n;`); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT pageno, name || path, pagetype FROM dbstat WHERE name IN ('t', 't_k')")
	if err != nil {
		t.Fatal(err)
	}
	type pg struct {
		no   uint32
		path string
		typ  string
	}
	var pages []pg
	for rows.Next() {
		var p pg
		rows.Scan(&p.no, &p.path, &p.typ)
		pages = append(pages, p)
	}
	rows.Close()
	checked := 0
	for _, p := range pages {
		if p.typ != "internal" {
			continue
		}
		var want []uint32
		for _, c := range pages {
			if rest, ok := strings.CutPrefix(c.path, p.path); ok && len(rest) > 0 && !strings.Contains(strings.TrimSuffix(rest, "/"), "/") && strings.HasSuffix(rest, "/") {
				want = append(want, c.no)
			}
		}
		var data []byte
		if err := db.QueryRow("SELECT data FROM sqlite_dbpage WHERE pgno = ?", p.no).Scan(&data); err != nil {
			t.Fatal(err)
		}
		got := Children(p.no, data)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("page %d (%s): children %v, dbstat says %v", p.no, p.path, got, want)
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("only %d interior pages checked", checked)
	}
	// Leaf pages have no children.
	for _, p := range pages {
		if p.typ == "leaf" {
			var data []byte
			db.QueryRow("SELECT data FROM sqlite_dbpage WHERE pgno = ?", p.no).Scan(&data)
			if c := Children(p.no, data); c != nil {
				t.Fatalf("leaf page %d has children %v", p.no, c)
			}
			break
		}
	}
}
