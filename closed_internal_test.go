package syncdb

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/actors"
)

// A call that raced with Close got past check() while Close stopped the
// actors under it: the actor it asks is gone (actors.ErrStopped). Each
// such call reports ErrClosed, the facade's name for it. The race is made
// here by stopping the actors without marking the DB closed, the state
// such a call meets.
func TestCallRacingCloseIsErrClosed(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "a.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	d.stopLive()
	d.sys.Stop()
	defer d.Close()
	calls := map[string]func() error{
		"Exec":            func() error { _, err := d.Exec(ctx, "INSERT INTO t VALUES(1)"); return err },
		"Tx":              func() error { return d.Tx(ctx, func(*Tx) error { return nil }) },
		"Pull":            func() error { _, err := d.Pull(ctx); return err },
		"Push":            func() error { return d.Push(ctx) },
		"Sync":            func() error { return d.Sync(ctx) },
		"Checkpoint":      func() error { return d.Checkpoint(ctx) },
		"Stats":           func() error { _, err := d.Stats(ctx); return err },
		"Conflicts":       func() error { _, err := d.Conflicts(ctx); return err },
		"ResolveConflict": func() error { return d.ResolveConflict(ctx, 1, "local") },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrClosed) || !errors.Is(err, actors.ErrStopped) {
			t.Errorf("%s with the actors stopped: %v, want ErrClosed (wrapping actors.ErrStopped)", name, err)
		}
	}
}
