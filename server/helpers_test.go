package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// testServer is a Server behind httptest on loopback.
type testServer struct {
	*Server
	http *httptest.Server
	url  string
	dir  string

	token  string       // sent by the helpers that take no token, if set
	client *http.Client // what postPull uses; http.DefaultClient if nil
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return startTestServer(t, cfg, false)
}

// newStallingTestServer is newTestServer with small socket buffers on both
// ends of postPull's connections, so that a response the test does not
// read stalls the server within a few KiB. (On loopback the kernel lets
// them grow to megabytes: the test would need that much more data.)
func newStallingTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return startTestServer(t, cfg, true)
}

// smallBuffer is the socket buffer size asked for (Linux doubles it).
const smallBuffer = 4096

func setBuffer(opt int) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, smallBuffer) }); err != nil {
			return err
		}
		return serr
	}
}

// smallBufferListener listens on loopback; the connections it accepts
// inherit its send buffer size.
func smallBufferListener(t *testing.T) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: setBuffer(syscall.SO_SNDBUF)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func smallBufferClient() *http.Client {
	d := &net.Dialer{Control: setBuffer(syscall.SO_RCVBUF)}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func startTestServer(t *testing.T, cfg Config, small bool) *testServer {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.Handler())
	if small {
		hs.Listener.Close()
		hs.Listener = smallBufferListener(t)
	}
	hs.Start()
	ts := &testServer{Server: s, http: hs, url: hs.URL, dir: cfg.DataDir}
	if small {
		ts.client = smallBufferClient()
		t.Cleanup(ts.client.CloseIdleConnections)
	}
	t.Cleanup(func() {
		s.BeginShutdown()
		hs.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return ts
}

// exec runs statements as one Hrana batch (each step unconditional) and
// fails the test on any error.
func (ts *testServer) exec(t *testing.T, db string, stmts ...string) *hrana.BatchResult {
	t.Helper()
	steps := make([]hrana.BatchStep, len(stmts))
	for i, s := range stmts {
		steps[i] = hrana.BatchStep{Stmt: hrana.Stmt{SQL: &s}}
	}
	resp := ts.pipeline(t, db, "", hrana.StreamRequest{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: steps}})
	r := resp.Results[0]
	if r.Type != hrana.ResultOK {
		t.Fatalf("batch failed: %v", r.Error)
	}
	for i, e := range r.Response.BatchResult.StepErrors {
		if e != nil {
			t.Fatalf("step %d (%s): %v", i, stmts[i], e)
		}
	}
	return r.Response.BatchResult
}

// query returns the rows of one statement.
func (ts *testServer) query(t *testing.T, db, sql string, args ...hrana.Value) [][]hrana.Value {
	t.Helper()
	resp := ts.pipeline(t, db, "", hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: &sql, Args: args}})
	r := resp.Results[0]
	if r.Type != hrana.ResultOK {
		t.Fatalf("%s: %v", sql, r.Error)
	}
	return r.Response.StmtResult.Rows
}

func (ts *testServer) dbURL(db string) string {
	if db == "" || db == "default" {
		return ts.url
	}
	return ts.url + "/db/" + db
}

