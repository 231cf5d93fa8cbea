package pageactor_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/btree"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/rawclient"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/internal/testutil"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/pageactor"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The page actor's contract where the disk or the server's history fails
// it: the database file's writes and syncs (pageactor's own shimvfs.File,
// reached through a shimvfs.Recorder's SetFault, SetFull and PowerLoss),
// the presence log's appends from WillWrite (fsx.CrashFS), the prefetch's
// cap, and a real server's 410 after its history was compacted.

// recorded reopens r's page actor under a shimvfs.Recorder of r's
// directory: the actor's database file is then a recorded shimvfs.File.
// It returns the Recorder and the file's path as the Recorder names it.
func recorded(t *testing.T, r *replica, url string) (*shimvfs.Recorder, string) {
	t.Helper()
	r.close()
	rec, err := shimvfs.Record(filepath.Dir(r.path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Stop) // after the reopened actor's Close, registered below
	db, err := shimvfs.CleanAbs(r.path)
	if err != nil {
		t.Fatal(err)
	}
	r.open(t, url)
	return rec, db
}

// checkFetchedAgain fails unless a read of pg now fetches the segment
// seg (one request, the only one since the last ts.requests) and leaves
// its pages in the file as the bootstrap had them and in the log, which
// records before and them.
func checkFetchedAgain(t *testing.T, ts *testServer, r *replica, pg uint32, before, seg []uint32) {
	t.Helper()
	if err := r.pages.Fetch(pg, ""); err != nil {
		t.Fatalf("the next read of %d: %v", pg, err)
	}
	if reqs := ts.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].pages, seg) {
		t.Fatalf("the next read of %d asked %+v, want one request for %v", pg, reqs, seg)
	}
	for _, q := range seg {
		if r.pages.Missing(q) || !bytes.Equal(r.page(t, q), r.snap.pages[q]) {
			t.Errorf("page %d is not the bootstrap's, present, after it was fetched again", q)
		}
	}
	if got, want := r.logged(t), slices.Sorted(slices.Values(append(slices.Clone(before), seg...))); !slices.Equal(got, want) {
		t.Errorf("the presence log records %v, want %v", got, want)
	}
}

// A fetch whose writes into the database file fail (EIO on one page's
// WriteAt, EIO on the Sync, a full disk) fails the read with ErrFetch and
// the cause, and leaves every page of its segment missing and out of the
// presence log: pages are recorded only after the Sync made them durable
// (Pages.write → record). The next read fetches the segment again.
func TestFetchFileFaults(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	seg := []uint32{5, 6, 7, 8}
	errEIO := errors.New("injected EIO")
	cases := []struct {
		name string
		arm  func(rec *shimvfs.Recorder, db string)
		want error
	}{
		{"write", func(rec *shimvfs.Recorder, db string) {
			var writes atomic.Int32
			rec.SetFault(func(op, path string) error {
				if op == "write" && path == db && writes.Add(1) == 2 { // the segment's second page
					return errEIO
				}
				return nil
			})
		}, errEIO},
		{"sync", func(rec *shimvfs.Recorder, db string) {
			rec.SetFault(func(op, path string) error {
				if op == "sync" && path == db {
					return errEIO
				}
				return nil
			})
		}, errEIO},
		{"full", func(rec *shimvfs.Recorder, db string) {
			rec.SetFull(func(path string) bool { return path == db })
		}, syscall.ENOSPC},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize})
			rec, db := recorded(t, r, ts.url)
			c.arm(rec, db)
			err := r.pages.Fetch(5, "")
			rec.SetFault(nil)
			rec.SetFull(nil)
			if !errors.Is(err, pageactor.ErrFetch) || !errors.Is(err, c.want) {
				t.Fatalf("fetch 5 with the file's %s failing: %v, want ErrFetch and %v", c.name, err, c.want)
			}
			for _, pg := range seg {
				if !r.pages.Missing(pg) {
					t.Errorf("page %d is present after its write failed", pg)
				}
			}
			if got := r.logged(t); !slices.Equal(got, []uint32{1}) {
				t.Errorf("the presence log records %v after the failed write, want [1]", got)
			}
			ts.requests()
			checkFetchedAgain(t, ts, r, 5, []uint32{1}, seg)
		})
	}
}

