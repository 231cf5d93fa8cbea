package syncdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/server"
)

// otherProgram runs SQL on a closed replica's files the way sqlite3 does:
// the sqlite3 command if it is installed, else a plain SQLite connection
// (readOnly: sqlite3 -readonly; otherwise a read-write connection, which
// checkpoints the WAL into the database file when it closes).
func otherProgram(t *testing.T, path, query string, readOnly bool) {
	t.Helper()
	if bin, err := exec.LookPath("sqlite3"); err == nil {
		args := []string{path, query}
		if readOnly {
			args = []string{"-readonly", path, query}
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("sqlite3 %q: %v\n%s", args, err, out)
		}
		return
	}
	dsn := "file:" + path
	if readOnly {
		dsn += "?mode=ro"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query); err != nil {
		t.Fatal(err)
	}
}

// dbURL is the URL of the server's database named after name.
func dbURL(url, name string) string {
	return url + "/db/" + strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '.' {
			return '_'
		}
		return r
	}, name)
}

// external prepares a closed replica with pushed rows, a checkpoint, and
// unpushed rows both in the database file and in the WAL. Closing empties
// the WAL into the file (as SQLite does); crashed leaves the files as a
// process that died before closing does, with the last rows in the WAL.
func external(t *testing.T, url, path string, crashed bool) {
	t.Helper()
	ctx := context.Background()
	db := open(t, syncdb.Config{Path: path, URL: url})
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, db, "INSERT INTO t(v) VALUES('pushed')")
	if err := db.Push(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "INSERT INTO t(v) VALUES('unpushed, checkpointed')")
	if err := db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "INSERT INTO t(v) VALUES('unpushed, in the WAL')")
	closeAs(t, db, path, crashed)
}

