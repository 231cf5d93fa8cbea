package pageactor_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/btree"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/pageactor"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The page actor's contract, on real parts: a syncdb server on loopback,
// the real network actor, a database file with holes and a presence log
// as a partial bootstrap leaves them, in t.TempDir().

const pageSize = pageactor.PageSize

// fetchReq is one /pull-updates request the server saw.
type fetchReq struct {
	rev   string
	pages []uint32 // 1-based, sorted
}

// testServer is a real server on loopback whose /pull-updates requests
// are recorded and, while hold is set, held until it is closed.
type testServer struct {
	url     string
	srv     *server.Server
	mu      sync.Mutex
	reqs    []fetchReq
	hold    chan struct{} // nil: answer at once
	arrived chan struct{} // one value per request
}

func newServer(t *testing.T) *testServer {
	t.Helper()
	return newServerWith(t, server.Config{})
}

// newServerWith is newServer with cfg (DataDir and Logger filled in).
func newServerWith(t *testing.T, cfg server.Config) *testServer {
	t.Helper()
	cfg.DataDir, cfg.Logger = t.TempDir(), slog.New(slog.DiscardHandler)
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: s, arrived: make(chan struct{}, 100)}
	h := s.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/pull-updates") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			ts.record(t, body)
			ts.mu.Lock()
			hold := ts.hold
			ts.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.BeginShutdown()
		hs.Close()
		s.Close()
	})
	ts.url = hs.URL
	return ts
}

func (ts *testServer) record(t *testing.T, body []byte) {
	req := &syncpb.PullUpdatesReqProtoBody{}
	if err := proto.Unmarshal(body, req); err != nil {
		t.Errorf("pull request: %v", err)
		return
	}
	var pages []uint32
	if len(req.ServerPagesSelector) > 0 {
		bm, err := wire.DecodeSelector(req.ServerPagesSelector)
		if err != nil {
			t.Errorf("pull request selector: %v", err)
			return
		}
		for _, id := range bm.ToArray() {
			pages = append(pages, id+1)
		}
	}
	ts.mu.Lock()
	ts.reqs = append(ts.reqs, fetchReq{rev: req.ServerRevision, pages: pages})
	ts.mu.Unlock()
	select {
	case ts.arrived <- struct{}{}:
	default: // nobody counts them
	}
}

// requests returns the requests recorded since the last call.
func (ts *testServer) requests() []fetchReq {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r := ts.reqs
	ts.reqs = nil
	return r
}

// holdPulls makes /pull-updates requests wait; the returned func lets
// them (and later ones) through.
func (ts *testServer) holdPulls() (release func()) {
	ch := make(chan struct{})
	ts.mu.Lock()
	ts.hold = ch
	ts.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			ts.mu.Lock()
			ts.hold = nil
			ts.mu.Unlock()
			close(ch)
		})
	}
}

// waitArrived waits for n requests to reach the server.
func (ts *testServer) waitArrived(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-ts.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("no request reached the server")
		}
	}
}

