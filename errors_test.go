package syncdb_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/testhooks"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The errors a caller meets on these paths match the facade's sentinels
// (so a caller needs no internal package to tell them apart).
func TestFacadeSentinels(t *testing.T) {
	ctx := context.Background()
	t.Run("ErrNoConflict", func(t *testing.T) {
		db := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db")})
		err := db.ResolveConflict(ctx, 42, "local")
		if !errors.Is(err, syncdb.ErrNoConflict) {
			t.Fatalf("resolving a conflict that does not exist: %v", err)
		}
	})
	t.Run("ErrInvalidMeta", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a.db")
		if err := open(t, syncdb.Config{Path: path}).Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+"-info", []byte(`{"version": `), 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := syncdb.Open(ctx, syncdb.Config{Path: path})
		if err == nil {
			db.Close()
		}
		if !errors.Is(err, syncdb.ErrInvalidMeta) {
			t.Fatalf("opening with a truncated -info: %v", err)
		}
	})
	t.Run("ErrFailed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a.db")
		db, err := syncdb.Open(testhooks.With(ctx, testhooks.Hooks{OnPanic: func(error) {}}), syncdb.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(ctx, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		fired := stopAt(t, "write.committed", path) // the database actor panics there
		if _, err := db.Exec(ctx, "INSERT INTO t VALUES(1)"); err == nil || !fired() {
			t.Fatalf("no panic: %v", err)
		}
		_, err = db.Exec(ctx, "INSERT INTO t VALUES(2)")
		if !errors.Is(err, syncdb.ErrFailed) {
			t.Fatalf("a write after the database actor panicked: %v", err)
		}
	})
}

// pullProxy forwards to a real server, except that while answer is set it
// answers /pull-updates itself.
type pullProxy struct {
	rp     *httputil.ReverseProxy
	answer atomic.Pointer[http.HandlerFunc]
	fetch  atomic.Pointer[http.HandlerFunc] // for a page fetch (a pull with a page selector)
}

func newPullProxy(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &pullProxy{rp: httputil.NewSingleHostReverseProxy(u)}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	proxies.Store(hs.URL, p)
	return hs.URL
}

var proxies sync.Map // URL → *pullProxy

func answerPulls(url string, h http.HandlerFunc) {
	p, _ := proxies.Load(url)
	p.(*pullProxy).answer.Store(&h)
}

// proxyFetches makes the proxy at url answer page fetches with h.
func proxyFetches(url string, h http.HandlerFunc) {
	p, _ := proxies.Load(url)
	p.(*pullProxy).fetch.Store(&h)
}

func (p *pullProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := p.fetch.Load(); h != nil && strings.HasSuffix(r.URL.Path, "/pull-updates") {
		body, _ := io.ReadAll(r.Body)
		var req syncpb.PullUpdatesReqProtoBody
		if proto.Unmarshal(body, &req) == nil && len(req.ServerPagesSelector) > 0 {
			(*h)(w, r)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if h := p.answer.Load(); h != nil && strings.HasSuffix(r.URL.Path, "/pull-updates") {
		io.Copy(io.Discard, r.Body)
		(*h)(w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// The network's errors a caller meets in a Pull: a stream it cannot
// decode (ErrBadStream) and a status other than 200 (*HTTPError), each
// known by the facade's names alone.
func TestFacadeNetworkErrors(t *testing.T) {
	ctx := context.Background()
	url := newPullProxy(t, newServer(t))
	db := open(t, syncdb.Config{Path: filepath.Join(t.TempDir(), "a.db"), URL: url, MaxRetryTime: -1})

	answerPulls(url, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "br") // never asked for
		w.Write([]byte("not a stream"))
	})
	_, err := db.Pull(ctx)
	if !errors.Is(err, syncdb.ErrBadStream) {
		t.Fatalf("a pull answered in an unknown encoding: %v", err)
	}

	answerPulls(url, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such thing", http.StatusTeapot)
	})
	_, err = db.Pull(ctx)
	var he *syncdb.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusTeapot || !strings.Contains(he.Body, "no such thing") {
		t.Fatalf("a pull answered 418: %v (HTTPError %+v)", err, he)
	}
}

// A request that cannot finish an interrupted pull (its T1 committed, then
// SQLite's files failed every write, the process living on) is refused
// with ErrPullPending, which wraps why; once the disk works again, the next
// request finishes the pull.
func TestFacadePullPending(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	a := newLossyReplica(t, url)
	a.unpushedRow(false)
	pushedReplica(t, url, t.TempDir(), "b.db", "INSERT INTO u VALUES(2, 'remote')")
	var hit atomic.Bool
	failpoint.Set(func(name, owner string) {
		if name == "pull.t1" && strings.HasPrefix(owner, a.cfg.Path) && hit.CompareAndSwap(false, true) {
			a.rec.Crash()
		}
	})
	_, err := a.db.Pull(ctx)
	failpoint.Set(nil)
	if err == nil || !hit.Load() {
		t.Fatalf("the pull did not fail after T1: %v", err)
	}
	_, err = a.db.Exec(ctx, "INSERT INTO t VALUES(3, 'later')")
	if !errors.Is(err, syncdb.ErrPullPending) {
		t.Fatalf("a write while the pull cannot be finished: %v", err)
	}
	a.rec.Resume()
	mustExec(t, a.db, "INSERT INTO t VALUES(3, 'later')")
	if got := rows(t, a.db, "SELECT id, v FROM t ORDER BY id"); got != "1|local\n3|later" {
		t.Fatalf("t %q", got)
	}
	if got := rows(t, a.db, "SELECT id, v FROM u ORDER BY id"); got != "2|remote" {
		t.Fatalf("u %q", got)
	}
}

// A pull of a partial replica that must put back the base image of a page
// it never fetched (a free page a local write reused without reading it)
// fetches that page from the server; when that fetch fails the pull fails
// with ErrFetch (wrapping the server's answer).
func TestFacadeFetch(t *testing.T) {
	ctx := context.Background()
	target := newServer(t)
	serverExec(t, target, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	serverExec(t, target, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200)
		INSERT INTO t SELECT i, randomblob(3000) FROM n`)
	serverExec(t, target, `DELETE FROM t WHERE id > 10`) // free pages
	url := newPullProxy(t, target)
	dir := t.TempDir()
	p := open(t, syncdb.Config{Path: filepath.Join(dir, "p.db"), URL: url, MaxRetryTime: -1,
		Partial: &syncdb.PartialSync{PrefixBytes: 4 * 4096, SegmentSize: 4096}})
	mustExec(t, p, `INSERT INTO t VALUES(1000, randomblob(20000))`) // reuses free pages
	w := open(t, syncdb.Config{Path: filepath.Join(dir, "w.db"), URL: target})
	mustExec(t, w, `INSERT INTO t VALUES(2000, 'remote')`)
	if err := w.Push(ctx); err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	proxyFetches(url, func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		http.Error(w, "no pages today", http.StatusBadRequest)
	})
	_, err := p.Pull(ctx)
	if fetches.Load() == 0 {
		t.Fatalf("the pull fetched no page (the test proves nothing): %v", err)
	}
	if !errors.Is(err, syncdb.ErrFetch) {
		t.Fatalf("a pull whose page fetch fails: %v", err)
	}
	t.Logf("%d fetches refused; the pull: %v", fetches.Load(), err)
}
