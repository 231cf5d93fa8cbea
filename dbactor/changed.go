package dbactor

import (
	"context"
	"database/sql"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/syncdb/syncdb/internal/btree"
)

// This file answers "which tables did that pull change?" for
// DB.Changes. A pull is physical: it brings pages, not rows. Each changed
// page is traced to the B-tree that owns it by walking the interior pages
// of every table and index (a small fraction of the file: all leaves of a
// tree are at the same depth, so only one leaf per level is read). Schema
// changes come from comparing sqlite_schema before and after. A changed
// page found in no tree and not on the freelist is an overflow page; those
// are traced with SQLite's dbstat, which reads the whole file, or, on a
// partial replica (where that would download it), every table is
// reported.

// schemaSQL returns the user schema: object name -> its table and SQL.
func (a *dbActor) schemaSQL(ctx context.Context) (map[string][2]string, error) {
	rows, err := a.conn.QueryContext(ctx, "SELECT name, tbl_name, coalesce(sql, '') FROM sqlite_schema")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var name, tbl, text string
		if err := rows.Scan(&name, &tbl, &text); err != nil {
			return nil, err
		}
		out[name] = [2]string{tbl, text}
	}
	return out, rows.Err()
}

// reported says whether changes to a table are the user's business:
// syncdb's own tables, SQLite's and the push high-water table are not.
func reported(table string) bool {
	return !isInternalTable(table) && table != "turso_sync_last_change_id" && !(len(table) >= 7 && strings.EqualFold(table[:7], "sqlite_"))
}

// changedTables returns, sorted, the tables whose rows or schema a pull
// changed: pages are the pages it wrote, before the schema before it.
func (a *dbActor) changedTables(ctx context.Context, pages []uint32, before map[string][2]string) ([]string, error) {
	after, err := a.schemaSQL(ctx)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for name, o := range after {
		if b, ok := before[name]; !ok || b != o {
			found[o[0]] = true
		}
	}
	for name, o := range before {
		if _, ok := after[name]; !ok {
			found[o[0]] = true
		}
	}

	st, err := a.conn.PrepareContext(ctx, "SELECT data FROM sqlite_dbpage WHERE pgno = ?")
	if err != nil {
		return nil, err
	}
	defer st.Close()
	read := func(pgno uint32) ([]byte, error) {
		var data []byte
		err := st.QueryRowContext(ctx, pgno).Scan(&data)
		if err == sql.ErrNoRows {
			return nil, nil
		}
		return data, err
	}

	want := map[uint32]bool{}
	for _, pg := range pages {
		want[pg] = true
	}
	owner := func(pg uint32, table string) {
		if want[pg] {
			found[table] = true
			delete(want, pg)
		}
	}
	rows, err := a.conn.QueryContext(ctx, "SELECT tbl_name, rootpage FROM sqlite_schema WHERE rootpage > 0")
	if err != nil {
		return nil, err
	}
	type root struct {
		table string
		page  uint32
	}
	var roots []root
	for rows.Next() {
		var r root
		if err := rows.Scan(&r.table, &r.page); err != nil {
			rows.Close()
			return nil, err
		}
		roots = append(roots, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	delete(want, 1) // sqlite_schema's root: the schema diff covers it
	for _, r := range roots {
		if len(want) == 0 {
			break
		}
		level := []uint32{r.page}
		for len(level) > 0 && len(want) > 0 {
			var next []uint32
			for _, pg := range level {
				owner(pg, r.table)
				data, err := read(pg)
				if err != nil {
					return nil, err
				}
				next = append(next, btree.Children(pg, data)...)
			}
			if len(next) == 0 {
				break
			}
			first, err := read(next[0])
			if err != nil {
				return nil, err
			}
			if k := btree.Kind(next[0], first); k == btree.LeafTable || k == btree.LeafIndex {
				for _, pg := range next {
					owner(pg, r.table)
				}
				break
			}
			level = next
		}
	}
	if len(want) > 0 {
		if err := a.dropFreelist(read, want); err != nil {
			return nil, err
		}
	}
	if len(want) > 0 {
		if err := a.traceOverflow(ctx, want, after, found); err != nil {
			return nil, err
		}
	}
	var out []string
	for t := range found {
		if reported(t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// dropFreelist removes the freelist's pages from want: freed pages belong
// to no table (the tree that freed them changed too).
func (a *dbActor) dropFreelist(read func(uint32) ([]byte, error), want map[uint32]bool) error {
	p1, err := read(1)
	if err != nil || len(p1) < 40 {
		return err
	}
	seen := map[uint32]bool{}
	for trunk := binary.BigEndian.Uint32(p1[32:]); trunk != 0 && !seen[trunk]; {
		seen[trunk] = true
		delete(want, trunk)
		data, err := read(trunk)
		if err != nil || len(data) < 8 {
			return err
		}
		n := int(binary.BigEndian.Uint32(data[4:]))
		for i := 0; i < n && 8+4*i+4 <= len(data); i++ {
			delete(want, binary.BigEndian.Uint32(data[8+4*i:]))
		}
		trunk = binary.BigEndian.Uint32(data[0:])
	}
	return nil
}

// traceOverflow finds the tables of the remaining (overflow) pages.
func (a *dbActor) traceOverflow(ctx context.Context, want map[uint32]bool, schema map[string][2]string, found map[string]bool) error {
	if a.pages != nil {
		for _, o := range schema {
			found[o[0]] = true
		}
		return nil
	}
	rows, err := a.conn.QueryContext(ctx, "SELECT name, pageno FROM dbstat")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() && len(want) > 0 {
		var name string
		var pg uint32
		if err := rows.Scan(&name, &pg); err != nil {
			return err
		}
		if want[pg] {
			delete(want, pg)
			if o, ok := schema[name]; ok {
				found[o[0]] = true
			}
		}
	}
	return rows.Err()
}

// changedPullTables is changedTables for the pages of the changes file a
// pull just applied.
func (a *dbActor) changedPullTables(ctx context.Context, changesPath string, before map[string][2]string) ([]string, error) {
	changes, err := openPageStore(a.cfg.FS, changesPath, -1, false)
	if err != nil {
		return nil, err
	}
	pages := changes.sortedPages()
	changes.close()
	return a.changedTables(ctx, pages, before)
}
