package server

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// breakFrame makes WAL frame i invalid for a scanner (its stored checksum
// changes) without changing the page image SQLite reads from it.
func breakFrame(t *testing.T, wal string, i int) {
	t.Helper()
	f, err := os.OpenFile(wal, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := walfile.HeaderSize + int64(i-1)*(walfile.FrameHeaderSize+history.PageSize) + 16
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// walTxns lists the committed transactions in the WAL at path.
func walTxns(t *testing.T, path string) [][]walfile.Frame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var txns [][]walfile.Frame
	if _, err := walfile.Scan(f, st.Size(), walfile.Position{}, func(txn []walfile.Frame) error {
		txns = append(txns, txn)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return txns
}

// recordCommits stops quietly at a bad frame in the middle of the new
// commits: the commits before it become revisions, the write is answered,
// nothing after the frame is taken for a commit (SQLite's recovery would
// not see those commits either).
func TestRecordCommitsStopsAtABadFrame(t *testing.T) {
	ts := newTestServer(t, Config{MaintenanceInterval: -1})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	d, _ := ts.database(t.Context(), "default", true)
	base := d.hist.Latest().Seq
	wal := filepath.Join(ts.dir, "default", mainFile) + "-wal"
	failpoint.Set(func(name, owner string) {
		if name == "server.committed" {
			// Three commits, one per statement: break the second's
			// first frame before they are recorded.
			txns := walTxns(t, wal)
			breakFrame(t, wal, txns[len(txns)-2][0].Index)
		}
	})
	defer failpoint.Set(nil)
	ts.exec(t, "", "INSERT INTO t VALUES(1, 'a')", "INSERT INTO t VALUES(2, 'b')", "INSERT INTO t VALUES(3, 'c')")
	failpoint.Set(nil)
	if got := d.hist.Latest().Seq; got != base+1 {
		t.Fatalf("%d revisions recorded, want 1 (the commit before the bad frame)", got-base)
	}
}

// A live bootstrap indexes the WAL up to its revision's frame and reports
// a log that ends before it (a bad frame in the middle) instead of serving
// pages without the frames after it: the pull then reads the history, and
// gets the revision's pages all the same.
func TestLiveSourceReportsABadFrame(t *testing.T) {
	var log lockedBuffer
	ts := newTestServer(t, Config{SnapshotCacheMinBytes: -1, MaintenanceInterval: -1, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	fill(t, ts, "", 1, 200)
	ts.exec(t, "", "UPDATE t SET v = 'changed' WHERE id <= 100")
	wal := filepath.Join(ts.dir, "default", mainFile) + "-wal"
	txns := walTxns(t, wal)
	if len(txns) < 3 {
		t.Fatalf("%d transactions in the WAL", len(txns))
	}
	breakFrame(t, wal, txns[1][0].Index)
	got := ts.pull(t, "", &syncpb.PullUpdatesReqProtoBody{})
	samePages(t, "bootstrap", got, historySnapshot(t, ts, got.hdr.ServerRevision, got.hdr.DbSize))
	if !strings.Contains(log.String(), "index the WAL: it ends at frame") {
		t.Fatalf("the live source did not report the bad frame:\n%s", log.String())
	}
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