// A crash (the Recorder's power loss) between a fetch's writes into the
// file and their Sync takes the writes back: the holes are empty again,
// and the presence log does not name the pages, which are recorded only
// after the Sync. The reopened replica finds them missing and fetches them
// again.
func TestFetchPowerLossBeforeSync(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	seg := []uint32{5, 6, 7, 8}
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize})
	rec, db := recorded(t, r, ts.url)
	var writes atomic.Int32
	rec.SetFault(func(op, path string) error {
		switch {
		case path != db:
		case op == "write":
			writes.Add(1)
		case op == "sync":
			rec.Crash() // the process dies with the pages written, not synced
			return shimvfs.ErrCrashed
		}
		return nil
	})
	if err := r.pages.Fetch(5, ""); !errors.Is(err, shimvfs.ErrCrashed) {
		t.Fatalf("fetch 5 across a crash at its Sync: %v, want ErrCrashed", err)
	}
	rec.SetFault(nil)
	if n := writes.Load(); n != 4 {
		t.Fatalf("%d pages written before the Sync, want 4", n)
	}
	r.close()
	if err := rec.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1}) {
		t.Errorf("after the power loss the presence log records %v, want [1]", got)
	}
	zero := make([]byte, pageSize)
	for _, pg := range seg {
		if !bytes.Equal(r.page(t, pg), zero) {
			t.Errorf("page %d, written but not synced, survived the power loss", pg)
		}
	}

	r.open(t, ts.url)
	ts.requests()
	if got, want := r.missing(), without(snap.dbSize, 1); !slices.Equal(got, want) {
		t.Fatalf("missing after the reopen: %v, want %v", got, want)
	}
	checkFetchedAgain(t, ts, r, 6, []uint32{1}, seg)
}

// WillWrite of pages still missing that no MarkPresent recorded (SQLite is
// about to write them) records them before SQLite writes. When the
// presence log's append fails, in its write or in its sync, WillWrite
// returns ErrWillWrite with the cause, which fails SQLite's write
// (shimvfs: TestWillWriteFailure), and leaves the pages missing and out of
// the log, for good: the failed append's entry is cut off the log, so that
// the next append's fsync does not make it durable and a reopen does not
// take the pages for present with their holes (a cut that fails:
// TestRecordCutFails). The next read fetches the pages.
func TestWillWriteRecordFails(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	errEIO := errors.New("injected EIO")
	for _, failing := range []string{"write", "sync"} {
		t.Run(failing, func(t *testing.T) {
			fs := fsx.NewCrashFS()
			r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FS: fs})
			log, err := filepath.Abs(layout.For(r.path).Present)
			if err != nil {
				t.Fatal(err)
			}
			fs.SetFault(func(op, path string) error {
				if filepath.Clean(path) == log && op == failing {
					return errEIO
				}
				return nil
			})
			err = r.pages.WillWrite(6, 7)
			if !errors.Is(err, pageactor.ErrWillWrite) || !errors.Is(err, errEIO) {
				t.Fatalf("WillWrite(6, 7) with the presence log failing: %v, want ErrWillWrite and the injected EIO", err)
			}
			for _, pg := range []uint32{6, 7} {
				if !r.pages.Missing(pg) {
					t.Errorf("page %d is present, but WillWrite failed to record it", pg)
				}
			}
			if got := r.logged(t); !slices.Equal(got, []uint32{1}) {
				t.Errorf("the presence log records %v after the failed append, want [1]", got)
			}
			fs.SetFault(nil)
			// A later record must not carry the failed one's entry along.
			if err := r.pages.WillWrite(9, 9); err != nil {
				t.Fatalf("WillWrite(9, 9) after the fault: %v", err)
			}
			if got := r.logged(t); !slices.Equal(got, []uint32{1, 9}) {
				t.Errorf("after a later record the presence log records %v, want [1 9]", got)
			}
			r.close()
			r.open(t, ts.url)
			for _, pg := range []uint32{6, 7} {
				if !r.pages.Missing(pg) {
					t.Errorf("after a reopen page %d is present, but WillWrite failed to record it (the file holds a hole there)", pg)
				}
			}
			ts.requests()
			checkFetchedAgain(t, ts, r, 6, []uint32{1, 9}, []uint32{5, 6, 7, 8})
		})
	}
}