func (ts *testServer) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := rawclient.Exec(ts.url, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// snapshot is the server's whole database at one revision.
type snapshot struct {
	rev    string
	dbSize uint32
	pages  map[uint32][]byte // 1-based
}

// newDatabase fills ts's database with rows rows of 300 random bytes
// (a table B-tree with an interior root) and returns its image.
func newDatabase(t *testing.T, ts *testServer, rows int) *snapshot {
	t.Helper()
	ts.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	ts.exec(t, fmt.Sprintf("INSERT INTO t WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %d) SELECT i, randomblob(300) FROM c", rows))
	p, err := rawclient.Pull(ts.url, &syncpb.PullUpdatesReqProtoBody{})
	if err != nil {
		t.Fatal(err)
	}
	s := &snapshot{rev: p.Header.ServerRevision, dbSize: uint32(p.Header.DbSize), pages: map[uint32][]byte{}}
	for id, data := range p.Pages {
		s.pages[uint32(id)+1] = data
	}
	if len(s.pages) != int(s.dbSize) || s.dbSize < 20 {
		t.Fatalf("the server's database: %d pages of %d", len(s.pages), s.dbSize)
	}
	ts.requests()
	for len(ts.arrived) > 0 {
		<-ts.arrived
	}
	return s
}

// replica is a partial replica's file and presence log with the page
// actor open on them.
type replica struct {
	path  string
	snap  *snapshot
	cfg   pageactor.Config
	pages *pageactor.Pages
	close func() // stops the actors and closes the page actor's files
}

// newReplica writes snap's pages present into a file of snap's size
// (holes elsewhere) and its presence log, as a partial bootstrap does, and
// opens the page actor on it with cfg (Path, Revision, DBSize, Sys, Net
// filled in; Net talks to url).
func newReplica(t *testing.T, url string, snap *snapshot, present []uint32, cfg pageactor.Config) *replica {
	t.Helper()
	r := &replica{path: filepath.Join(t.TempDir(), "r.db"), snap: snap}
	f, err := os.Create(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(snap.dbSize) * pageSize); err != nil {
		t.Fatal(err)
	}
	for _, pg := range present {
		if _, err := f.WriteAt(snap.pages[pg], int64(pg-1)*pageSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pageactor.Create(fsx.OS, layout.For(r.path), roaring.BitmapOf(present...)); err != nil {
		t.Fatal(err)
	}
	cfg.Path, cfg.Revision, cfg.DBSize = r.path, snap.rev, snap.dbSize
	r.cfg = cfg
	r.open(t, url)
	return r
}

// open starts an actor system of its own, a network actor talking to url
// (one attempt per request) and the page actor.
func (r *replica) open(t *testing.T, url string) {
	t.Helper()
	sys := actors.NewSystem(actors.Options{Name: "pages-test", OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})
	net, err := netactor.Spawn(sys, netactor.Config{URL: url, Retry: netactor.RetryPolicy{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg
	cfg.Sys, cfg.Net = sys, net
	p, err := pageactor.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.pages = p
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { sys.Stop(); p.Close() }) })
	r.close = func() {
		once.Do(func() {
			sys.Stop()
			if err := p.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

// page reads page pg of the file.
func (r *replica) page(t *testing.T, pg uint32) []byte {
	t.Helper()
	f, err := os.Open(r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, pageSize)
	if _, err := f.ReadAt(b, int64(pg-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	return b
}

// logged is the set of pages the presence log records, as a reopen reads it.
func (r *replica) logged(t *testing.T) []uint32 {
	t.Helper()
	bm, err := pageactor.LoadPresence(fsx.OS, r.path, r.snap.dbSize)
	if err != nil {
		t.Fatal(err)
	}
	return bm.ToArray()
}

// missing lists the pages the page actor reports missing.
func (r *replica) missing() []uint32 {
	var m []uint32
	for pg := uint32(1); pg <= r.snap.dbSize; pg++ {
		if r.pages.Missing(pg) {
			m = append(m, pg)
		}
	}
	return m
}

// without is 1..n except the pages of ex.
func without(n uint32, ex ...uint32) []uint32 {
	var out []uint32
	for pg := uint32(1); pg <= n; pg++ {
		if !slices.Contains(ex, pg) {
			out = append(out, pg)
		}
	}
	return out
}

// A missing page is fetched with the rest of its aligned segment, in one
// request for the segment's missing pages only, as of the bootstrap
// revision (the server changed every page since); the pages are then in
// the file as they were at the bootstrap, present, recorded in the
// presence log (a reopen finds them), and reading them again asks nothing.
func TestFetchSegmentOnce(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	ts.exec(t, "UPDATE t SET v = randomblob(300)") // every page of t changes after the bootstrap
	r := newReplica(t, ts.url, snap, []uint32{1, 6}, pageactor.Config{SegmentSize: 4 * pageSize})

	if err := r.pages.Fetch(7, ""); err != nil {
		t.Fatalf("fetch 7: %v", err)
	}
	reqs := ts.requests()
	if len(reqs) != 1 || !slices.Equal(reqs[0].pages, []uint32{5, 7, 8}) || reqs[0].rev != snap.rev {
		t.Fatalf("fetch of page 7 in segment 5-8 with 6 present asked %+v, want one request for [5 7 8] at %s", reqs, snap.rev)
	}
	for _, pg := range []uint32{5, 7, 8} {
		if !bytes.Equal(r.page(t, pg), snap.pages[pg]) {
			t.Errorf("page %d in the file is not the bootstrap revision's", pg)
		}
	}
	if got, want := r.missing(), without(snap.dbSize, 1, 5, 6, 7, 8); !slices.Equal(got, want) {
		t.Fatalf("missing after the fetch: %v, want %v", got, want)
	}
	if n, total := r.pages.Counts(); n != 5 || total != int64(snap.dbSize) {
		t.Fatalf("counts %d/%d, want 5/%d", n, total, snap.dbSize)
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 5, 6, 7, 8}) {
		t.Fatalf("the presence log records %v, want [1 5 6 7 8]", got)
	}
	for _, pg := range []uint32{5, 6, 7, 8, snap.dbSize + 1} {
		if err := r.pages.Fetch(pg, ""); err != nil {
			t.Fatalf("fetch of present page %d: %v", pg, err)
		}
	}
	if reqs := ts.requests(); len(reqs) != 0 {
		t.Fatalf("fetches of present pages (and one past the bootstrap's size) asked %+v", reqs)
	}

	r.close()
	r.open(t, ts.url)
	if got, want := r.missing(), without(snap.dbSize, 1, 5, 6, 7, 8); !slices.Equal(got, want) {
		t.Fatalf("missing after a reopen: %v, want %v", got, want)
	}
	if err := r.pages.Ensure(t.Context(), 8); err != nil {
		t.Fatal(err)
	}
	if reqs := ts.requests(); len(reqs) != 0 {
		t.Fatalf("after a reopen, a page fetched before asked %+v", reqs)
	}
}

// countWaits counts the reads of r's file that queued on a segment fetch
// already in flight (the failpoint pages.wait).
func countWaits(t *testing.T, r *replica) *atomic.Int64 {
	var n atomic.Int64
	failpoint.Set(func(name, owner string) {
		if name == "pages.wait" && owner == r.path {
			n.Add(1)
		}
	})
	t.Cleanup(func() { failpoint.Set(nil) })
	return &n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Concurrent reads of missing pages of one segment share one request: the
// first starts the segment's fetch, the others wait for it, and all of
// them return once it is written.
func TestConcurrentFetchesShareOneRequest(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	// A lost waiter fails in FetchTimeout rather than the default 30 s.
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FetchTimeout: 5 * time.Second})
	waits := countWaits(t, r)

	release := ts.holdPulls()
	defer release()
	readers := []uint32{5, 5, 6, 7, 8, 8, 6, 7}
	errs := make(chan error, len(readers))
	fetch := func(pg uint32) {
		go func() {
			if err := r.pages.Fetch(pg, ""); err != nil {
				errs <- fmt.Errorf("fetch %d: %w", pg, err)
				return
			}
			if !bytes.Equal(r.page(t, pg), snap.pages[pg]) {
				errs <- fmt.Errorf("page %d was not in the file when its fetch returned", pg)
				return
			}
			errs <- nil
		}()
	}
	fetch(readers[0])
	ts.waitArrived(t, 1)
	for _, pg := range readers[1:] {
		fetch(pg)
	}
	waitFor(t, "the readers to queue", func() bool { return waits.Load() == int64(len(readers)-1) })
	release()
	for range readers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if reqs := ts.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].pages, []uint32{5, 6, 7, 8}) {
		t.Fatalf("%d concurrent reads of segment 5-8 asked %+v, want one request for [5 6 7 8]", len(readers), reqs)
	}
	if got := r.pages.Fetches(); got != 1 {
		t.Fatalf("Fetches() = %d, want 1", got)
	}
}

// A fetch never writes over a page that became present while it was in
// flight: a page SQLite is about to write (WillWrite, from the VFS: its
// own write, or a checkpoint's copy of a page the checkpoint recorded with
// MarkPresent first) keeps what was written there; the fetch fills the
// segment's other holes.
func TestFetchNeverOverwritesPresent(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize})

	release := ts.holdPulls()
	defer release()
	errs := make(chan error, 1)
	go func() { errs <- r.pages.Fetch(5, "") }()
	ts.waitArrived(t, 1)

	f, err := os.OpenFile(r.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	local := map[uint32][]byte{6: bytes.Repeat([]byte{6}, pageSize), 7: bytes.Repeat([]byte{7}, pageSize)}
	if err := r.pages.WillWrite(6, 6); err != nil { // SQLite writing page 6 itself
		t.Fatal(err)
	}
	if err := r.pages.MarkPresent([]uint32{7}); err != nil { // a checkpoint about to copy page 7
		t.Fatal(err)
	}
	if err := r.pages.WillWrite(7, 7); err != nil { // and copying it
		t.Fatal(err)
	}
	for pg, b := range local {
		if _, err := f.WriteAt(b, int64(pg-1)*pageSize); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := <-errs; err != nil {
		t.Fatalf("fetch 5: %v", err)
	}
	if reqs := ts.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].pages, []uint32{5, 6, 7, 8}) {
		t.Fatalf("asked %+v, want one request for [5 6 7 8]", reqs)
	}
	for _, pg := range []uint32{6, 7} {
		if got := r.page(t, pg); !bytes.Equal(got, local[pg]) {
			t.Errorf("page %d, written locally during the fetch, was overwritten (now starts %x)", pg, got[:8])
		}
	}
	for _, pg := range []uint32{5, 8} {
		if !bytes.Equal(r.page(t, pg), snap.pages[pg]) {
			t.Errorf("hole %d not filled with the bootstrap's page", pg)
		}
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 5, 6, 7, 8}) {
		t.Fatalf("the presence log records %v, want [1 5 6 7 8]", got)
	}
}

// A checkpoint's MarkPresent of a page a fetch just wrote into its hole
// finds the page's bit set and records nothing itself: it may return only
// once the fetch's record of the page is durable, or SQLite's copy of the
// local page goes into the file while a crash can still leave the page out
// of the presence log, and the next open's fetch writes the bootstrap image
// over the checkpointed page. The fetch's log append fails here (EIO; a
// crash at that instant leaves the log the same) while the checkpoint's
// MarkPresent of page 6 waits: MarkPresent must not return before it, the
// failed fetch must leave its pages missing, and MarkPresent must then
// record page 6 itself, so that after a reopen a read of it keeps the
// local page.
func TestMarkPresentDuringFetchRecord(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	fs := fsx.NewCrashFS()
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FS: fs})
	log, err := filepath.Abs(layout.For(r.path).Present)
	if err != nil {
		t.Fatal(err)
	}

	errEIO := errors.New("injected EIO")
	var armed atomic.Bool
	armed.Store(true)
	marked := make(chan error, 1)
	var early bool
	fs.SetFault(func(op, path string) error {
		if op != "write" || filepath.Clean(path) != log || !armed.CompareAndSwap(true, false) {
			return nil
		}
		// The fetch wrote and synced pages 5-8 and is appending their
		// record: a checkpoint about to copy its page 6 marks it now.
		go func() { marked <- r.pages.MarkPresent([]uint32{6}) }()
		select {
		case err := <-marked:
			early = true
			marked <- err
		case <-time.After(200 * time.Millisecond):
		}
		return errEIO
	})
	if err := r.pages.Fetch(5, ""); err == nil {
		t.Fatal("fetch 5 succeeded; want the presence log's injected EIO")
	}
	select {
	case err := <-marked:
		if err != nil {
			t.Fatalf("MarkPresent([6]): %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MarkPresent([6]) still blocked after the fetch failed")
	}
	if early {
		t.Error("MarkPresent([6]) returned while the fetch's record of page 6 was not durable")
	}
	for _, pg := range []uint32{5, 7, 8} {
		if !r.pages.Missing(pg) {
			t.Errorf("page %d present after its fetch failed to record it", pg)
		}
	}

	// The checkpoint copies its page 6 into the file; then a restart.
	local := bytes.Repeat([]byte{6}, pageSize)
	f, err := os.OpenFile(r.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(local, 5*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.close()
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 6}) {
		t.Errorf("the presence log records %v, want [1 6]", got)
	}
	r.open(t, ts.url)
	if err := r.pages.Fetch(6, ""); err != nil {
		t.Fatal(err)
	}
	if got := r.page(t, 6); !bytes.Equal(got, local) {
		t.Errorf("page 6, checkpointed locally, was overwritten by the reopened replica's fetch (now starts %x)", got[:8])
	}
}

// forger is a server that answers every /pull-updates request with a
// valid header and the pages answer gives (by 1-based number), in order.
func forger(t *testing.T, snap *snapshot, answer func(asked []uint32) map[uint32][]byte) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &syncpb.PullUpdatesReqProtoBody{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		bm, err := wire.DecodeSelector(req.ServerPagesSelector)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var asked []uint32
		for _, id := range bm.ToArray() {
			asked = append(asked, id+1)
		}
		out, err := wire.AppendDelimited(nil, &syncpb.PullUpdatesRespProtoBody{
			ServerRevision: snap.rev, DbSize: uint64(snap.dbSize),
			Protocol:    syncpb.PullUpdatesProtocol_PULL_UPDATES_PROTOCOL_PAGES,
			RawEncoding: &syncpb.PageSetRawEncodingProto{},
		})
		if err != nil {
			t.Error(err)
			return
		}
		pages := answer(asked)
		for _, pg := range slices.Sorted(maps.Keys(pages)) {
			out = wire.AppendPage(out, uint64(pg-1), pages[pg])
		}
		w.Header().Set("Content-Type", "application/protobuf")
		w.Write(out)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// checkUntouched fails unless the pages of want are still missing, still
// holes in the file, and the presence log records only before.
func checkUntouched(t *testing.T, r *replica, before []uint32, want ...uint32) {
	t.Helper()
	zero := make([]byte, pageSize)
	for _, pg := range want {
		if !r.pages.Missing(pg) {
			t.Errorf("page %d is present after a failed fetch", pg)
		}
		if !bytes.Equal(r.page(t, pg), zero) {
			t.Errorf("page %d was written by a failed fetch", pg)
		}
	}
	if got := r.logged(t); !slices.Equal(got, before) {
		t.Errorf("the presence log records %v after a failed fetch, want %v", got, before)
	}
}

// A fetch the server cannot answer fails the read with ErrFetch and
// changes nothing: the pages stay missing, the file's holes stay empty,
// the presence log as it was; the next read asks again.
func TestFetchFailures(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	seg := []uint32{5, 6, 7, 8}
	cases := []struct {
		name   string
		url    func(t *testing.T) string
		errHas string
	}{
		{"unreachable", func(t *testing.T) string {
			hs := httptest.NewServer(http.NotFoundHandler())
			hs.Close() // a port nobody listens on
			return hs.URL
		}, "connection refused"},
		{"server error", func(t *testing.T) string {
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "down", http.StatusServiceUnavailable)
			}))
			t.Cleanup(hs.Close)
			return hs.URL
		}, "503"},
		{"revision gone", func(t *testing.T) string {
			// What the server answers for a page changed after a
			// revision it no longer keeps.
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "revision compacted", http.StatusGone)
			}))
			t.Cleanup(hs.Close)
			return hs.URL
		}, netactor.ErrRevisionGone.Error()},
		{"short page", func(t *testing.T) string {
			return forger(t, snap, func(asked []uint32) map[uint32][]byte {
				m := map[uint32][]byte{}
				for _, pg := range asked {
					m[pg] = snap.pages[pg]
				}
				m[7] = snap.pages[7][:100]
				return m
			})
		}, "page id 6 has 100 bytes"},
		{"page not asked for", func(t *testing.T) string {
			return forger(t, snap, func(asked []uint32) map[uint32][]byte {
				m := map[uint32][]byte{}
				for _, pg := range asked {
					m[pg] = snap.pages[pg]
				}
				m[9] = snap.pages[9] // the next segment's
				return m
			})
		}, "server sent page 9, which was not asked for"},
		{"page not sent", func(t *testing.T) string {
			return forger(t, snap, func(asked []uint32) map[uint32][]byte {
				return map[uint32][]byte{6: snap.pages[6], 7: snap.pages[7], 8: snap.pages[8]}
			})
		}, "the server did not send page 5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := c.url(t)
			r := newReplica(t, url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FetchTimeout: 5 * time.Second})
			err := r.pages.Fetch(5, "")
			if !errors.Is(err, pageactor.ErrFetch) || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("fetch 5: %v, want ErrFetch with %q", err, c.errHas)
			}
			if c.name == "page not sent" {
				// The pages it did send are written: they are the bootstrap's.
				checkUntouched(t, r, []uint32{1, 6, 7, 8}, 5, 9)
			} else {
				checkUntouched(t, r, []uint32{1}, append(seg, 9)...)
			}
			if err := r.pages.Ensure(t.Context(), 5); !errors.Is(err, pageactor.ErrFetch) {
				t.Fatalf("ensure 5: %v, want ErrFetch", err)
			}
			if got := r.pages.Fetches(); got != 2 {
				t.Fatalf("Fetches() = %d after two failed reads, want 2 (each asks again)", got)
			}
		})
	}
}