// closeAs closes the replica db at path; crashed then puts its files back
// as they were before Close, in place: as a process that died leaves them,
// with the WAL's frames (Close empties the WAL into the file).
func closeAs(t *testing.T, db *syncdb.DB, path string, crashed bool) {
	t.Helper()
	snapshot := map[string][]byte{}
	for _, f := range replicaFiles(t, path) {
		if !strings.HasSuffix(f, "-lock") {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			snapshot[f] = data
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if wal := fileSize(t, path+"-wal"); wal != 0 {
		t.Fatalf("Close left %d bytes in the WAL", wal)
	}
	if !crashed {
		return
	}
	for f, data := range snapshot {
		fd, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fd.Write(data); err != nil {
			t.Fatal(err)
		}
		fd.Close()
	}
}

// Case 5: external modification is judged by content. Touching the files,
// copying them (plainly, new times), reading them with sqlite3 -readonly,
// or with a read-write sqlite3 after syncdb closed them (its checkpoint at
// close finds the WAL empty) is harmless; a read-write sqlite3 that
// checkpoints WAL frames a crashed process left, or a real write, is
// detected, local reads keep working, the error says what changed
// and what to run, and Config.Recover (syncdb recover) rebuilds the
// replica keeping the changes made through syncdb.
func TestExternalModificationJudgedByContent(t *testing.T) {
	url := newServer(t)
	ctx := context.Background()
	dir := t.TempDir()

	harmless := map[string]func(path string){
		"touch": func(path string) {
			later := time.Now().Add(time.Hour)
			for _, f := range []string{path, path + "-wal", path + "-info"} {
				os.Chtimes(f, later, later)
			}
		},
		"sqlite3 -readonly":               func(path string) { otherProgram(t, path, "SELECT count(*) FROM t", true) },
		"sqlite3 read-write only reading": func(path string) { otherProgram(t, path, "SELECT count(*) FROM t", false) },
		"cp of the file": func(path string) {
			exec.Command("cp", path, path+".copy").Run()
			otherProgram(t, path+".copy", "SELECT 1", true)
		},
	}
	for name, action := range harmless {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".db")
			external(t, dbURL(url, name), path, false)
			action(path)
			db := open(t, syncdb.Config{Path: path})
			mustExec(t, db, "INSERT INTO t(v) VALUES('after')")
			if err := db.Sync(ctx); err != nil {
				t.Fatalf("sync after %s: %v", name, err)
			}
		})
	}

	// A plain copy of every file (new times) is a working replica too.
	t.Run("cp of all files", func(t *testing.T) {
		path := filepath.Join(dir, "orig.db")
		external(t, dbURL(url, "orig"), path, false)
		os.Mkdir(filepath.Join(dir, "plaincopy"), 0o755)
		cp := filepath.Join(dir, "plaincopy", "orig.db")
		for _, f := range replicaFiles(t, path) {
			if !strings.HasSuffix(f, "-lock") {
				if out, err := exec.Command("cp", f, cp+strings.TrimPrefix(f, path)).CombinedOutput(); err != nil {
					t.Fatalf("cp: %v %s", err, out)
				}
			}
		}
		db := open(t, syncdb.Config{Path: cp})
		if err := db.Sync(ctx); err != nil {
			t.Fatalf("sync of a plain copy: %v", err)
		}
	})

	harmful := map[string]struct {
		query   string
		crashed bool
	}{
		"sqlite3 read-write after a crash": {"SELECT count(*) FROM t", true},                    // checkpoints the WAL on close
		"a foreign write":                  {"INSERT INTO t(v) VALUES('not by syncdb')", false}, // and checkpoints
	}
	for name, h := range harmful {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".db")
			external(t, dbURL(url, name), path, h.crashed)
			query := h.query
			otherProgram(t, path, query, false)
			db := open(t, syncdb.Config{Path: path})
			// Local reads keep working.
			if got := rows(t, db, "SELECT count(*) FROM t WHERE v LIKE 'unpushed%'"); got != "2" {
				t.Fatalf("local read: %q", got)
			}
			_, err := db.Exec(ctx, "INSERT INTO t(v) VALUES('refused')")
			if !errors.Is(err, syncdb.ErrExternalModification) {
				t.Fatalf("write after %s: %v", name, err)
			}
			if _, err := db.SQL().ExecContext(ctx, "INSERT INTO t(v) VALUES('refused')"); !errors.Is(err, syncdb.ErrExternalModification) {
				t.Errorf("write through SQL() after %s: %v", name, err)
			}
			var n int
			if err := db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n < 3 {
				t.Errorf("read through SQL() after %s: %d %v", name, n, err)
			}
			msg := err.Error()
			for _, want := range []string{"WAL", "Local reads still work", "syncdb recover " + path, "2 unpushed changes"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the message lacks %q: %s", want, msg)
				}
			}
			noPrefix(t, "external", err)
			for _, op := range []func() error{func() error { return db.Push(ctx) }, func() error { _, err := db.Pull(ctx); return err }} {
				if err := op(); !errors.Is(err, syncdb.ErrExternalModification) {
					t.Errorf("sync after %s: %v", name, err)
				}
			}
			db.Close()

			db = open(t, syncdb.Config{Path: path, Recover: true})
			if got := rows(t, db, "SELECT v FROM t ORDER BY id"); got != "pushed\nunpushed, checkpointed\nunpushed, in the WAL" {
				t.Fatalf("after recovering: %q", got)
			}
			if err := db.Push(ctx); err != nil {
				t.Fatalf("push after recovering: %v", err)
			}
			mustExec(t, db, "INSERT INTO t(v) VALUES('works again')")
			if err := db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			other := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "other.db"), URL: dbURL(url, name)})
			if got := rows(t, other, "SELECT count(*) FROM t WHERE v IN ('unpushed, checkpointed', 'unpushed, in the WAL', 'works again')"); got != "3" {
				t.Fatalf("the server has %s of the 3 rows", got)
			}
			backups, _ := filepath.Glob(path + ".before-recover-*")
			leftovers, _ := filepath.Glob(path + ".recover*")
			if len(backups) != 1 || len(leftovers) != 0 {
				t.Errorf("old files kept in %v; leftovers %v", backups, leftovers)
			}
		})
	}
}

// A transaction too big for the page cache spills frames into the WAL
// before it commits; rolled back, it leaves them in the file, past the
// last commit. They are syncdb's own: the next write is not refused as a
// foreign one.
func TestRolledBackSpillIsNotForeign(t *testing.T) {
	ctx := context.Background()
	db := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	before, err := db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *syncdb.Tx) error {
		for i := 0; i < 1000; i++ { // about 4 MiB of pages: the cache holds 2 MiB
			if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(?, hex(randomblob(2000)))", i); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the transaction: %v", err)
	}
	after, err := db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.MainWALSize <= before.MainWALSize {
		t.Fatalf("the WAL did not grow (%d bytes, %d before): nothing spilled, the test tests nothing", after.MainWALSize, before.MainWALSize)
	}
	// Two writes: the second one's check compares with the size the first
	// commit left (the end of its frames is before the spilled ones).
	mustExec(t, db, "INSERT INTO t VALUES(1, 'after')")
	mustExec(t, db, "INSERT INTO t VALUES(2, 'after')")
	if got := rows(t, db, "SELECT id, v FROM t"); got != "1|after\n2|after" {
		t.Fatalf("rows: %q", got)
	}
}

