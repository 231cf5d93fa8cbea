// Package pgtest gives tests a fresh PostgreSQL database on the cluster that
// scripts/test.sh starts (scripts/pg.sh). Without one, the tests skip and say
// how to run them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the test cluster's connection URL.
const EnvURL = "SYNCDB_TEST_PG"

const howTo = "set " + EnvURL + " to a PostgreSQL URL to run it; ./scripts/test.sh starts a throw-away cluster and sets it (or: eval \"$(scripts/pg.sh start /tmp/pg)\")"

// URL returns the cluster URL, or skips the test.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		t.Skip("needs PostgreSQL: " + howTo)
	}
	return u
}

// NewDatabase creates an empty database for the test, dropped at its end,
// and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v (%s)", EnvURL, err, howTo)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Cluster is a private PostgreSQL cluster of one test, for tests that
// crash it (which would disturb every other test on the shared one).
type Cluster struct {
	URL string
	dir string
	ctl string
}

// NewCluster starts a private cluster with scripts/pg.sh (the one that
// started the shared cluster), stopped at the end of the test; it skips the
// test without one.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	URL(t)
	ctl := os.Getenv("SYNCDB_TEST_PGCTL")
	if ctl == "" {
		t.Skip("needs scripts/pg.sh (SYNCDB_TEST_PGCTL, set by scripts/test.sh and by eval \"$(scripts/pg.sh start DIR)\")")
	}
	// Under the shared cluster's directory, so that stopping that one
	// (scripts/test.sh does it on exit) stops this one too, should the
	// test binary die before its cleanup.
	dir, err := os.MkdirTemp(os.Getenv("SYNCDB_TEST_PGDIR"), "private-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ctl, "start", dir).Output()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start a private PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ctl, "stop", dir).CombinedOutput(); err != nil {
			t.Logf("stop the private PostgreSQL: %v\n%s", err, out)
		}
	})
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "export "+EnvURL+"="); ok {
			return &Cluster{URL: strings.Trim(v, "'"), dir: dir, ctl: ctl}
		}
	}
	t.Fatalf("scripts/pg.sh start printed no %s: %s", EnvURL, out)
	return nil
}

// Crash stops the cluster in immediate mode, keeps it down for down, and
// starts it again (recovery replays its WAL).
func (c *Cluster) Crash(t testing.TB, down time.Duration) {
	t.Helper()
	out, err := exec.Command(c.ctl, "restart", c.dir, fmt.Sprintf("%.1f", down.Seconds())).CombinedOutput()
	if err != nil {
		t.Fatalf("restart PostgreSQL: %v\n%s", err, out)
	}
}