// A reader that gives up (its context cancelled) fails with ErrFetch and
// the context's error at once, without cancelling the segment's fetch:
// another reader waiting for it gets its page, and the page the first
// reader wanted is present afterwards, with no second request.
func TestFetchCancel(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FetchTimeout: 5 * time.Second})
	waits := countWaits(t, r)

	release := ts.holdPulls()
	defer release()
	ctx, cancel := context.WithCancel(t.Context())
	ensured := make(chan error, 1)
	go func() { ensured <- r.pages.Ensure(ctx, 5) }()
	ts.waitArrived(t, 1)
	fetched := make(chan error, 1)
	go func() { fetched <- r.pages.Fetch(6, "") }()
	waitFor(t, "the second reader to queue", func() bool { return waits.Load() == 1 })
	cancel()
	select {
	case err := <-ensured:
		if !errors.Is(err, pageactor.ErrFetch) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled ensure: %v, want ErrFetch and context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a cancelled Ensure did not return")
	}
	release()
	if err := <-fetched; err != nil {
		t.Fatalf("the other reader of the segment: %v", err)
	}
	if !r.pages.Present(5) || !bytes.Equal(r.page(t, 5), snap.pages[5]) {
		t.Fatal("page 5 is not in the file after the segment's fetch")
	}
	if reqs := ts.requests(); len(reqs) != 1 {
		t.Fatalf("asked %+v, want one request", reqs)
	}
}

