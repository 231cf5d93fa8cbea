package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// The errors a caller meets on these paths match the facade's sentinels
// (so a caller needs no internal package to tell them apart).
func TestFacadeSentinels(t *testing.T) {
	ctx := context.Background()
	t.Run("ErrNoConflict", func(t *testing.T) {
		db := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
		err := db.ResolveConflict(ctx, 42, "local")
		if !errors.Is(err, syncdb.ErrNoConflict) {
			t.Fatalf("resolving a conflict that does not exist: %v", err)
		}
	})
	t.Run("ErrInvalidMeta", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a.db")
		if err := open(t, syncdb.Config{Path: path}).Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+"-info", []byte(`{"version": `), 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := syncdb.Open(ctx, syncdb.Config{Path: path})
		if err == nil {
			db.Close()
		}
		if !errors.Is(err, syncdb.ErrInvalidMeta) {
			t.Fatalf("opening with a truncated -info: %v", err)
		}
	})
	t.Run("ErrFailed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a.db")
		db, err := syncdb.Open(testhooks.With(ctx, testhooks.Hooks{OnPanic: func(error) {}}), syncdb.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		fired := stopAt(t, "write.committed", path) // the database actor panics there
		if _, err := db.Exec(ctx, "INSERT INTO t VALUES(1)"); err == nil || !fired() {
			t.Fatalf("no panic: %v", err)
		}
		_, err = db.Exec(ctx, "INSERT INTO t VALUES(2)")
		if !errors.Is(err, syncdb.ErrFailed) {
			t.Fatalf("a write after the database actor panicked: %v", err)
		}
	})
}
