// Package pgtest gives tests a fresh PostgreSQL database on the cluster that
// scripts/test.sh starts (scripts/pg.sh). Without one, the tests skip and say
// how to run them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
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

// Restart restarts the test cluster in immediate mode (a crash: recovery
// replays its WAL), or skips the test if the cluster was not started by
// scripts/pg.sh.
func Restart(t testing.TB) {
	t.Helper()
	ctl, data := os.Getenv("SYNCDB_TEST_PGCTL"), os.Getenv("SYNCDB_TEST_PGDATA")
	if ctl == "" || data == "" {
		t.Skip("needs a cluster started by scripts/pg.sh (SYNCDB_TEST_PGCTL, SYNCDB_TEST_PGDATA)")
	}
	out, err := exec.Command(ctl, "restart", data[:len(data)-len("/data")]).CombinedOutput()
	if err != nil {
		t.Fatalf("restart PostgreSQL: %v\n%s", err, out)
	}
}