// A fetch the server does not answer within FetchTimeout fails the read
// with ErrFetch and context.DeadlineExceeded and marks nothing; it leaves
// nothing in flight either: once the server answers, a read fetches.
func TestFetchTimeout(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FetchTimeout: 200 * time.Millisecond})

	release := ts.holdPulls()
	defer release()
	start := time.Now()
	err := r.pages.Fetch(5, "")
	if !errors.Is(err, pageactor.ErrFetch) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch from a stalled server: %v, want ErrFetch and context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the fetch failed after %v, FetchTimeout is 200ms", d)
	}
	checkUntouched(t, r, []uint32{1}, 5, 6, 7, 8)
	release()
	// The timed-out request may still be on its way out: a read that
	// joins it gets its error, the next one asks anew.
	waitFor(t, "a read to succeed", func() bool { return r.pages.Fetch(5, "") == nil })
	if !bytes.Equal(r.page(t, 5), snap.pages[5]) {
		t.Fatal("page 5 is not the bootstrap's")
	}
}

// With Prefetch, the children of a fetched B-tree interior page are
// requested next, in one request, and are present without a read asking
// for them; without it, only the demand fetch is made.
func TestPrefetchChildren(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	var root uint32
	var children []uint32
	for pg := uint32(2); pg <= snap.dbSize; pg++ {
		if c := btree.Children(pg, snap.pages[pg]); len(c) > 0 {
			if root != 0 {
				t.Fatalf("two interior pages, %d and %d", root, pg)
			}
			root, children = pg, slices.Sorted(slices.Values(c))
		}
	}
	if root == 0 || len(children) < 2 || len(children) > 64 {
		t.Fatalf("t's root %d has %d children; the test wants one interior page with 2-64", root, len(children))
	}

	for _, prefetch := range []bool{false, true} {
		t.Run(fmt.Sprint("prefetch=", prefetch), func(t *testing.T) {
			// One page per segment: the demand fetch brings the root alone.
			var background sync.WaitGroup
			r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{
				SegmentSize: pageSize, Prefetch: prefetch,
				Background: func(run func()) { background.Go(run) },
			})
			var prefetched atomic.Int64
			failpoint.Set(func(name, owner string) {
				if name == "pages.prefetched" && owner == r.path {
					prefetched.Add(1)
				}
			})
			t.Cleanup(func() { failpoint.Set(nil) })
			if err := r.pages.Fetch(root, ""); err != nil {
				t.Fatal(err)
			}
			background.Wait()
			want := [][]uint32{{root}}
			if prefetch {
				// Then the prefetch's answer is written; without one, the
				// requests below tell.
				for deadline := time.Now().Add(5 * time.Second); prefetched.Load() == 0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				want = append(want, children)
			}
			var got [][]uint32
			for _, q := range ts.requests() {
				got = append(got, q.pages)
			}
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("requests %v, want %v", got, want)
			}
			for _, c := range children {
				if r.pages.Present(c) != prefetch {
					t.Fatalf("child %d present: %v", c, !prefetch)
				}
				if prefetch && !bytes.Equal(r.page(t, c), snap.pages[c]) {
					t.Fatalf("child %d is not the bootstrap's", c)
				}
			}
		})
	}
}

