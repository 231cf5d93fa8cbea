package syncdb_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// replicaFiles lists the files of the replica at path.
func replicaFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + "*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// copyReplica copies the files of a closed replica, as cp -a does (new
// files, times kept).
func copyReplica(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range replicaFiles(t, from) {
		if strings.HasSuffix(f, "-lock") {
			continue
		}
		src, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := src.Stat()
		dst, err := os.Create(to + strings.TrimPrefix(f, from))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
		os.Chtimes(to+strings.TrimPrefix(f, from), st.ModTime(), st.ModTime())
	}
}

// closedReplica makes a replica at dir/a.db with table t pushed and one
// row (1, v) not pushed yet, and closes it.
func closedReplica(t *testing.T, url, dir, v string) string {
	t.Helper()
	a := pushedReplica(t, url, dir, "a.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, ?)", v)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "a.db")
}

// Case 2: a copied replica (cp -a) takes a new client id by itself and
// pushes under it; the changes it inherited unpushed reach the server
// exactly once, whichever copy pushes first, and neither copy loses a
// write (both shared one client id, and the copy's pushes vanished).
func TestCopiedReplicaTakesANewClientID(t *testing.T) {
	for _, copyFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "copy pushes first", false: "original pushes first"}[copyFirst], func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			orig := filepath.Join(dir, "a.db")
			a := pushedReplica(t, url, dir, "a.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES(1, 'pushed before the copy')")
			mustExec(t, a, "INSERT INTO t VALUES(2, 'made before the copy, not pushed')")
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			os.Mkdir(filepath.Join(dir, "elsewhere"), 0o755)
			cp := filepath.Join(dir, "elsewhere", "a.db")
			copyReplica(t, orig, cp)

			a = open(t, syncdb.Config{Path: orig})
			b := open(t, syncdb.Config{Path: cp})
			mustExec(t, a, "INSERT INTO t VALUES(3, 'original, after the copy')")
			mustExec(t, a, "UPDATE t SET v = 'original changed it later' WHERE id = 2")
			mustExec(t, b, "INSERT INTO t VALUES(4, 'copy, after the copy')")
			first, second := a, b
			if copyFirst {
				first, second = b, a
			}
			for _, db := range []*syncdb.DB{first, second, first} {
				if err := db.Sync(ctx); err != nil {
					t.Fatalf("sync: %v", err)
				}
			}
			// Row 2 was pushed once: the original's later update stays
			// whatever the order (a second push of the copy's insert would
			// overwrite it when the copy pushes last).
			want := "1|pushed before the copy\n2|original changed it later\n3|original, after the copy\n4|copy, after the copy"
			for name, db := range map[string]*syncdb.DB{"original": a, "copy": b} {
				if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
				if cs := conflicts(t, db); len(cs) != 0 {
					t.Errorf("%s: conflicts %+v", name, cs)
				}
			}
			ids := rows(t, a, "SELECT count(*) FROM turso_sync_last_change_id WHERE client_id NOT LIKE '%:chain'")
			if ids != "2" {
				t.Errorf("%s client ids on the server, want 2 (the copy's own)", ids)
			}
		})
	}
}

