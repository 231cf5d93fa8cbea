package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncdb/syncdb/wire/hrana"
)

// postCoded posts body with a Content-Encoding and returns the status, the
// body and the response's RequestEncodingHeader.
func postCoded(t *testing.T, url, coding string, body []byte) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if coding != "" {
		req.Header.Set("Content-Encoding", coding)
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
	return resp.StatusCode, string(out), resp.Header.Get(RequestEncodingHeader)
}

func zstdOf(t *testing.T, b []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

// zstdStream compresses head, n times mid, and tail, without holding
// the whole in memory, with our client's window (1 MiB).
func zstdStream(t *testing.T, head, mid []byte, n int, tail []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(head)
	for range n {
		enc.Write(mid)
	}
	enc.Write(tail)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
	}
}

// A zstd request body runs as the plain one would; the answer says the
// server takes them.
func TestZstdRequest(t *testing.T) {
	ts := newTestServer(t, Config{})
	plain, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(
		step("CREATE TABLE t(x)", nil), step("INSERT INTO t VALUES(?)", okStep(0), hrana.Text(strings.Repeat("z", 5000))))}})
	status, body, takes := postCoded(t, ts.url+"/v2/pipeline", "zstd", zstdOf(t, plain))
	if status != 200 || strings.Contains(body, `"error"`) {
		t.Fatalf("zstd pipeline: %d %s", status, body)
	}
	if takes != "zstd" {
		t.Errorf("%s = %q, want zstd", RequestEncodingHeader, takes)
	}
	if rows := ts.query(t, "", "SELECT length(x) FROM t"); len(rows) != 1 || rows[0][0].V != int64(5000) {
		t.Fatalf("the compressed insert gave %v", rows)
	}
	// The memory of the decoded body is given back once the request ends.
	waitFor(t, func() bool { return ts.mem.used.Load() == 0 }, "in-flight bytes %d after the requests", ts.mem.used.Load())
}

// Hostile compressed bodies get a 4xx and cost no more memory than the
// plain limit: a zip bomb stops at MaxPipelineRequestBytes decoded.
func TestZstdRequestHostile(t *testing.T) {
	const limit = 64 << 10
	ts := newTestServer(t, Config{MaxPipelineRequestBytes: limit})
	ok, _ := json.Marshal(hrana.PipelineReqBody{Requests: []hrana.StreamRequest{batch(step("SELECT 1", nil))}})
	// 256 MiB of spaces inside a valid JSON string: a few KiB compressed.
	bomb := zstdStream(t, []byte(`{"requests":[{"type":"execute","stmt":{"sql":"SELECT 1 `), bytes.Repeat([]byte(" "), 1<<20), 256, []byte(`"}}]}`))
	if len(bomb) > limit {
		t.Fatalf("the bomb is %d bytes compressed, more than the plain limit", len(bomb))
	}
	bigWindow := zstdOf(t, bytes.Repeat(ok, 1<<16), zstd.WithWindowSize(64<<20), zstd.WithSingleSegment(false))
	cases := []struct {
		name, coding string
		body         []byte
		status       int
		msg          string
	}{
		{"plain", "", ok, 200, "results"},
		{"identity", "identity", ok, 200, "results"},
		{"zstd", "zstd", zstdOf(t, ok), 200, "results"},
		{"client window", "zstd", zstdOf(t, ok, zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false)), 200, "results"},
		{"bomb", "zstd", bomb, 413, "once decoded"},
		{"not zstd", "zstd", ok, 400, "malformed zstd"},
		{"truncated", "zstd", zstdOf(t, ok)[:10], 400, "malformed zstd"},
		{"empty", "zstd", nil, 400, "malformed pipeline request"},
		{"window", "zstd", bigWindow, 400, "malformed zstd"},
		{"gzip", "gzip", ok, 415, "zstd or none"},
	}
	for _, c := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		status, body, _ := postCoded(t, ts.url+"/v2/pipeline", c.coding, c.body)
		runtime.ReadMemStats(&after)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, status, trunc([]byte(body)), c.status, c.msg)
		}
		// The server runs in this process: what it allocated for the
		// request is about the window, not what the body claims.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Errorf("%s: %d MiB allocated to refuse it", c.name, alloc>>20)
		}
	}
	waitFor(t, func() bool { return ts.mem.used.Load() == 0 }, "in-flight bytes %d after the requests", ts.mem.used.Load())
	// The server still works.
	ts.exec(t, "", "CREATE TABLE ok(x)")
}