// The presence log is read up to its first damaged record (a torn
// append): the pages recorded before it are present, those of the damaged
// record and every later one are missing and fetched again, and what is
// recorded after the reopen is found by the next one.
func TestPresenceLogDamaged(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize})
	for _, pg := range []uint32{5, 9, 13} {
		if err := r.pages.Fetch(pg, ""); err != nil {
			t.Fatal(err)
		}
	}
	r.close()
	log := layout.For(r.path).Present
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 4*12 {
		t.Fatalf("the log has %d bytes, want four 12-byte records (1, 5-8, 9-12, 13-16)", len(b))
	}
	b[2*12+5]++ // the 9-12 record's count: its checksum no longer matches
	b = append(b, 1, 2, 3, 4, 5)
	if err := os.WriteFile(log, b, 0o644); err != nil {
		t.Fatal(err)
	}

	r.open(t, ts.url)
	ts.requests()
	if got, want := r.missing(), without(snap.dbSize, 1, 5, 6, 7, 8); !slices.Equal(got, want) {
		t.Fatalf("missing after the reopen: %v, want %v", got, want)
	}
	if err := r.pages.Fetch(14, ""); err != nil {
		t.Fatal(err)
	}
	if reqs := ts.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].pages, []uint32{13, 14, 15, 16}) {
		t.Fatalf("asked %+v, want one request for [13 14 15 16]", reqs)
	}
	r.close()
	r.open(t, ts.url)
	if got, want := r.missing(), without(snap.dbSize, 1, 5, 6, 7, 8, 13, 14, 15, 16); !slices.Equal(got, want) {
		t.Fatalf("missing after the second reopen: %v, want %v", got, want)
	}
}

