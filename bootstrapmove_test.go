package syncdb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/server"
)

// TestBootstrapKilledBeforeMove: a process killed at the bootstrap's
// failpoints, full and partial. At bootstrap.downloaded the download is
// synced but there is no metadata: the next Open bootstraps again. At
// bootstrap.meta the metadata is written and PATH-bootstrap not yet moved:
// the next Open moves it into place (dbactor's MoveBootstrap, sent by the
// facade before anything opens PATH) and opens the replica it
// downloaded.
func TestBootstrapKilledBeforeMove(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes")
	}
	ctx := context.Background()
	url := serverWith(t, server.Config{DataDir: t.TempDir()})
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'a'), (2, 'b')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	for _, point := range []string{"bootstrap.downloaded", "bootstrap.meta"} {
		for _, partial := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s partial=%v", point, partial), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "b.db")
				runKilled(t, workerCmd("W_PATH="+path, "W_URL="+url, "W_OPEN_KILL_AT="+point,
					fmt.Sprintf("W_PREFIX=%v", partial)), point)
				exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
				if exists(path) || !exists(path+"-bootstrap") || exists(path+"-info") != (point == "bootstrap.meta") {
					t.Fatalf("after the kill: %s %v, -bootstrap %v, -info %v", path, exists(path), exists(path+"-bootstrap"), exists(path+"-info"))
				}
				cfg := syncdb.Config{Path: path, URL: url}
				if partial {
					cfg.Partial = &syncdb.PartialSync{PrefixBytes: 4096}
				}
				b, err := syncdb.Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|a\n2|b" {
					t.Errorf("the replica after the reopen: %q", got)
				}
				if exists(path + "-bootstrap") {
					t.Errorf("%s-bootstrap left after the reopen", path)
				}
			})
		}
	}
}