// A failed append whose entry cannot be cut either (its sync fails, then
// the truncate) leaves the entry in the log: every record is then refused,
// and the first one after the fault first cuts it. Had a record appended
// after it, the entry, longer than the next one, would outlive the overwrite
// and the next open would take its pages for present.
func TestRecordCutFails(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	fs := fsx.NewCrashFS()
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FS: fs})
	log, err := filepath.Abs(layout.For(r.path).Present)
	if err != nil {
		t.Fatal(err)
	}
	errEIO := errors.New("injected EIO")
	var writes atomic.Int32
	fs.SetFault(func(op, path string) error {
		if filepath.Clean(path) != log {
			return nil
		}
		// The append's write goes through; its sync fails, and so does
		// every write after it (Truncate is a write to CrashFS).
		if op == "sync" || op == "write" && writes.Add(1) > 1 {
			return errEIO
		}
		return nil
	})
	if err := r.pages.MarkPresent([]uint32{6, 8}); !errors.Is(err, errEIO) { // two records, 24 bytes
		t.Fatalf("MarkPresent([6 8]) with the log's sync failing: %v, want the injected EIO", err)
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 6, 8}) {
		t.Fatalf("the presence log records %v with its failed append not cut, want [1 6 8]: the test proves nothing", got)
	}
	if err := r.pages.MarkPresent([]uint32{10}); !errors.Is(err, errEIO) {
		t.Fatalf("MarkPresent([10]) while the failed append cannot be cut: %v, want the injected EIO", err)
	}
	fs.SetFault(nil)
	if err := r.pages.MarkPresent([]uint32{10}); err != nil {
		t.Fatalf("MarkPresent([10]) after the fault: %v", err)
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 10}) {
		t.Errorf("after a later record the presence log records %v, want [1 10]", got)
	}
	r.close()
	r.open(t, ts.url)
	for _, pg := range []uint32{6, 8} {
		if !r.pages.Missing(pg) {
			t.Errorf("after a reopen page %d is present, but its record failed (the file holds a hole there)", pg)
		}
	}
}

// A checkpoint's MarkPresent records the pages it is about to copy without
// making them present (the file holds their holes until SQLite writes them:
// a reader whose snapshot lacks their frames fetches them). If the
// record fails, nothing changes, and the next MarkPresent records them:
// had the failed one set their bits, the next would find them present and
// record nothing, and SQLite's copy would leave pages the log lacks, which
// a reopen fetches over (the facade's TestPartialCheckpointMarkPresentFails).
// SQLite's copy of a recorded page (WillWrite) needs no record of its own.
func TestMarkPresentRecordFails(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	fs := fsx.NewCrashFS()
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FS: fs})
	log, err := filepath.Abs(layout.For(r.path).Present)
	if err != nil {
		t.Fatal(err)
	}
	errEIO := errors.New("injected EIO")
	failLog := func(op, path string) error {
		if filepath.Clean(path) == log {
			return errEIO
		}
		return nil
	}
	fs.SetFault(failLog)
	if err := r.pages.MarkPresent([]uint32{6, 7, 10}); !errors.Is(err, errEIO) {
		t.Fatalf("MarkPresent with the presence log failing: %v, want the injected EIO", err)
	}
	fs.SetFault(nil)
	if err := r.pages.MarkPresent([]uint32{6, 7, 10}); err != nil {
		t.Fatal(err)
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1, 6, 7, 10}) {
		t.Fatalf("after a failed and a good MarkPresent the presence log records %v, want [1 6 7 10]", got)
	}
	for _, pg := range []uint32{6, 7, 10} {
		if !r.pages.Missing(pg) {
			t.Errorf("page %d is present after MarkPresent, before SQLite wrote it", pg)
		}
	}
	// SQLite copies 10 (with the log failing: no record is needed); a
	// reader of an older snapshot reads 6 from the file and fetches it.
	fs.SetFault(failLog)
	if err := r.pages.WillWrite(10, 10); err != nil {
		t.Fatalf("WillWrite of a page MarkPresent recorded, with the presence log failing: %v", err)
	}
	fs.SetFault(nil)
	if r.pages.Missing(10) {
		t.Error("page 10 is missing after WillWrite")
	}
	ts.requests()
	checkFetchedAgain(t, ts, r, 6, []uint32{1, 10}, []uint32{5, 6, 7, 8})
}