// The writer's reads of the pages ZeroFill names (a pull's T1 is about to
// overwrite them) fail with shimvfs.ErrZeroFill and ask nothing; a reader's
// read of the same page, and the writer's once ZeroFill(nil) ended it,
// fetch.
func TestZeroFill(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: pageSize})
	r.pages.ZeroFill(roaring.BitmapOf(5, 6))
	for _, pg := range []uint32{5, 6} {
		if err := r.pages.Fetch(pg, pageactor.WriterTag); !errors.Is(err, shimvfs.ErrZeroFill) {
			t.Fatalf("the writer's read of %d under ZeroFill: %v, want ErrZeroFill", pg, err)
		}
	}
	if reqs := ts.requests(); len(reqs) != 0 || !r.pages.Missing(5) {
		t.Fatalf("zero-filled reads asked %+v", reqs)
	}
	if err := r.pages.Fetch(5, ""); err != nil {
		t.Fatalf("a reader's read of 5 under ZeroFill: %v", err)
	}
	if err := r.pages.Fetch(7, pageactor.WriterTag); err != nil {
		t.Fatalf("the writer's read of 7, not zero-filled: %v", err)
	}
	r.pages.ZeroFill(nil)
	if err := r.pages.Fetch(6, pageactor.WriterTag); err != nil {
		t.Fatalf("the writer's read of 6 after ZeroFill(nil): %v", err)
	}
	var got []uint32
	for _, q := range ts.requests() {
		got = append(got, q.pages...)
	}
	if !slices.Equal(got, []uint32{5, 7, 6}) {
		t.Fatalf("asked for %v, want 5, 7, 6", got)
	}
}

