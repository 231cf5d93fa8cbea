package pageactor_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/pageactor"
)

// The page actor's contract where the disk fails it: the presence log's
// appends from WillWrite (fsx.CrashFS).

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

// WillWrite of pages still missing (SQLite is about to write them without
// a checkpoint's MarkPresent) records them before SQLite writes. When the
// presence log's append fails, WillWrite returns ErrWillWrite with the
// cause, which fails SQLite's write (shimvfs: TestWillWriteFailure), and
// leaves the pages missing and out of the log: a page SQLite wrote that
// the log lacks would be fetched over with the bootstrap image after a
// reopen. The next read fetches them. A present page needs no record, so
// WillWrite of one does not fail.
func TestWillWriteRecordFails(t *testing.T) {
	ts := newServer(t)
	snap := newDatabase(t, ts, 400)
	fs := fsx.NewCrashFS()
	r := newReplica(t, ts.url, snap, []uint32{1}, pageactor.Config{SegmentSize: 4 * pageSize, FS: fs})
	log, err := filepath.Abs(layout.For(r.path).Present)
	if err != nil {
		t.Fatal(err)
	}
	errEIO := errors.New("injected EIO")
	fs.SetFault(func(op, path string) error {
		if filepath.Clean(path) == log && (op == "write" || op == "sync") {
			return errEIO
		}
		return nil
	})
	err = r.pages.WillWrite(6, 7)
	if !errors.Is(err, pageactor.ErrWillWrite) || !errors.Is(err, errEIO) {
		t.Fatalf("WillWrite(6, 7) with the presence log failing: %v, want ErrWillWrite and the injected EIO", err)
	}
	if err := r.pages.WillWrite(1, 1); err != nil {
		t.Fatalf("WillWrite(1, 1) of a present page with the presence log failing: %v", err)
	}
	fs.SetFault(nil)
	for _, pg := range []uint32{6, 7} {
		if !r.pages.Missing(pg) {
			t.Errorf("page %d is present, but WillWrite failed to record it", pg)
		}
	}
	if got := r.logged(t); !slices.Equal(got, []uint32{1}) {
		t.Errorf("the presence log records %v, want [1]", got)
	}
	checkFetchedAgain(t, ts, r, 6, []uint32{1}, []uint32{5, 6, 7, 8})
}
