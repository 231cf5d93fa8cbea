package syncdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testhooks"
	"github.com/syncdb/syncdb/server"
)

// newServer starts a server of its own (serverWith) and returns its URL.
func newServer(t testing.TB) string {
	t.Helper()
	return serverWith(t, server.Config{})
}

func open(t testing.TB, cfg syncdb.Config) *syncdb.DB {
	t.Helper()
	ctx := testhooks.With(context.Background(), testhooks.Hooks{OnPanic: func(err error) { t.Errorf("actor panic: %v", err) }})
	db, err := syncdb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

func mustExec(t *testing.T, db *syncdb.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// execAll runs each of qs on db (mustExec), in order.
func execAll(t *testing.T, db *syncdb.DB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		mustExec(t, db, q)
	}
}

func rows(t *testing.T, db *syncdb.DB, q string) string {
	t.Helper()
	rs, err := db.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, v := range vals {
			if b, ok := v.([]byte); ok {
				v = fmt.Sprintf("x'%x'", b)
			}
			parts = append(parts, fmt.Sprint(v))
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func TestPushPullRoundTrip(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url, ClientName: "a"})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
	mustExec(t, a, "INSERT INTO t VALUES(1, 'one'), (2, 'two')")
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url, ClientName: "b"})
	if got := rows(t, b, "SELECT * FROM t ORDER BY id"); got != "1|one\n2|two" {
		t.Fatalf("b after bootstrap: %q", got)
	}
	mustExec(t, b, "UPDATE t SET name = 'TWO' WHERE id = 2")
	mustExec(t, b, "DELETE FROM t WHERE id = 1")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	// A has an unpushed change while it pulls B's.
	mustExec(t, a, "INSERT INTO t VALUES(3, 'three')")
	changed, err := a.Pull(ctx)
	if err != nil || !changed {
		t.Fatalf("pull: %v %v", changed, err)
	}
	if got := rows(t, a, "SELECT * FROM t ORDER BY id"); got != "2|TWO\n3|three" {
		t.Fatalf("a after pull: %q", got)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, b, "SELECT * FROM t ORDER BY id"); got != "2|TWO\n3|three" {
		t.Fatalf("b after pull: %q", got)
	}
	// Empty pull.
	if changed, err := b.Pull(ctx); err != nil || changed {
		t.Fatalf("empty pull: %v %v", changed, err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, a, "SELECT * FROM t ORDER BY id"); got != "2|TWO\n3|three" {
		t.Fatalf("a after second pull: %q", got)
	}
	var ok string
	if err := a.QueryRow(ctx, "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity: %q %v", ok, err)
	}
}

func TestValuesBothWays(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	mustExec(t, a, "CREATE TABLE v(id INTEGER PRIMARY KEY, x)")
	blob := make([]byte, 300<<10)
	for i := range blob {
		blob[i] = byte(i * 31)
	}
	vals := []any{int64(-9223372036854775808), int64(9223372036854775807), 0.1, 1e308, -1.5, "héllo 🌍 世界 é", "", []byte{}, blob, nil, "a\x00b"}
	for i, v := range vals {
		mustExec(t, a, "INSERT INTO v VALUES(?, ?)", i, v)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url})
	check := func(db *syncdb.DB) {
		t.Helper()
		for i, want := range vals {
			var typ string
			var got any
			if err := db.QueryRow(ctx, "SELECT typeof(x), x FROM v WHERE id = ?", i).Scan(&typ, &got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", want, want) && !(want == nil && got == nil) {
				if wb, ok := want.([]byte); ok {
					if gb, ok := got.([]byte); ok && string(gb) == string(wb) {
						continue
					}
				}
				t.Errorf("value %d: got %s %T %.40v, want %T %.40v", i, typ, got, got, want, want)
			}
		}
		var n int
		db.QueryRow(ctx, "SELECT count(*) FROM v WHERE x IS NULL").Scan(&n)
		if n != 1 {
			t.Errorf("NULLs: %d", n)
		}
		db.QueryRow(ctx, "SELECT count(*) FROM v WHERE typeof(x) = 'blob' AND length(x) = 0").Scan(&n)
		if n != 1 {
			t.Errorf("empty blobs: %d", n)
		}
	}
	check(b)
	// And back: B rewrites every value, A pulls.
	mustExec(t, b, "UPDATE v SET x = x")
	mustExec(t, b, "INSERT INTO v VALUES(100, 'from b')")
	if err := b.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	check(a)
	if got := rows(t, a, "SELECT x FROM v WHERE id = 100"); got != "from b" {
		t.Fatalf("a: %q", got)
	}
}

