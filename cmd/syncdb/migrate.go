package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/syncdb/syncdb/server"
	serverhistory "github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/server/pgstore"
)

const migrateHelp = `Copies every database of a single-node data directory, with its whole
retained history and its identity, into the PostgreSQL store of a cluster
(syncdb serve --store): clients keep their revisions and go on pulling
incrementally from any node. Stop the single-node server first. A database
the store already has is left alone (and reported).

Flags:
  --store postgres://...   the cluster's store (default $SYNCDB_STORE)
  --data DIR               the single-node data directory (default ./syncdb-data)
`

func runMigrate(c *cli, cmd *command, args []string) int {
	fs := flag.NewFlagSet("migrate-store", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	store := fs.String("store", c.getenv("SYNCDB_STORE"), "the cluster's `postgres://...` store (default $SYNCDB_STORE)")
	data := fs.String("data", "./syncdb-data", "the single-node data `DIR` to copy")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.printHelp(c.stdout)
			return 0
		}
		return 2
	}
	if *store == "" || fs.NArg() > 0 {
		fmt.Fprintln(c.stderr, "usage: syncdb migrate-store --store postgres://... --data DIR")
		return 2
	}
	if err := migrateStore(context.Background(), *store, *data, c.stdout); err != nil {
		fmt.Fprintln(c.stderr, "syncdb migrate-store:", err)
		return 1
	}
	return 0
}

// migrateStore copies the databases under data into the store.
func migrateStore(ctx context.Context, store, data string, out io.Writer) error {
	entries, err := os.ReadDir(data)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(data, e.Name(), "history.sqlite")); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("no databases in %s", data)
	}
	// Opening every database through the server records any commit still
	// only in a WAL (and takes the data directory's lock: the single-node
	// server must not run).
	log := slog.New(slog.DiscardHandler)
	srv, err := server.New(server.Config{DataDir: data, NoAutoCreate: true, Databases: names, MaintenanceInterval: -1, Logger: log})
	if err != nil {
		return err
	}
	if err := srv.Close(); err != nil {
		return err
	}
	cluster, err := pgstore.Open(ctx, pgstore.Config{URL: store, Advertise: "http://migrate-store.invalid", Logger: log})
	if err != nil {
		return err
	}
	defer cluster.Close()
	var skipped int
	for _, name := range names {
		start := time.Now()
		h, err := serverhistory.Open(filepath.Join(data, name, "history.sqlite"), "")
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		err = cluster.Import(ctx, name, h)
		latest := h.Latest()
		h.Close()
		switch {
		case errors.Is(err, pgstore.ErrDatabaseExists):
			fmt.Fprintf(out, "%s: already in the store, left alone\n", name)
			skipped++
			continue
		case err != nil:
			return err
		}
		fmt.Fprintf(out, "%s: copied revisions up to %d (%d pages) in %v\n", name, latest.Seq, latest.DBSize, time.Since(start).Round(time.Millisecond))
	}
	if skipped > 0 {
		fmt.Fprintf(out, "%d of %d databases were in the store already\n", skipped, len(names))
	}
	return nil
}