// Case 2: a replica moved (or copied) to another machine takes a new id
// too, and pushes what it brought along.
func TestMovedReplica(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	dir := t.TempDir()
	path := closedReplica(t, url, dir, "brought along")
	moved, err := syncdb.Open(testhooks.With(ctx, testhooks.Hooks{Machine: "another machine"}), syncdb.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	if err := moved.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c := open(t, syncdb.Config{Path: filepath.Join(dir, "c.db"), URL: url})
	if got := rows(t, c, "SELECT v FROM t"); got != "brought along" {
		t.Fatalf("the server has %q", got)
	}
}

// Case 2, a copy syncdb cannot see at open (a cloned machine, a disk
// snapshot restored in place: same file, same machine): the push chain
// shows that the server's changes under this id are not this replica's.
// Push and pull refuse with ErrClientCloned instead of reporting success
// for changes the server would drop; the replica keeps its changes, and
// Config.Recover gives it an id of its own that pushes them.
func TestUndetectableCopyIsRefusedAndRecovered(t *testing.T) {
	for _, pullFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "push", true: "pull"}[pullFirst], func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "a.db")
			a := pushedReplica(t, url, dir, "a.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			a.Close()
			snapshot := snapshotFiles(t, path)
			// The machine runs on: a change is pushed.
			a = open(t, syncdb.Config{Path: path})
			mustExec(t, a, "INSERT INTO t VALUES(1, 'before the rollback')")
			if err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}
			a.Close()
			restoreFiles(t, path, snapshot) // in place: same files, same inodes
			a = open(t, syncdb.Config{Path: path})
			mustExec(t, a, "INSERT INTO t VALUES(2, 'after the rollback')") // the same change id as row 1's
			var err error
			if pullFirst {
				_, err = a.Pull(ctx)
			} else {
				err = a.Push(ctx)
			}
			if !errors.Is(err, syncdb.ErrClientCloned) {
				t.Fatalf("sync of a rolled-back replica: %v, want ErrClientCloned", err)
			}
			noPrefix(t, "cloned", err)
			if !strings.Contains(err.Error(), "syncdb recover") {
				t.Errorf("the error does not say what to run: %v", err)
			}
			if err := a.Push(ctx); !errors.Is(err, syncdb.ErrClientCloned) {
				t.Fatalf("a second push: %v", err)
			}
			if got := rows(t, a, "SELECT count(*) FROM t WHERE id = 2"); got != "1" {
				t.Fatal("the local change is gone")
			}
			a.Close()
			a = open(t, syncdb.Config{Path: path, Recover: true})
			if err := a.Sync(ctx); err != nil {
				t.Fatalf("sync after recovering: %v", err)
			}
			c := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "c.db"), URL: url})
			if got := rows(t, c, "SELECT id, v FROM t ORDER BY id"); got != "1|before the rollback\n2|after the rollback" {
				t.Fatalf("the server has %q", got)
			}
		})
	}
}

// A crash at each step of a copy's fork (the new id recorded; its marks
// committed on the server before the replica recorded it) loses nothing
// and pushes nothing twice: the next open or push finishes it.
func TestForkCrashes(t *testing.T) {
	for _, point := range []string{"fork.meta", "fork.settled"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			url := newServer(t)
			dir := t.TempDir()
			orig := closedReplica(t, url, dir, "inherited")
			os.Mkdir(filepath.Join(dir, "copy"), 0o755)
			cp := filepath.Join(dir, "copy", "a.db")
			copyReplica(t, orig, cp)

			fired := stopAt(t, point, cp)
			hooks := testhooks.With(ctx, testhooks.Hooks{OnPanic: func(error) {}})
			b, err := syncdb.Open(hooks, syncdb.Config{Path: cp})
			if err == nil {
				err = b.Push(ctx)
				b.Close()
			}
			if err == nil || !fired() {
				t.Fatalf("no crash at %s: %v", point, err)
			}
			b = open(t, syncdb.Config{Path: cp})
			mustExec(t, b, "INSERT INTO t VALUES(2, 'the copy')")
			if err := b.Sync(ctx); err != nil {
				t.Fatalf("sync after the crash: %v", err)
			}
			a := open(t, syncdb.Config{Path: orig})
			mustExec(t, a, "UPDATE t SET v = 'the original, later' WHERE id = 1")
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			for name, db := range map[string]*syncdb.DB{"original": a, "copy": b} {
				if got := rows(t, db, "SELECT id, v FROM t ORDER BY id"); got != "1|the original, later\n2|the copy" {
					t.Errorf("%s: %q", name, got)
				}
			}
		})
	}
}