func (ts *testServer) pipeline(t *testing.T, db, token string, reqs ...hrana.StreamRequest) *hrana.PipelineRespBody {
	t.Helper()
	body, err := json.Marshal(hrana.PipelineReqBody{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		token = ts.token
	}
	status, out := post(t, ts.dbURL(db)+"/v2/pipeline", "application/json", token, body)
	if status != http.StatusOK {
		t.Fatalf("pipeline: %d %s", status, out)
	}
	resp, err := hrana.DecodePipelineResp(out)
	if err != nil {
		t.Fatalf("decode pipeline response: %v\n%s", err, out)
	}
	return resp
}

func post(t *testing.T, url, ctype, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// pulled is a decoded /pull-updates response.
type pulled struct {
	hdr   *syncpb.PullUpdatesRespProtoBody
	pages map[uint32][]byte // by 1-based page number
	order []uint32
}

func (ts *testServer) pull(t *testing.T, db string, req *syncpb.PullUpdatesReqProtoBody) *pulled {
	t.Helper()
	p, status, msg := ts.tryPull(t, db, req)
	if status != http.StatusOK {
		t.Fatalf("pull: %d %s", status, msg)
	}
	return p
}

func (ts *testServer) tryPull(t *testing.T, db string, req *syncpb.PullUpdatesReqProtoBody) (*pulled, int, string) {
	t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	status, out := post(t, ts.dbURL(db)+"/pull-updates", "application/protobuf", ts.token, body)
	if status != http.StatusOK {
		return nil, status, string(out)
	}
	return decodePull(t, out), status, ""
}

var testDecoder, _ = zstd.NewReader(nil)

func decodePull(t *testing.T, out []byte) *pulled {
	t.Helper()
	fr := wire.NewFrameReader(bytes.NewReader(out), 0)
	p := &pulled{hdr: &syncpb.PullUpdatesRespProtoBody{}, pages: map[uint32][]byte{}}
	if err := fr.Next(p.hdr); err != nil {
		t.Fatalf("pull header: %v", err)
	}
	if (p.hdr.RawEncoding == nil) == (p.hdr.ZstdEncoding == nil) {
		t.Fatalf("header must carry exactly one encoding: %v", p.hdr)
	}
	if p.hdr.Protocol != syncpb.PullUpdatesProtocol_PULL_UPDATES_PROTOCOL_PAGES {
		t.Fatalf("header protocol %v", p.hdr.Protocol)
	}
	readPages(t, fr, p)
	return p
}

// readPages reads the rest of a pull response into p, whose header is
// read.
func readPages(t *testing.T, fr *wire.FrameReader, p *pulled) {
	t.Helper()
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("pull page: %v", err)
		}
		data := append([]byte(nil), page...)
		if p.hdr.ZstdEncoding != nil {
			if data, err = testDecoder.DecodeAll(page, nil); err != nil {
				t.Fatalf("zstd page: %v", err)
			}
		}
		if len(data) != wire.PageSize {
			t.Fatalf("page %d has %d bytes", id, len(data))
		}
		if _, dup := p.pages[uint32(id+1)]; dup {
			t.Fatalf("page %d sent twice", id)
		}
		p.pages[uint32(id+1)] = data
		p.order = append(p.order, uint32(id+1))
	}
}

// image is a database file assembled from pulled pages.
type image map[uint32][]byte

func (im image) apply(p *pulled) {
	for pg, data := range p.pages {
		im[pg] = data
	}
	for pg := range im {
		if uint64(pg) > p.hdr.DbSize {
			delete(im, pg)
		}
	}
}

// write writes the image as a database file and returns its path. Missing
// pages are zeros.
func (im image) write(t *testing.T, size uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img.db")
	buf := make([]byte, size*wire.PageSize)
	for pg, data := range im {
		copy(buf[(uint64(pg)-1)*wire.PageSize:], data)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// openImage opens an image file read-only with SQLite.
func openImage(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func integrityOK(t *testing.T, db *sql.DB) {
	t.Helper()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
}

func selector(t *testing.T, ids ...uint32) []byte {
	t.Helper()
	bm := roaring.BitmapOf(ids...)
	b, err := wire.EncodeSelector(bm)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func text(s string) hrana.Value { return hrana.Value{V: s} }

func mustInt(t *testing.T, v hrana.Value) int64 {
	t.Helper()
	n, ok := v.V.(int64)
	if !ok {
		t.Fatalf("want an integer, got %#v", v.V)
	}
	return n
}

func fmtRows(rows [][]hrana.Value) string {
	var b bytes.Buffer
	for _, r := range rows {
		for i, v := range r {
			if i > 0 {
				b.WriteByte('|')
			}
			fmt.Fprint(&b, v.V)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// metricValue reads one unlabelled metric from the server's registry.
func (ts *testServer) metricValue(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := ts.gather.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			return m.Counter.GetValue()
		}
	}
	return 0
}
