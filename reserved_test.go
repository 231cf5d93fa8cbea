package syncdb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// A server database carries a _syncdb_local table (an older server let a
// remote writer make it; here it is written straight into the server's
// file) whose applied_revision is the revision of the server's next
// commit. A replica with an unpushed insert pulls that revision: T1 brings
// the forged table, and the replica must still run T2 (it decides by its
// own WAL, not by the server's rows), keep the insert and push it; T2
// drops the server's _syncdb_ objects, so none of their rows is taken.
func TestPullForgedAppliedRevision(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := serverWith(t, server.Config{DataDir: dir})
	a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, a, "INSERT INTO t VALUES(1, 'local')") // not pushed
	p, err := rawclient.Pull(url, &syncpb.PullUpdatesReqProtoBody{})
	if err != nil {
		t.Fatal(err)
	}
	rev := p.Header.ServerRevision
	i := strings.LastIndexByte(rev, '-')
	seq, _ := strconv.Atoi(rev[i+1:])
	next := fmt.Sprintf("%s-%d", rev[:i], seq+2) // the forged commit, then w
	// One transaction (the server's next commit), then a remote one that
	// makes the server take it in: revision next.
	forgeServerDB(t, dir, "BEGIN; CREATE TABLE _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID; "+
		"INSERT INTO _syncdb_local VALUES('applied_revision', '"+next+"'), ('forged', 1); "+
		"CREATE TABLE _SYNCDB_other(a); CREATE VIEW _syncdb_v AS SELECT 1; COMMIT")
	if _, err := rawclient.Exec(url, "CREATE TABLE w(x)"); err != nil {
		t.Fatal(err)
	}
	if p, err = rawclient.Pull(url, &syncpb.PullUpdatesReqProtoBody{}); err != nil || p.Header.ServerRevision != next {
		t.Fatalf("the server is at %v (%v), want %s", p.Header.ServerRevision, err, next)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|local" {
		t.Fatalf("after the pull: t %q, want the unpushed local row", got)
	}
	// Nothing of the server's local-looking tables is left: T2 dropped
	// them before it wrote its own.
	if got := rows(t, a, "SELECT name FROM sqlite_schema WHERE lower(name) LIKE '\\_syncdb\\_%' ESCAPE '\\' AND name NOT IN ('_syncdb_changes', '_syncdb_local', '_syncdb_conflicts') ORDER BY name"); got != "" {
		t.Errorf("the server's objects in the replica: %q", got)
	}
	if got := rows(t, a, "SELECT key FROM _syncdb_local WHERE key = 'forged'"); got != "" {
		t.Errorf("the server's _syncdb_local rows in the replica: %q", got)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := rawclient.Exec(url, "SELECT id, v FROM t")
	if err != nil || !strings.Contains(string(out), "local") {
		t.Fatalf("the server's t after the push: %s %v", out, err)
	}
}

