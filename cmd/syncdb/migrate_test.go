package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/pgtest"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/server/pgstore"
	"github.com/syncdb/syncdb/wire/syncpb"
)

func pipelineSQL(t *testing.T, base, sql string) {
	t.Helper()
	if _, err := rawclient.Exec(base, sql); err != nil {
		t.Fatal(err)
	}
}

func pullPages(t *testing.T, base string, req *syncpb.PullUpdatesReqProtoBody) (string, map[uint64][]byte) {
	t.Helper()
	p, err := rawclient.Pull(base, req)
	if err != nil {
		t.Fatal(err)
	}
	return p.Header.ServerRevision, p.Pages
}

// A single-node data directory copied into the store: a cluster node serves
// the same revisions (same strings, same pages), incremental pulls from a
// pre-migration revision work, and pushes go on from the latest revision.
func TestMigrateStore(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	data := t.TempDir()
	single, err := server.New(server.Config{DataDir: data, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(single.Handler())
	for _, db := range []string{"", "/db/other"} {
		pipelineSQL(t, hs.URL+db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
		pipelineSQL(t, hs.URL+db, "INSERT INTO t(v) VALUES ('before 1')")
	}
	old, oldPages := pullPages(t, hs.URL, &syncpb.PullUpdatesReqProtoBody{})
	pipelineSQL(t, hs.URL, "INSERT INTO t(v) SELECT 'before 2 ' || hex(randomblob(2000)) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)")
	latest, latestPages := pullPages(t, hs.URL, &syncpb.PullUpdatesReqProtoBody{})
	hs.Close()
	single.Close()

	var out bytes.Buffer
	if err := migrateStore(context.Background(), dsn, data, &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())

	// A cluster node on a fresh directory.
	node := httptest.NewUnstartedServer(nil)
	c, err := pgstore.Open(t.Context(), pgstore.Config{URL: dsn, Advertise: "http://" + node.Listener.Addr().String(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Cluster: c, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	node.Config.Handler = srv.Handler()
	node.Start()
	defer node.Close()

	for _, want := range []struct {
		rev   string
		pages map[uint64][]byte
	}{{old, oldPages}, {latest, latestPages}} {
		rev, pages := pullPages(t, node.URL, &syncpb.PullUpdatesReqProtoBody{ServerRevision: want.rev})
		if rev != want.rev || len(pages) != len(want.pages) {
			t.Fatalf("revision %s after the migration: %s, %d pages (want %d)", want.rev, rev, len(pages), len(want.pages))
		}
		for pg, b := range want.pages {
			if !bytes.Equal(pages[pg], b) {
				t.Fatalf("revision %s: page %d differs after the migration", want.rev, pg+1)
			}
		}
	}
	rev, pages := pullPages(t, node.URL, &syncpb.PullUpdatesReqProtoBody{ClientRevision: old})
	if rev != latest || len(pages) == 0 {
		t.Fatalf("incremental pull from %s: %s with %d pages", old, rev, len(pages))
	}
	pipelineSQL(t, node.URL, "INSERT INTO t(v) VALUES ('after')")
	next, _ := pullPages(t, node.URL, &syncpb.PullUpdatesReqProtoBody{ClientRevision: latest})
	if id, _, _ := strings.Cut(next, "-"); !strings.HasPrefix(latest, id+"-") || next == latest {
		t.Fatalf("revision after a push on the cluster: %s (before: %s)", next, latest)
	}
	if _, pages := pullPages(t, node.URL+"/db/other", &syncpb.PullUpdatesReqProtoBody{}); len(pages) == 0 {
		t.Fatal("database other was not migrated")
	}

	out.Reset()
	if err := migrateStore(context.Background(), dsn, data, &out); err != nil || !strings.Contains(out.String(), "already in the store") {
		t.Fatalf("second migration: %v\n%s", err, out.String())
	}
}
