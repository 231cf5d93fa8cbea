package dbactor_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
)

// The database actor's contract with its callers (the facade and the sync
// actor), on a real SQLite file: a local replica that has not met a server
// yet, as the facade creates one without a URL.

type local struct {
	path   string
	sys    *actors.System
	db     dbactor.Handle
	writer *dbactor.Writer
}

type noReaders struct{} // the gate of a replica without read connections

func (noReaders) Close() {}
func (noReaders) Open()  {}

// openLocal opens (creating if new) the local replica at path.
func openLocal(t *testing.T, path string) *local {
	t.Helper()
	return openLocalFS(t, path, nil)
}

// openLocalFS is openLocal with the actor's files (not SQLite's) on fs.
func openLocalFS(t *testing.T, path string, fs fsx.FS) *local {
	t.Helper()
	ctx := t.Context()
	l := &local{path: path, sys: actors.NewSystem(actors.Options{Name: filepath.Base(path), OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})}
	t.Cleanup(l.sys.Stop)
	meta, err := metaactor.Spawn(l.sys, fsx.OS, path+"-info")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Update(ctx, func(m *messages.Meta) error {
		if m.ClientUniqueID == "" {
			m.ClientUniqueID, m.SavedConfiguration = "c1", &messages.SavedConfig{}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if l.db, l.writer, err = dbactor.Spawn(dbactor.Config{Path: path, ClientID: "c1", Sys: l.sys, Meta: meta, Gate: noReaders{}, FS: fs}); err != nil {
		t.Fatal(err)
	}
	if err := l.db.Open(ctx, &messages.OpenDB{}); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *local) exec(t *testing.T, q string) error {
	t.Helper()
	_, err := l.writer.Exec(t.Context(), q, nil)
	return err
}

func (l *local) pending(t *testing.T, m *messages.PendingChanges) messages.Pending {
	t.Helper()
	p, err := l.db.PendingChanges(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// describe prints changes as "id:txn:op:key".
func describe(cs []change.Change) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%d:%d:%v:%v", c.ID, c.Txn, c.Op, change.Key(c))
	}
	return strings.Join(parts, " ")
}

// Every local write transaction's changes are captured with it, in order,
// one transaction id for all of a transaction's changes; a transaction that
// fails captures nothing. PendingChanges hands them over in batches of
// whole transactions (Limit is passed only at a transaction's end), Peek
// just the first.
func TestPendingWholeTransactions(t *testing.T) {
	l := openLocal(t, filepath.Join(t.TempDir(), "a.db"))
	for _, q := range []string{
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v)",
		"INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
		"UPDATE t SET v = 'x' WHERE id = 1",
		"DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (4, 'd')",
	} {
		if err := l.exec(t, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := l.exec(t, "INSERT INTO t VALUES (5, 'e'); INSERT INTO t VALUES (1, 'dup')"); err == nil {
		t.Fatal("a transaction with a failing statement committed")
	}
	all := l.pending(t, &messages.PendingChanges{})
	const want = "1:1:schema:[] 2:2:insert:[1] 3:2:insert:[2] 4:2:insert:[3] 5:5:update:[1] 6:6:delete:[2] 7:6:insert:[4]"
	if got := describe(all.Changes); got != want || all.More {
		t.Fatalf("the change log:\n got %s (more %v)\nwant %s", got, all.More, want)
	}

	var batches []string
	after := int64(0)
	for {
		p := l.pending(t, &messages.PendingChanges{After: after, Limit: 2})
		if len(p.Changes) == 0 {
			break
		}
		batches = append(batches, describe(p.Changes))
		after = p.Changes[len(p.Changes)-1].ID
		if !p.More {
			break
		}
	}
	// Limit 2: the first transaction (1 change) is short of it, so the
	// second (3 changes) joins it whole; the third and fourth likewise.
	wantBatches := []string{"1:1:schema:[] 2:2:insert:[1] 3:2:insert:[2] 4:2:insert:[3]", "5:5:update:[1] 6:6:delete:[2] 7:6:insert:[4]"}
	if strings.Join(batches, " | ") != strings.Join(wantBatches, " | ") {
		t.Fatalf("batches of 2:\n got %q\nwant %q", batches, wantBatches)
	}
	if p := l.pending(t, &messages.PendingChanges{Peek: true}); len(p.Changes) != 1 || p.Changes[0].ID != 1 || !p.More {
		t.Fatalf("peek: %s (more %v)", describe(p.Changes), p.More)
	}
}

// RecordPush drops the changes up to the id it names: Unpushed lists those
// after, with Recorded (a push of this generation is on record), also
// after a reopen.
func TestRecordPush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	l := openLocal(t, path)
	for _, q := range []string{"CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (2, 'b')"} {
		if err := l.exec(t, q); err != nil {
			t.Fatal(err)
		}
	}
	if p := l.pending(t, &messages.PendingChanges{Unpushed: true}); len(p.Changes) != 3 {
		t.Fatalf("before any push: %s", describe(p.Changes))
	}
	gen := l.pending(t, &messages.PendingChanges{}).PullGen
	if err := l.db.RecordPush(t.Context(), gen, 2, 1); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		p := l.pending(t, &messages.PendingChanges{Unpushed: true})
		if got := describe(p.Changes); got != "3:3:insert:[2]" || !p.Recorded {
			t.Fatalf("%s: unpushed %s (recorded %v), want only change 3", when, got, p.Recorded)
		}
	}
	check("after the push")
	l.sys.Stop()
	l = openLocal(t, path)
	check("after a reopen")
	if got := l.pending(t, &messages.PendingChanges{After: 0}); describe(got.Changes) != "3:3:insert:[2]" {
		t.Fatalf("the change log after the push still has %s", describe(got.Changes))
	}
}
