package main

import (
	"github.com/syncdb/syncdb/internal/layout"

	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // plain SQLite, to build the databases the server serves
)

// The generated databases have one table:
//
//	NAME(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)
//
// k is 'key-%010d' of id, v is hex(randomblob(vBytes)): 2*vBytes characters
// that compress about 2:1, like typical text. They are written with plain
// modernc SQLite as pre-existing databases and served as they are
// (`syncdb serve --db NAME` adopts DATA/NAME/db.sqlite).

// tableSpec describes one generated table.
type tableSpec struct {
	table  string
	rows   int   // exact row count, or
	bytes  int64 // at least this file size (rows added until reached)
	vBytes int   // random bytes per row (v holds twice as many hex digits)
}

// cachedDB returns a generated database in the cache directory, building it
// if it is not there yet.
func (e *benchEnv) cachedDB(spec tableSpec) (path string, rows int, err error) {
	name := fmt.Sprintf("%s-rows%d-bytes%d-v%d.sqlite", spec.table, spec.rows, spec.bytes, spec.vBytes)
	path = filepath.Join(e.cache, name)
	if _, err := os.Stat(path); err == nil {
		rows, err := countRows(path, spec.table)
		if err == nil {
			return path, rows, nil
		}
		logf("cached %s is unusable (%v): rebuilding", name, err)
	}
	logf("generating %s", name)
	tmp := path + ".tmp"
	os.Remove(tmp)
	os.Remove(layout.For(tmp).WAL)
	os.Remove(layout.For(tmp).SHM)
	if rows, err = generate(tmp, spec); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", 0, err
	}
	return path, rows, nil
}

func generate(path string, spec tableSpec) (int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(fmt.Sprintf(`CREATE TABLE %s(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)`, spec.table)); err != nil {
		return 0, err
	}
	insert := fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i+1 FROM n WHERE i < ?)
		INSERT INTO %s SELECT i, printf('key-%%010d', i), hex(randomblob(%d)) FROM n`, spec.table, spec.vBytes)
	rows := 0
	const batch = 20000
	for {
		n := batch
		if spec.rows > 0 {
			if rows >= spec.rows {
				break
			}
			n = min(batch, spec.rows-rows)
		} else {
			var pages int64
			if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
				return 0, err
			}
			if pages*4096 >= spec.bytes {
				break
			}
			// Close in on the target without overshooting by a whole
			// batch: the first 1000 rows tell the size of a row.
			n = 1000
			if rows > 0 {
				perRow := pages * 4096 / int64(rows)
				left := (spec.bytes - pages*4096) / perRow
				n = int(min(int64(batch), max(50, left*9/10)))
			}
		}
		if _, err := db.Exec(insert, rows+1, rows+n); err != nil {
			return 0, err
		}
		rows += n
	}
	// Checkpoint everything into the file; the WAL is gone after Close.
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return 0, err
	}
	return rows, nil
}

func countRows(path, table string) (int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1") // fully checkpointed: no -wal, -shm
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRow("SELECT count(*) FROM " + table).Scan(&n)
	return n, err
}

// copyFile copies src to dst (created or truncated).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// placeDB puts a generated database where the server will adopt it as
// database name.
func placeDB(dataDir, name, src string) error {
	if err := os.MkdirAll(filepath.Join(dataDir, name), 0o755); err != nil {
		return err
	}
	return copyFile(filepath.Join(dataDir, name, "db.sqlite"), src)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// remoteExec runs statements on the server as one Hrana v2 pipeline (each
// statement on its own, autocommit), as any writer on the server would.
func remoteExec(url string, stmts ...stmt) error {
	return pipeline(context.Background(), http.DefaultClient, url, stmts...)
}

type stmt struct {
	sql  string
	args []any
}
