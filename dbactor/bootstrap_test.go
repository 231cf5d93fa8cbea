package dbactor

import (
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/syncdb/syncdb/internal/layout"
)

// The move of a downloaded bootstrap into place, as scenarios:
// testdata/bootstrap/move.txt give whether PATH-bootstrap and PATH exist
// ("move download=BOOL db=BOOL"); the output is planMove's decision. go
// test ./dbactor -run TestBootstrapMovePlan -rewrite rewrites them. The
// executor, moveBootstrap, is run end to end by the root package's
// TestBootstrapKilledBeforeMove.
func TestBootstrapMovePlan(t *testing.T) {
	datadriven.Walk(t, "testdata/bootstrap", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, c *datadriven.TestData) string {
			if c.Cmd != "move" {
				t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
			}
			var download, db bool
			c.ScanArgs(t, "download", &download)
			c.ScanArgs(t, "db", &db)
			move, err := planMove(layout.For("app.db"), download, db)
			switch {
			case err != nil:
				return "refuse: " + err.Error()
			case move:
				return "rename app.db-bootstrap to app.db, fsync the directory"
			}
			return "nothing to move"
		})
	})
}
