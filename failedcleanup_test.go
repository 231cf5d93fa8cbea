package syncdb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// killedCleanupFS fails the metadata's renames once PATH exists (a new
// replica's Open then fails after its bootstrap moved into place, with
// PATH, -info and SQLite's files there) and, from that fault on, lets only
// `let` removals through: the process is killed in the middle of the
// failed Open's cleanup.
type killedCleanupFS struct {
	fsx.FS
	path  string
	mu    *sync.Mutex
	armed *bool
	let   *int
}

var errKilled = errors.New("killed")

func (fs killedCleanupFS) Rename(from, to string) error {
	if _, err := os.Stat(fs.path); err == nil && strings.HasSuffix(to, "-info") {
		fs.mu.Lock()
		*fs.armed = true
		fs.mu.Unlock()
		return errInjected
	}
	return fs.FS.Rename(from, to)
}

func (fs killedCleanupFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !*fs.armed {
		return fs.FS.Remove(name)
	}
	if *fs.let == 0 {
		return errKilled
	}
	*fs.let--
	return fs.FS.Remove(name)
}

func (fs killedCleanupFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if *fs.armed && *fs.let == 0 {
		return errKilled
	}
	return fs.FS.SyncDir(dir)
}

// A failed first Open killed after any number of its cleanup's removals
// leaves no -info without PATH (every later Open would fail on the
// missing PATH) and no companion without PATH: either nothing but -lock,
// and the next Open bootstraps, or PATH without -info, which the next Open
// refuses naming -info.
func TestFailedOpenCleanupKilledMidway(t *testing.T) {
	url := newServer(t)
	serverExec(t, url, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	serverExec(t, url, "INSERT INTO t VALUES(1, 'x')")
	for let := 1; ; let++ { // 0: killed before the cleanup, a whole replica left
		dir := t.TempDir()
		path := filepath.Join(dir, "a.db")
		left, armed := let, false
		fs := killedCleanupFS{FS: fsx.OS, path: path, mu: new(sync.Mutex), armed: &armed, let: &left}
		ctx := testhooks.With(context.Background(), testhooks.Hooks{FS: fs})
		db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url})
		if err == nil {
			db.Close()
			t.Fatal("Open with failing metadata renames succeeded")
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("Open: %v, want the injected fault", err)
		}
		var names []string
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if n := e.Name(); n != "a.db-lock" && n != "a.db-bootstrap" {
				names = append(names, n)
			}
		}
		hasPath := slices.Contains(names, "a.db")
		if slices.Contains(names, "a.db-info") || len(names) > 0 && !hasPath {
			t.Errorf("killed after %d removals: left %q", let, names)
		}
		b, err := syncdb.Open(context.Background(), syncdb.Config{Path: path, URL: url})
		switch {
		case hasPath:
			if err == nil || !strings.Contains(err.Error(), "has no "+path+"-info") {
				t.Errorf("killed after %d removals, left %q: the next Open: %v, want a refusal naming -info", let, names, err)
			}
		case err != nil:
			t.Errorf("killed after %d removals, left %q: the next Open: %v", let, names, err)
		default:
			if got := rows(t, b, "SELECT count(*) FROM t"); got != "1" {
				t.Errorf("killed after %d removals: the next Open: %s rows, want 1", let, got)
			}
		}
		if err == nil {
			b.Close()
		}
		if left > 0 { // the cleanup finished before the kill
			if hasPath {
				t.Errorf("a cleanup that finished left %q", names)
			}
			return
		}
	}
}