// A server database carries a _syncdb_local table with a 'synced_base'
// record (written straight into the server's file, as a compromised server
// would serve it), and a replica with an unpushed insert is killed right
// after its pull's T1: its database then holds the server's pages, forged
// record included, while its journal says the pull is pending. The next
// open must not take that record for the pull's own (reconcileBase): a
// malformed one made every open fail, a well-formed one was written into
// -info. Recovery finishes the pull from the journal and the WAL instead.
func TestPullKilledAfterT1ForgedSyncedBase(t *testing.T) {
	for name, record := range map[string]string{
		"malformed": `{"revision": `,
		"forged":    `{"revision":"forged","base":{"db_size":1},"pulled":{"Salt1":1,"Salt2":2,"Frame":3},"pull_time":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			url := serverWith(t, server.Config{DataDir: dir})
			path := closedReplica(t, url, t.TempDir(), "local") // row 1, not pushed
			forgeServerDB(t, dir, "CREATE TABLE _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID; "+
				"INSERT INTO _syncdb_local VALUES('synced_base', ?)", record)
			if _, err := rawclient.Exec(url, "INSERT INTO t VALUES(2, 'remote')"); err != nil { // the server takes it in
				t.Fatal(err)
			}

			stoppedPull(t, path, "pull.t1")

			a, err := syncdb.Open(ctx, syncdb.Config{Path: path})
			if err != nil {
				t.Fatalf("the open after the kill: %v", err)
			}
			t.Cleanup(func() { a.Close() })
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote" {
				t.Fatalf("after the reopen: %q", got)
			}
			if got := rows(t, a, "SELECT value FROM _syncdb_local WHERE key = 'synced_base'"); strings.Contains(got, "forged") || !strings.Contains(got, `"revision"`) {
				t.Errorf("the recorded base after the reopen: %q", got)
			}
			m, err := metaactor.Load(fsx.OS, path+"-info")
			if err != nil {
				t.Fatal(err)
			}
			if r := m.SyncedRevision; r != nil && r.Revision == "forged" {
				t.Errorf("-info took the server's record: %+v", m.SyncDB)
			}
			st, err := a.Stats(ctx)
			if err != nil || st.Revision == "forged" || st.CDCOperations != 1 {
				t.Fatalf("stats after the reopen: %+v %v", st, err)
			}
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := rawclient.Exec(url, "SELECT id, v FROM t ORDER BY id")
			if err != nil || !strings.Contains(string(out), "local") {
				t.Fatalf("the server's t after the push: %s %v", out, err)
			}
		})
	}
}

// A server database carries _syncdb_local (with a 'cloned' flag and a
// 'synced_base', malformed or well-formed) and a _syncdb_changes of other
// columns (written straight into its file, as a compromised server would
// serve them). A replica bootstrapped from it, whole or partial, must not
// take them for its own: they made it a copy (ErrClientCloned at its
// first push), failed every write ("table _syncdb_changes has no column
// named ..."), and the first open read the forged 'synced_base' as its
// last pull (malformed: the open failed; well-formed: -info took its
// revision, and every pull failed). Its first open drops them, durably,
// before it reads them, also when a crash stops it right after the drop
// (bootstrap.dropped, Fresh still set), and a reopen keeps the replica's
// own tables.
func TestBootstrapDropsServerSyncdbTables(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes")
	}
	for _, tc := range []struct {
		partial       bool
		record        string
		killAfterDrop bool
	}{
		{false, "malformed", false}, {false, "forged", false}, {false, "forged", true},
		{true, "malformed", false}, {true, "forged", false}, {true, "malformed", true},
	} {
		t.Run(fmt.Sprintf("partial=%v %s kill=%v", tc.partial, tc.record, tc.killAfterDrop), func(t *testing.T) {
			record := map[string]string{
				"malformed": `{"revision": `,
				"forged":    `{"revision":"forged","base":{"db_size":1},"pulled":{"Salt1":1,"Salt2":2,"Frame":3},"pull_time":1}`,
			}[tc.record]
			ctx := context.Background()
			dir := t.TempDir()
			url := serverWith(t, server.Config{DataDir: dir})
			a := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url})
			mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			mustExec(t, a, "INSERT INTO t VALUES(1, 'a')")
			if err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}
			forgeServerDB(t, dir, "CREATE TABLE _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID; "+
				"INSERT INTO _syncdb_local VALUES('cloned', 'forged'), ('forged', 1), ('synced_base', ?); "+
				"CREATE TABLE _syncdb_changes(change_id INTEGER PRIMARY KEY, txn INTEGER, record BLOB)", record)
			if _, err := rawclient.Exec(url, "INSERT INTO t VALUES(2, 'remote')"); err != nil { // the server takes it in
				t.Fatal(err)
			}
			cfg := syncdb.Config{Path: filepath.Join(t.TempDir(), "b.db"), URL: url}
			if tc.partial {
				cfg.Partial = &syncdb.PartialSync{PrefixBytes: 4096}
			}
			if tc.killAfterDrop {
				// A process: a failed Open in this one removes the new replica.
				runKilled(t, workerCmd("W_PATH="+cfg.Path, "W_URL="+url,
					"W_OPEN_KILL_AT=bootstrap.dropped", fmt.Sprintf("W_PREFIX=%v", tc.partial)), "bootstrap.dropped")
				m, err := metaactor.Load(fsx.OS, cfg.Path+"-info")
				if err != nil || !m.SyncDB.Fresh {
					t.Fatalf("-info after the kill: Fresh %v, %v", m != nil && m.SyncDB.Fresh, err)
				}
			}
			b, err := syncdb.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := rows(t, b, "SELECT key FROM _syncdb_local WHERE key IN ('cloned', 'forged') OR value LIKE '%forged%' OR value = '{\"revision\": '"); got != "" {
				t.Errorf("the server's _syncdb_local rows in the new replica: %q", got)
			}
			m, err := metaactor.Load(fsx.OS, cfg.Path+"-info")
			if err != nil {
				t.Fatal(err)
			}
			if r := m.SyncedRevision; r == nil || r.Revision == "forged" || m.SyncDB.Base.DBSize < 2 || m.SyncDB.Fresh {
				t.Errorf("-info after the first open: %+v %+v", m.SyncedRevision, m.SyncDB)
			}
			if _, err := b.Exec(ctx, "INSERT INTO t VALUES(3, 'b')"); err != nil {
				t.Fatalf("a write on the new replica: %v", err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			// A reopen keeps what the replica wrote since (its change log
			// is its own now), and it syncs.
			b = open(t, cfg)
			mustExec(t, b, "INSERT INTO t VALUES(4, 'b again')")
			if err := b.Sync(ctx); err != nil {
				t.Fatalf("a sync of the new replica: %v", err)
			}
			if _, err := a.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, a, "SELECT id FROM t ORDER BY id"); got != "1\n2\n3\n4" {
				t.Fatalf("the other replica: %q", got)
			}
		})
	}
}

// killedOpen (a crash worker, see TestMain) bootstraps W_PATH from W_URL
// (a 4 KiB prefix if W_PREFIX is true) and dies by SIGKILL at the
// failpoint W_OPEN_KILL_AT of that first open.
func killedOpen() error {
	path, point := os.Getenv("W_PATH"), os.Getenv("W_OPEN_KILL_AT")
	dieAt(path, point)
	cfg := syncdb.Config{Path: path, URL: os.Getenv("W_URL")}
	if os.Getenv("W_PREFIX") == "true" {
		cfg.Partial = &syncdb.PartialSync{PrefixBytes: 4096}
	}
	db, err := syncdb.Open(context.Background(), cfg)
	if err == nil {
		db.Close()
	}
	return fmt.Errorf("the open returned (%v): the failpoint was not hit", err)
}
