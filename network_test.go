package syncdb_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/server"
)

// deadURL is a URL where nothing listens (connection refused).
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return url
}

// noPrefix checks that an error message carries no internal package
// prefix.
func noPrefix(t *testing.T, what string, err error) {
	t.Helper()
	for _, p := range []string{"netactor", "syncdb", "dbactor", "syncactor", "metaactor", "pageactor", "shimvfs"} {
		if msg := err.Error(); strings.HasPrefix(msg, p+": ") || strings.Contains(msg, ": "+p+": ") {
			t.Errorf("%s: message has the prefix %q: %v", what, p, err)
		}
	}
}

// Case 8: Open, Pull and Push against a server that is down fail within
// MaxRetryTime (one retry budget, not netactor's times syncactor's), with
// ErrUnreachable, clear messages, and no file left behind by the Open.
func TestUnreachableFailsWithinMaxRetryTime(t *testing.T) {
	// Waits on timers (little CPU) and touches no process-wide state
	// (failpoints, hooks, environment): runs beside the other such tests.
	t.Parallel()
	const budget = 2 * time.Second
	const slack = 1500 * time.Millisecond // scheduling on a loaded machine
	ctx := context.Background()
	dir := t.TempDir()
	url := deadURL(t)

	start := time.Now()
	_, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, "new.db"), URL: url, MaxRetryTime: budget})
	took := time.Since(start)
	if !errors.Is(err, syncdb.ErrUnreachable) || took > budget+slack {
		t.Fatalf("Open of a dead server: %v after %v (want ErrUnreachable within %v)", err, took, budget)
	}
	t.Logf("Open failed after %v: %v", took.Round(time.Millisecond), err)
	noPrefix(t, "Open", err)
	// But its PATH-lock: unlinking it would break the lock (see
	// TestFailedOpenRemovesItsFilesUnderTheLock).
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "new.db-lock" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("a failed Open left files: %v, want only new.db-lock", names)
	}

	// A name that does not resolve fails at once.
	start = time.Now()
	_, err = syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, "dns.db"), URL: "http://no-such-host.invalid", MaxRetryTime: budget})
	if !errors.Is(err, syncdb.ErrUnreachable) || time.Since(start) > budget+slack {
		t.Fatalf("Open of an unknown host: %v after %v", err, time.Since(start))
	}

	// An existing replica whose server went away.
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	db := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: hs.URL, MaxRetryTime: budget})
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	srv.BeginShutdown()
	hs.Close()
	srv.Close()
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"Pull", func() error { _, err := db.Pull(ctx); return err }},
		{"Push", func() error { return db.Push(ctx) }},
		{"Sync", func() error { return db.Sync(ctx) }},
	} {
		start := time.Now()
		err := op.run()
		took := time.Since(start)
		if !errors.Is(err, syncdb.ErrUnreachable) || took > budget+slack {
			t.Errorf("%s against a stopped server: %v after %v (want ErrUnreachable within %v)", op.name, err, took, budget)
		}
		t.Logf("%s failed after %v", op.name, took.Round(time.Millisecond))
		noPrefix(t, op.name, err)
	}
	// Local reads and writes go on.
	mustExec(t, db, "INSERT INTO t VALUES(1)")
	if got := rows(t, db, "SELECT count(*) FROM t"); got != "1" {
		t.Fatalf("local read: %q", got)
	}
}

// Case 8: a wrong token is ErrUnauthorized, at once, and says so.
func TestUnauthorized(t *testing.T) {
	// Only a read-write token may create a database: this one exists.
	url := serverWith(t, server.Config{AuthTokens: []string{"right"}, ReadTokens: []string{"reader"}, Databases: []string{"default"}})
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Now()
	_, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, AuthToken: "wrong"})
	if !errors.Is(err, syncdb.ErrUnauthorized) || errors.Is(err, syncdb.ErrUnreachable) || time.Since(start) > 5*time.Second {
		t.Fatalf("wrong token: %v after %v", err, time.Since(start))
	}
	noPrefix(t, "Open", err)
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("message does not name the status: %v", err)
	}
	// A read-only token may pull but not push: 403 is ErrUnauthorized too.
	db := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url, AuthToken: "reader"})
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	if err := db.Push(ctx); !errors.Is(err, syncdb.ErrUnauthorized) {
		t.Fatalf("push with a read-only token: %v", err)
	}
}