// Readers see only consistent states while pulls apply large changes and
// rebase local ones: every transfer keeps the total.
func TestReadersSeeConsistentSnapshots(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	// The accounts are made on the server (a push would replay them one
	// by one); both replicas bootstrap.
	serverExec(t, url, "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL, pad TEXT)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO acct SELECT i, 100, hex(randomblob(100)) FROM n")
	serverExec(t, url, "CREATE TABLE marks(id INTEGER PRIMARY KEY)")
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})
	// As many readers as B has read connections: more would only queue.
	const readConns = 4
	b := open(t, syncdb.Config{Path: filepath.Join(dir, "b.db"), URL: url, ReadConns: readConns})
	const total = 2000 * 100

	// The readers read B only while B changes (its own transfers, its
	// pulls, its pushes): while A works they wait on paused, so that they
	// do not take the CPU from A's transfers for reads that cannot see
	// anything new. pulls is odd while B pulls; reads that overlap a pull
	// are counted, and the test fails if none did.
	stop := make(chan struct{})
	var paused sync.RWMutex
	var pulls, reads, duringPull atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for g := 0; g < readConns; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			maxMarks := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				var sum, n, marks int64
				paused.RLock()
				before := pulls.Load()
				err := b.QueryRow(ctx, "SELECT sum(bal), count(*), (SELECT count(*) FROM marks) FROM acct").Scan(&sum, &n, &marks)
				if after := pulls.Load(); before%2 == 1 || after != before {
					duringPull.Add(1)
				}
				paused.RUnlock()
				if err != nil {
					errs <- err
					return
				}
				if sum != total || n != 2000 {
					errs <- fmt.Errorf("inconsistent read: sum %d over %d rows", sum, n)
					return
				}
				// B's own writes, pushed or not, never disappear.
				if marks < maxMarks {
					errs <- fmt.Errorf("read went back in time: %d local marks, %d seen before", marks, maxMarks)
					return
				}
				maxMarks = marks
				reads.Add(1)
			}
		}()
	}
	transfer := func(db *syncdb.DB, from, to, amt int) {
		t.Helper()
		err := db.Tx(ctx, func(tx *syncdb.Tx) error {
			if _, err := tx.Exec(ctx, "UPDATE acct SET bal = bal - ?, pad = hex(randomblob(100)) WHERE id = ?", amt, from); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE acct SET bal = bal + ?, pad = hex(randomblob(100)) WHERE id = ?", amt, to)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 6; round++ {
		// A moves money across many pages and pushes.
		func() {
			paused.Lock()
			defer paused.Unlock()
			// 100 transfers reach every page of accounts 1-1000 (about 18
			// rows a page), as many as 300 did, at a third of the cost.
			for i := 0; i < 100; i++ {
				transfer(a, 1+(i*7+round)%1000, 1+(i*13+round*5)%1000, 1+i%9)
			}
			if err := a.Push(ctx); err != nil {
				t.Fatal(err)
			}
		}()
		// B has its own unpushed transfers, then pulls A's. (Last writer
		// wins per column, so concurrent transfers on the same account
		// would not keep the total: the two clients use disjoint accounts.)
		for i := 0; i < 20; i++ {
			transfer(b, 1001+(i*11+round)%1000, 1001+(i*17)%1000, 3)
			mustExec(t, b, "INSERT INTO marks VALUES(?)", round*100+i)
		}
		pulls.Add(1)
		_, err := b.Pull(ctx)
		pulls.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		if round%2 == 1 {
			if err := b.Push(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Pull(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if reads.Load() < 100 || duringPull.Load() == 0 {
		t.Fatalf("only %d reads ran, %d of them during a pull", reads.Load(), duringPull.Load())
	}
	// Converge and compare.
	for _, db := range []*syncdb.DB{b, a, b} {
		if err := db.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ra, rb := rows(t, a, "SELECT id, bal FROM acct ORDER BY id"), rows(t, b, "SELECT id, bal FROM acct ORDER BY id"); ra != rb {
		t.Fatal("replicas differ after sync")
	}
	t.Logf("%d consistent reads, %d of them during a pull", reads.Load(), duringPull.Load())
}