// Image returns a page as the bootstrap revision had it (the server
// changed it since) and writes nothing: the page stays missing, its hole
// empty, the presence log as it was.
func TestImage(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	ts.exec(t, "UPDATE t SET v = randomblob(300)")
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize})
	img, err := r.pages.Image(t.Context(), 9)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, snap.pages[9]) {
		t.Fatal("Image(9) is not the bootstrap revision's page 9")
	}
	if reqs := ts.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].pages, []uint32{9}) || reqs[0].rev != snap.rev {
		t.Fatalf("asked %+v, want one request for [9] at %s", reqs, snap.rev)
	}
	checkUntouched(t, r, []uint32{1}, 9)
}

// SQLite reading a partial replica through the shim VFS, as the facade's
// readers do, gets the server's rows; each page is asked for once, and
// every page is present afterwards.
func TestReadThroughVFS(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 2 * pageSize})
	vfs, err := shimvfs.Register()
	if err != nil {
		t.Fatal(err)
	}
	detach, err := shimvfs.Attach(r.path, r.pages)
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	db, err := sql.Open("sqlite", dbactor.ReaderDSN(r.path, vfs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, size int
	if err := db.QueryRow("SELECT count(*), sum(length(v)) FROM t").Scan(&n, &size); err != nil {
		t.Fatal(err)
	}
	if n != 400 || size != 400*300 {
		t.Fatalf("count, size = %d, %d; want 400, %d", n, size, 400*300)
	}
	var asked []uint32
	for _, q := range ts.requests() {
		asked = append(asked, q.pages...)
	}
	slices.Sort(asked)
	if want := without(snap.dbSize, 1); !slices.Equal(asked, want) {
		t.Fatalf("the scan asked for %v, want each of %v once", asked, want)
	}
	if m := r.missing(); len(m) != 0 {
		t.Fatalf("missing after the scan: %v", m)
	}
}

// After Repin(rev), fetches ask for pages as of rev: the file gets rev's
// images.
func TestRepin(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	ts.exec(t, "UPDATE t SET v = randomblob(300)")
	later, err := rawclient.Pull(ts.url, &syncpb.PullUpdatesReqProtoBody{})
	if err != nil {
		t.Fatal(err)
	}
	if later.Header.DbSize != uint64(snap.dbSize) {
		t.Fatalf("the update changed the size: %d pages, was %d", later.Header.DbSize, snap.dbSize)
	}
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: pageSize})
	ts.requests()
	r.pages.Repin(later.Header.ServerRevision)
	if err := r.pages.Fetch(9, ""); err != nil {
		t.Fatal(err)
	}
	if reqs := ts.requests(); len(reqs) != 1 || reqs[0].rev != later.Header.ServerRevision {
		t.Fatalf("after Repin(%s) asked %+v", later.Header.ServerRevision, reqs)
	}
	if !bytes.Equal(r.page(t, 9), later.Pages[8]) {
		t.Fatal("page 9 is not the re-pinned revision's")
	}
}