// A prefetch asks for at most 64 pages (maxPrefetch), in one request, even
// when the interior page a read fetched has many more children: here the
// table's root, with over 100; the children it asks for are the root's,
// and nothing else is asked.
func TestPrefetchCap(t *testing.T) {
	const maxPrefetch = 64 // pageactor's cap, as documented
	ts := newServer(t)
	snap := newDatabase(t, ts, 2000)
	var root uint32
	var children []uint32
	for pg := uint32(2); pg <= snap.dbSize; pg++ {
		if c := btree.Children(pg, snap.pages[pg]); len(c) > len(children) {
			root, children = pg, c
		}
	}
	if len(children) <= maxPrefetch+20 {
		t.Fatalf("the widest interior page, %d, has %d children: the test wants many more than %d", root, len(children), maxPrefetch)
	}
	var background sync.WaitGroup
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{
		SegmentSize: pageSize, Prefetch: true,
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
	testutil.Eventually(t, 5*time.Second, "the prefetch's answer to be written", func() bool { return prefetched.Load() == 1 })
	reqs := ts.requests()
	if len(reqs) != 2 || !slices.Equal(reqs[0].pages, []uint32{root}) {
		t.Fatalf("requests %+v, want [%d] then one prefetch", reqs, root)
	}
	asked := reqs[1].pages
	if len(asked) != maxPrefetch {
		t.Fatalf("the prefetch asked for %d pages, want %d (the cap; the root has %d children)", len(asked), maxPrefetch, len(children))
	}
	for _, pg := range asked {
		if !slices.Contains(children, pg) {
			t.Errorf("the prefetch asked for page %d, not a child of the root %d", pg, root)
		}
		if r.pages.Missing(pg) || !bytes.Equal(r.page(t, pg), snap.pages[pg]) {
			t.Errorf("prefetched page %d is not the bootstrap's, present", pg)
		}
	}
	if present, _ := r.pages.Counts(); present != 2+maxPrefetch {
		t.Errorf("%d pages present, want %d (page 1, the root, the prefetch)", present, 2+maxPrefetch)
	}
}

// A real server whose history was compacted past the replica's revision
// (HistoryRetention, Maintain) still answers a fetch as of that revision
// for pages no later revision wrote: the replica gets the bootstrap's
// images. A fetch of a segment with a page written since gets a 410: the
// read fails with ErrFetch and netactor.ErrRevisionGone, nothing is
// written (the holes stay empty: never the new image under the old base),
// the log says why, and each read asks again and fails again: what ends it
// is the replica's next pull (the facade's TestPartialOfflinePastRetention).
// A page of such a segment that did not change fails as well, since the
// segment is one request.
func TestFetchRevisionGone(t *testing.T) {
	ts := newServerWith(t, server.Config{HistoryRetention: time.Millisecond, MaintenanceInterval: -1})
	snap := newDatabase(t, ts, 400)
	ts.exec(t, "UPDATE t SET v = randomblob(300) WHERE id = 200")
	latest, err := rawclient.Pull(ts.url, &syncpb.PullUpdatesReqProtoBody{})
	if err != nil {
		t.Fatal(err)
	}
	var changed []uint32
	for id, data := range latest.Pages {
		if pg := uint32(id) + 1; pg > 1 && !bytes.Equal(data, snap.pages[pg]) {
			changed = append(changed, pg)
		}
	}
	if len(changed) != 1 || latest.Header.DbSize != uint64(snap.dbSize) {
		t.Fatalf("the update changed pages %v (of %d, was %d): the test wants one leaf", changed, latest.Header.DbSize, snap.dbSize)
	}
	time.Sleep(5 * time.Millisecond)
	if err := ts.srv.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	var se *rawclient.StatusError
	if _, err := rawclient.Pull(ts.url, &syncpb.PullUpdatesReqProtoBody{ServerRevision: snap.rev}); !errors.As(err, &se) || se.Code != 410 {
		t.Fatalf("the bootstrap revision, whole, after compaction: %v, want 410: the test proves nothing", err)
	}
	ts.requests()

	const segPages = 4
	c := changed[0]
	bad := (c - 1) / segPages // the changed page's segment
	good := uint32(1)         // a segment without it, nor page 1
	if bad == good {
		good = 2
	}
	pages := func(seg uint32) []uint32 {
		var out []uint32
		for pg := seg*segPages + 1; pg <= (seg+1)*segPages && pg <= snap.dbSize; pg++ {
			out = append(out, pg)
		}
		return out
	}
	var logs testutil.LockedBuffer
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: segPages * pageSize,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	// Unchanged since the bootstrap: fetched as of its revision.
	checkFetchedAgain(t, ts, r, pages(good)[0], []uint32{1}, pages(good))
	before := r.logged(t)

	for _, pg := range pages(bad) { // the changed page, and its segment's others
		err := r.pages.Fetch(pg, "")
		if !errors.Is(err, pageactor.ErrFetch) || !errors.Is(err, netactor.ErrRevisionGone) {
			t.Fatalf("fetch %d (page %d changed since the compacted revision): %v, want ErrFetch and ErrRevisionGone", pg, c, err)
		}
		checkUntouched(t, r, before, pages(bad)...)
	}
	if reqs := ts.requests(); len(reqs) != len(pages(bad)) {
		t.Errorf("%d reads of the changed segment asked %d times, want once each", len(pages(bad)), len(reqs))
	}
	if !strings.Contains(logs.String(), "changed on the server after the revision this replica fetches at") {
		t.Errorf("the log does not say why the fetch failed:\n%s", logs.String())
	}
}
