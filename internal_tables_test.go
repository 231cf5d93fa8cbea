package syncdb_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// Case 6: syncdb's own tables cannot be written, altered or dropped through
// the API (DROP TABLE _syncdb_changes was accepted and the next local write
// was then silently lost); reading them is fine.
func TestInternalTablesProtected(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'one')")
	if err := a.Sync(ctx); err != nil { // brings turso_sync_last_change_id
		t.Fatal(err)
	}
	refused := []string{
		"DROP TABLE _syncdb_changes",
		"DROP TABLE IF EXISTS main._syncdb_changes",
		`DROP TABLE "_SYNCDB_LOCAL"`,
		"DELETE FROM _syncdb_changes",
		"WITH x AS (SELECT 1) DELETE FROM _syncdb_changes",
		"UPDATE _syncdb_changes SET txn = 0",
		"INSERT INTO _syncdb_local(key, value) VALUES('pull_gen', 99)",
		"REPLACE INTO _syncdb_local(key, value) VALUES('pull_gen', 99)",
		"ALTER TABLE _syncdb_changes ADD COLUMN x",
		"ALTER TABLE _syncdb_changes RENAME TO mine",
		"CREATE INDEX i ON _syncdb_changes(txn)",
		"CREATE TRIGGER tr AFTER INSERT ON _syncdb_changes BEGIN SELECT 1; END",
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM _syncdb_changes; END",
		"CREATE TABLE _syncdb_mine(id INTEGER PRIMARY KEY)",
		"ALTER TABLE t RENAME TO _syncdb_t",
		"DROP TABLE turso_sync_last_change_id",
		"DELETE FROM turso_sync_last_change_id",
		"INSERT INTO sqlite_dbpage(pgno, data) VALUES(1, zeroblob(4096))",
	}
	for _, q := range refused {
		if _, err := a.Exec(ctx, q); !errors.Is(err, syncdb.ErrUnsupportedStatement) {
			t.Errorf("%s: %v, want ErrUnsupportedStatement", q, err)
		}
	}
	// Inside a transaction the refusal also stops the commit, even if the
	// function ignores the error.
	err := a.Tx(ctx, func(tx *syncdb.Tx) error {
		tx.Exec(ctx, "DROP TABLE _syncdb_changes")
		return nil
	})
	if !errors.Is(err, syncdb.ErrUnsupportedStatement) {
		t.Errorf("Tx that ignored a refused DROP: %v", err)
	}
	// Reads are fine.
	if got := rows(t, a, "SELECT count(*) FROM _syncdb_changes"); got != "0" {
		t.Errorf("reading the change log: %q", got)
	}
	if got := rows(t, a, "SELECT count(*) FROM turso_sync_last_change_id"); got != "2" { // the mark and its push chain
		t.Errorf("reading the high-water table: %q", got)
	}
	// Nothing was lost: the next write travels.
	mustExec(t, a, "INSERT INTO t VALUES(2, 'two')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|one\n2|two" {
		t.Fatalf("b: %q", got)
	}
	if got := rows(t, a, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"); got != "_syncdb_changes\n_syncdb_conflicts\n_syncdb_local\nt\nturso_sync_last_change_id" {
		t.Fatalf("a's tables: %q", got)
	}
}
