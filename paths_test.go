package syncdb_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
)

// Case 9: relative paths work, for full and partial replicas (the README's
// partial example failed with "shimvfs: path is not absolute" and left
// the downloaded file behind), also after the process changed directory.
func TestRelativePaths(t *testing.T) {
	url := newServer(t)
	ctx := context.Background()
	// Written on the server: a push of 500 rows would take most of the
	// test's time under -race.
	serverExec(t, url, "CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500) INSERT INTO big SELECT i, randomblob(2000) FROM n")
	dir := t.TempDir()
	t.Chdir(dir)
	full := open(t, syncdb.Config{Path: "full.db", URL: url})
	part := open(t, syncdb.Config{Path: "big.db", URL: url, Partial: &syncdb.PartialSync{PrefixBytes: 8192}})
	os.Mkdir(filepath.Join(dir, "elsewhere"), 0o755)
	t.Chdir(filepath.Join(dir, "elsewhere")) // the replicas keep working
	for _, db := range []*syncdb.DB{full, part} {
		if got := rows(t, db, "SELECT count(*), sum(length(v)) FROM big"); got != "500|1000000" {
			t.Fatalf("scan: %q", got)
		}
		mustExec(t, db, "INSERT INTO big VALUES(1000, x'00')")
		if err := db.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"full.db", "big.db"} {
		if _, err := os.Stat(filepath.Join(dir, name+"-info")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
