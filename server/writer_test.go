package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// openCursor starts a /v3/cursor request on the stream's baton and reads
// its header and first entry; the rest is the caller's to read (or not).
func (s *hstream) openCursor(sql string) (*bufio.Reader, func()) {
	s.t.Helper()
	body, _ := json.Marshal(hrana.CursorReqBody{Baton: s.baton, Batch: hrana.Batch{Steps: []hrana.BatchStep{{Stmt: hrana.Stmt{SQL: &sql}}}}})
	resp, err := http.Post(s.url+"/v3/cursor", "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		s.t.Fatalf("cursor: %d", resp.StatusCode)
	}
	br := bufio.NewReaderSize(resp.Body, 1<<16)
	var head hrana.CursorRespBody
	if err := json.Unmarshal(readLine(s.t, br), &head); err != nil || head.Baton == nil {
		s.t.Fatalf("cursor header: %v", err)
	}
	s.baton = head.Baton
	readEntry(s.t, br)
	return br, func() { resp.Body.Close() }
}

// pullRevision pulls from the server at url and returns the revision the
// answer is of, reading (and dropping) its pages. It calls no t method, so
// it may run on any goroutine.
func pullRevision(url string, req *syncpb.PullUpdatesReqProtoBody) (string, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return "", err
	}
	resp, err := http.Post(url+"/pull-updates", "application/protobuf", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("pull: %d %s", resp.StatusCode, msg)
	}
	fr := wire.NewFrameReader(resp.Body, 0)
	var hdr syncpb.PullUpdatesRespProtoBody
	if err := fr.Next(&hdr); err != nil {
		return "", err
	}
	for {
		if _, _, err := fr.NextPage(); errors.Is(err, io.EOF) {
			return hdr.ServerRevision, nil
		} else if err != nil {
			return "", err
		}
	}
}

func readLine(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("cursor ended: %v", err)
	}
	return line
}

func readEntry(t *testing.T, br *bufio.Reader) hrana.CursorEntry {
	t.Helper()
	var e hrana.CursorEntry
	if err := json.Unmarshal(readLine(t, br), &e); err != nil {
		t.Fatalf("cursor entry: %v", err)
	}
	return e
}

// endless is a query whose cursor streams until the statement timeout or
// the client goes away.
const endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i, randomblob(200) FROM n"

// Pulls never wait for a stream that holds the writer, even while it
// runs: a cursor inside a transaction streams rows on the writer
// connection (its client reading slowly, or not at all), and meanwhile a
// bootstrap, an incremental pull and a long poll answer. The cursor is
// still streaming when they are done.
func TestPullsDoNotWaitForARunningCursor(t *testing.T) {
	ts := newTestServer(t, Config{StatementTimeout: 2 * time.Minute, IOTimeout: 2 * time.Minute, StreamTxnTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t VALUES(1, 'a')")
	d, _ := ts.database(t.Context(), "default", false)
	rev := d.revision(d.hist.Latest().Seq)

	s := ts.stream(t, "", "/v3/pipeline")
	s.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(2, 'b')")
	br, stop := s.openCursor(endless)
	defer stop()
	if e := readEntry(t, br); e.Type != hrana.EntryRow {
		t.Fatalf("entry %+v", e)
	}
	// The client stops reading: the server blocks writing rows, inside
	// the statement.

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		for _, req := range []*syncpb.PullUpdatesReqProtoBody{
			{}, // a bootstrap
			{ClientRevision: rev},
			{ClientRevision: rev, LongPollTimeoutMs: 300},
		} {
			got, err := pullRevision(ts.url, req)
			if err != nil {
				done <- err
				return
			}
			if got != rev {
				done <- fmt.Errorf("pulled %s, want %s (the open transaction is not committed)", got, rev)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		stop() // lets the cursor, and so the pulls, end
		<-done
		t.Fatal("the pulls waited 30 s for a cursor on the writer")
	}
	t.Logf("pulls took %v while the cursor ran", time.Since(start))

	// The cursor was running all along: it still streams rows (it ends
	// only at the statement timeout, with an error entry).
	for range 1000 {
		if e := readEntry(t, br); e.Type != hrana.EntryRow {
			t.Fatalf("the cursor ended (%+v) before the pulls were answered: they waited for it", e)
		}
	}
}

// A cursor whose client stops reading is dropped after IOTimeout, and its
// stream, whose next baton the client never read, ends with it: the
// transaction it was in is rolled back and the writer is free at once,
// not when the transaction would expire (an hour here).
func TestStalledCursorLetsTheWriterGo(t *testing.T) {
	ts := newTestServer(t, Config{IOTimeout: 300 * time.Millisecond, StatementTimeout: 2 * time.Minute,
		StreamBusyTimeout: 30 * time.Second, StreamTxnTimeout: time.Hour, StreamIdleTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	s := ts.stream(t, "", "/v3/pipeline")
	s.do("BEGIN IMMEDIATE", "INSERT INTO t VALUES(1)")
	// Big rows, so that the socket buffers fill soon.
	_, stop := s.openCursor("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i, zeroblob(100000) FROM n")
	defer stop()
	// The client reads nothing more: the server's writes block once the
	// socket buffers are full.

	start := time.Now()
	ts.exec(t, "", "INSERT INTO t VALUES(2)") // waits for the writer (at most StreamBusyTimeout)
	t.Logf("the writer was free after %v", time.Since(start))
	if got := count(t, ts, "", "t"); got != "1\n" {
		t.Fatalf("rows: %s, want only the later insert (the stalled transaction rolled back)", got)
	}
}

// The idle closer does not close a database while a stream keeps its
// writer between two requests of a transaction: the transaction goes on
// and commits.
func TestIdleCloseSparesAnOpenTransaction(t *testing.T) {
	ts := newTestServer(t, Config{IdleTimeout: time.Hour, StreamIdleTimeout: time.Hour, StreamTxnTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	s := ts.stream(t, "", "/v2/pipeline")
	s.do("BEGIN", "INSERT INTO t VALUES(1)")
	d, _ := ts.database(t.Context(), "default", false)
	d.lastUsed.Store(time.Now().Add(-2 * time.Hour).UnixNano()) // idle for longer than IdleTimeout
	ts.closeIdle()
	s.do("INSERT INTO t VALUES(2)", "COMMIT")
	if got := count(t, ts, "", "t"); got != "2\n" {
		t.Fatalf("rows: %s, want 2", got)
	}
}

// A request of another stream does not make the idle holder of the writer
// unexpirable: only the holder's own requests stop its transaction's
// idle time.
func TestOtherStreamsDoNotShieldTheIdleHolder(t *testing.T) {
	ts := newTestServer(t, Config{StreamTxnTimeout: 200 * time.Millisecond, StreamBusyTimeout: 20 * time.Second, StreamIdleTimeout: time.Hour})
	ts.exec(t, "", "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	a := ts.stream(t, "", "/v2/pipeline")
	a.do("BEGIN", "INSERT INTO t VALUES(1)")
	b := ts.stream(t, "", "/v2/pipeline")
	b.do("SELECT 1")
	b.do("SELECT 2") // on b's baton
	ts.exec(t, "", "INSERT INTO t VALUES(2)")
	if got := count(t, ts, "", "t"); got != "1\n" {
		t.Fatalf("rows: %s, want 1 (a's rolled back)", got)
	}
}