// A pull killed right after its T1 (or after its T2, its journal not yet
// removed), then another program checkpoints the replica's WAL into the
// database file (sqlite3 does when it closes): the next open is detached
// without finishing the pull, the database file holding the server's pages
// (after T1) or the replayed ones (after T2). Config.Recover rebuilds the
// replica from the local state: after T1 that is the pull's journal (the
// database's _syncdb_* tables are the server's: recover failed with "no
// such table: _syncdb_local"; with a server that serves such tables,
// here written straight into its file, their empty change log would be
// taken for this replica's), after T2 the database, which records the
// pull as finished. Either way the unpushed row reaches the server once.
func TestRecoverPullPendingAfterExternalCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		point  string
		forged bool
	}{{"pull.t1", false}, {"pull.t1", true}, {"pull.done", false}} {
		t.Run(fmt.Sprintf("%s forged=%v", tc.point, tc.forged), func(t *testing.T) {
			ctx := context.Background()
			data := t.TempDir()
			url := serverWith(t, server.Config{DataDir: data})
			dir := t.TempDir()
			path := closedReplica(t, url, dir, "local") // row 1, not pushed
			if tc.forged {
				forgeServerDB(t, data, "CREATE TABLE _syncdb_changes(change_id INTEGER PRIMARY KEY, txn INTEGER, record BLOB); "+
					"CREATE TABLE _syncdb_local(key TEXT PRIMARY KEY, value) WITHOUT ROWID; "+
					"CREATE TABLE _syncdb_conflicts(id INTEGER PRIMARY KEY, time, revision, base, kind, table_name, remote, changes, error, new_key, resolved DEFAULT '', resolved_time); "+
					"INSERT INTO _syncdb_conflicts(id, time, revision, base, kind, table_name) VALUES(1, 0, 'r', 'b', 'insert-insert', 't')")
			}
			b := pushedReplica(t, url, dir, "b.db", "INSERT INTO t VALUES(2, 'remote')")
			stoppedPull(t, path, tc.point)
			if _, err := os.Stat(path + "-syncdb-replay"); err != nil {
				t.Fatalf("the pull's journal: %v", err)
			}
			otherProgram(t, path, "PRAGMA wal_checkpoint(TRUNCATE)", false)
			a := open(t, syncdb.Config{Path: path})
			if _, err := a.Exec(ctx, "INSERT INTO t VALUES(3, 'refused')"); !errors.Is(err, syncdb.ErrExternalModification) {
				t.Fatalf("a write after the checkpoint: %v, want ErrExternalModification", err)
			}
			if st, err := a.Stats(ctx); err != nil || st.CDCOperations != 1 || st.Conflicts != 0 {
				t.Fatalf("stats of the detached replica: %+v %v, want the unpushed insert", st, err)
			}
			if cs, err := a.Conflicts(ctx); err != nil || len(cs) != 0 {
				t.Fatalf("conflicts of the detached replica: %+v %v, want none", cs, err)
			}
			a.Close()
			a = open(t, syncdb.Config{Path: path, Recover: true})
			if got := rows(t, a, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote" {
				t.Fatalf("after recovering: %q", got)
			}
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := a.Stats(ctx); err != nil || st.CDCOperations != 0 || st.Conflicts != 0 {
				t.Fatalf("after a sync: %+v %v", st, err)
			}
			if _, err := b.Pull(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, b, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n2|remote" {
				t.Fatalf("the other replica: %q", got)
			}
		})
	}
}

// Another program's commit while syncdb has the replica open is a foreign
// write even when it does not change the WAL's size: written over frames
// past the log's end (a rolled-back transaction's spill here; the copied
// generation of a WAL SQLite reuses after a checkpoint in general). The
// check compares where the valid log ends, not the size.
func TestForeignWriteOverSpill(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	db := open(t, syncdb.Config{Path: path})
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	boom := errors.New("boom")
	if err := db.Tx(ctx, func(tx *syncdb.Tx) error {
		for i := 0; i < 10000; i++ { // spills: see TestRolledBackSpillIsNotForeign
			if _, err := tx.Exec(ctx, "INSERT INTO t VALUES(?, hex(randomblob(200)))", i); err != nil {
				return err
			}
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("the transaction: %v", err)
	}
	mustExec(t, db, "INSERT INTO t VALUES(1, 'after')")
	size := fileSize(t, path+"-wal")
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec("INSERT INTO t VALUES(2, 'foreign')"); err != nil {
		t.Fatal(err)
	}
	other.Close() // not the last connection: no checkpoint
	if got := fileSize(t, path+"-wal"); got != size {
		t.Fatalf("the foreign commit changed the WAL's size (%d, was %d): the test tests nothing", got, size)
	}
	_, err = db.Exec(ctx, "INSERT INTO t VALUES(3, 'after the foreign write')")
	if !errors.Is(err, syncdb.ErrExternalModification) {
		t.Fatalf("write after a foreign commit within the WAL's size: %v, want ErrExternalModification", err)
	}
}
