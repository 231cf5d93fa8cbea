package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/layout"
)

// TestFailedOpenRemovesStaleBootstrap: a PATH-bootstrap without PATH-info
// (a download an earlier process did not finish) is removed by a failed
// Open, the facade being its only remover (cmd/syncdb no longer does it).
func TestFailedOpenRemovesStaleBootstrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	files := layout.For(path)
	if err := os.WriteFile(files.Bootstrap, []byte("half a download"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := syncdb.Open(context.Background(), syncdb.Config{Path: path, URL: "http://no-such-host.invalid", MaxRetryTime: time.Second})
	if !errors.Is(err, syncdb.ErrUnreachable) {
		t.Fatalf("Open of an unknown host: %v, want ErrUnreachable", err)
	}
	if _, err := os.Stat(files.Bootstrap); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a failed Open, %s: %v, want it removed", filepath.Base(files.Bootstrap), err)
	}
}
