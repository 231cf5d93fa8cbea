package netactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/zstdchunks"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// failThen answers the first n requests with status (and a text body), then
// a valid stream of 3 pages.
func failThen(n int, status int, calls *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if int(calls.Add(1)) <= n {
			http.Error(w, "try later", status)
			return
		}
		writeStream(w, "rev-1", 3)
	}
}

// 503 twice, then success: retried, waiting on the injected clock with the
// default policy (200ms doubling, ±50% jitter).
func TestPullRetries503(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, failThen(2, http.StatusServiceUnavailable, &calls))
	clock := newFakeClock()
	pid := spawn(t, Config{URL: hs.URL, Clock: clock})
	start := time.Now()
	res := mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{})
	if calls.Load() != 3 || res.info.Pages != 3 || len(res.pages) != 3 {
		t.Fatalf("calls %d, info %+v", calls.Load(), res.info)
	}
	waits := clock.Waits()
	if len(waits) != 2 {
		t.Fatalf("waits %v", waits)
	}
	if waits[0] < 100*time.Millisecond || waits[0] > 300*time.Millisecond ||
		waits[1] < 200*time.Millisecond || waits[1] > 600*time.Millisecond {
		t.Fatalf("backoff waits %v, want ~200ms and ~400ms with jitter", waits)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v: slept on the wall clock?", el)
	}
}

// 429 is retried too; with NoJitter the waits are exact.
func TestPullRetries429(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, failThen(3, http.StatusTooManyRequests, &calls))
	clock := newFakeClock()
	pid := spawn(t, Config{URL: hs.URL, Clock: clock, Retry: RetryPolicy{NoJitter: true, InitialInterval: 100 * time.Millisecond, MaxInterval: 250 * time.Millisecond}})
	mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{})
	if calls.Load() != 4 {
		t.Fatalf("calls %d", calls.Load())
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond}
	if got := clock.Waits(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
}

// Retries stop at MaxAttempts, or when MaxElapsedTime has passed on the
// injected clock; the last error is returned.
func TestRetryGivesUp(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, failThen(1000, http.StatusBadGateway, &calls))
	pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock(), Retry: RetryPolicy{MaxAttempts: 4}})
	_, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{})
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.Status != http.StatusBadGateway || !herr.Temporary() || calls.Load() != 4 {
		t.Fatalf("err %v after %d calls", err, calls.Load())
	}

	calls.Store(0)
	clock := newFakeClock()
	pid2 := spawn(t, Config{URL: hs.URL, Clock: clock, Retry: RetryPolicy{NoJitter: true}})
	_, err = pull(context.Background(), pid2, &syncpb.PullUpdatesReqProtoBody{})
	if !errors.As(err, &herr) {
		t.Fatalf("err %v", err)
	}
	var total time.Duration
	for _, w := range clock.Waits() {
		total += w
	}
	// 0.2+0.4+0.8+1.6+3.2+5+5+5+5 = 26.2s; the next wait would pass 30s.
	if total < 25*time.Second || total > 31*time.Second || int(calls.Load()) != len(clock.Waits())+1 {
		t.Fatalf("waited %v over %d calls (%v)", total, calls.Load(), clock.Waits())
	}
}

// Non-retryable statuses fail at once: 410 wraps ErrRevisionGone, 401 is an
// HTTPError carrying the body.
func TestPullPermanentStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		gone   bool
		want   string
	}{
		{http.StatusGone, "revision pruned", true, "no longer serves"},
		{http.StatusUnauthorized, "bad token: expired", false, "check the auth token"},
		{http.StatusForbidden, "read only", false, "not allowed"},
		{http.StatusBadRequest, "malformed", false, "400 Bad Request"},
		{http.StatusNotImplemented, "nope", false, "501"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			var calls atomic.Int32
			hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				http.Error(w, tc.body, tc.status)
			})
			pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock()})
			res, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: "r"})
			var herr *HTTPError
			if !errors.As(err, &herr) || herr.Status != tc.status || herr.Endpoint != EndpointPull ||
				strings.TrimSpace(herr.Body) != tc.body {
				t.Fatalf("err = %#v", err)
			}
			if errors.Is(err, ErrRevisionGone) != tc.gone {
				t.Fatalf("ErrRevisionGone: %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.body) || !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q", msg)
			}
			if calls.Load() != 1 || len(res.headers) != 0 {
				t.Fatalf("%d calls, %d headers", calls.Load(), len(res.headers))
			}
		})
	}
}

// Once the header was handed out, a truncated stream is returned (not
// retried): the caller restarts the pull.
func TestPullTruncatedAfterHeader(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusOK)
		wire.WriteDelimited(w, &syncpb.PullUpdatesRespProtoBody{ServerRevision: "r", DbSize: 3, RawEncoding: &syncpb.PageSetRawEncodingProto{}})
		w.Write(wire.AppendPage(nil, 0, testPage(1)))
		frame := wire.AppendPage(nil, 1, testPage(2))
		w.Write(frame[:len(frame)/2])
		abort(w)
	})
	pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock()})
	res, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 1 || len(res.headers) != 1 || len(res.pages) != 1 {
		t.Fatalf("%d calls, %d headers, %d pages", calls.Load(), len(res.headers), len(res.pages))
	}
}

// A body cut before the header is complete (or empty) is retried.
func TestPullCutBeforeHeaderRetried(t *testing.T) {
	hdr, _ := wire.AppendDelimited(nil, &syncpb.PullUpdatesRespProtoBody{ServerRevision: "a-long-revision", DbSize: 1, RawEncoding: &syncpb.PageSetRawEncodingProto{}})
	var calls atomic.Int32
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusOK)
			w.Write(hdr[:len(hdr)/2])
			abort(w)
		case 2:
			w.WriteHeader(http.StatusOK) // empty body
		default:
			writeStream(w, "rev", 1)
		}
	})
	clock := newFakeClock()
	pid := spawn(t, Config{URL: hs.URL, Clock: clock})
	res := mustPull(t, pid, &syncpb.PullUpdatesReqProtoBody{})
	if calls.Load() != 3 || len(clock.Waits()) != 2 || len(res.pages) != 1 {
		t.Fatalf("%d calls, waits %v, %d pages", calls.Load(), clock.Waits(), len(res.pages))
	}
}

// Protocol violations are errors, not retried.
func TestPullBadStreams(t *testing.T) {
	page := func(id uint64, data []byte) []byte { return wire.AppendPage(nil, id, data) }
	raw := &syncpb.PageSetRawEncodingProto{}
	for _, tc := range []struct {
		name    string
		hdr     *syncpb.PullUpdatesRespProtoBody
		body    []byte
		headers int
	}{
		{"no encoding", &syncpb.PullUpdatesRespProtoBody{DbSize: 1}, nil, 0},
		{"both encodings", &syncpb.PullUpdatesRespProtoBody{RawEncoding: raw, ZstdEncoding: &syncpb.PageSetZstdEncodingProto{}}, nil, 0},
		{"mvcc stream", &syncpb.PullUpdatesRespProtoBody{RawEncoding: raw, StreamKind: syncpb.PullUpdatesStreamKind_PULL_UPDATES_STREAM_KIND_MVCC_LOGICAL_LOG}, nil, 0},
		{"short page", &syncpb.PullUpdatesRespProtoBody{RawEncoding: raw}, page(0, make([]byte, 100)), 1},
		{"long page", &syncpb.PullUpdatesRespProtoBody{RawEncoding: raw}, page(0, make([]byte, 5000)), 1},
		{"bad zstd page", &syncpb.PullUpdatesRespProtoBody{ZstdEncoding: &syncpb.PageSetZstdEncodingProto{}}, page(0, []byte("not zstd")), 1},
		{"page id overflow", &syncpb.PullUpdatesRespProtoBody{RawEncoding: raw}, page(1<<32-1, testPage(0)), 1},
		{"garbage frame", &syncpb.PullUpdatesRespProtoBody{RawEncoding: raw}, []byte{3, 0xff, 0xff, 0xff}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				wire.WriteDelimited(w, tc.hdr)
				w.Write(tc.body)
			})
			pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock()})
			res, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{})
			if !errors.Is(err, ErrBadStream) {
				t.Fatalf("err = %v", err)
			}
			if calls.Load() != 1 || len(res.headers) != tc.headers || len(res.pages) != 0 {
				t.Fatalf("%d calls, %d headers, %d pages", calls.Load(), len(res.headers), len(res.pages))
			}
		})
	}
}

// A response body in a content coding that was not asked for, or damaged,
// is an error, not retried.
func TestPullBadContentEncoding(t *testing.T) {
	var stream bytes.Buffer
	wire.WriteDelimited(&stream, &syncpb.PullUpdatesRespProtoBody{RawEncoding: &syncpb.PageSetRawEncodingProto{}, DbSize: 300})
	for i := range 300 {
		stream.Write(wire.AppendPage(nil, uint64(i), testPage(byte(i))))
	}
	var z bytes.Buffer
	zw := zstdchunks.NewWriter(&z)
	zw.Write(stream.Bytes())
	zw.Close()
	damaged := bytes.Clone(z.Bytes())
	damaged[len(damaged)/2] ^= 0xff
	for _, tc := range []struct {
		name     string
		zstd     bool // the client asks for it
		encoding string
		body     []byte
		ok       bool
	}{
		{"zstd stream", true, "zstd", z.Bytes(), true},
		{"zstd not asked for", false, "zstd", z.Bytes(), false},
		{"gzip", true, "gzip", stream.Bytes(), false},
		{"damaged zstd", true, "zstd", damaged, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if got, want := r.Header.Get("Accept-Encoding"), map[bool]string{false: "application/protobuf", true: "application/protobuf, zstd"}[tc.zstd]; got != want {
					t.Errorf("Accept-Encoding %q, want %q", got, want)
				}
				w.Header().Set("Content-Encoding", tc.encoding)
				w.Write(tc.body)
			})
			pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock(), ZstdPages: tc.zstd})
			res, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{})
			if tc.ok {
				if err != nil || len(res.pages) != 300 || !bytes.Equal(res.pages[300], testPage(byte(299%256))) {
					t.Fatalf("%d pages, %v", len(res.pages), err)
				}
				return
			}
			if err == nil || calls.Load() != 1 {
				t.Fatalf("%d calls, err %v", calls.Load(), err)
			}
		})
	}
}

// A callback error aborts the stream and is returned as is.
func TestPullCallbackErrors(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeStream(w, "rev", 5)
	})
	pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock()})
	stopHere := errors.New("disk full")
	pages := 0
	_, err := pid.PullUpdates(context.Background(), &messages.PullUpdates{
		OnPage: func(pgno uint32, data []byte) error {
			pages++
			if pgno == 2 {
				return stopHere
			}
			return nil
		},
	})
	if !errors.Is(err, stopHere) || pages != 2 {
		t.Fatalf("err %v after %d pages", err, pages)
	}
	_, err = pid.PullUpdates(context.Background(), &messages.PullUpdates{
		OnHeader: func(*syncpb.PullUpdatesRespProtoBody) error { return stopHere },
	})
	if !errors.Is(err, stopHere) || calls.Load() != 2 {
		t.Fatalf("header callback: %v, %d calls", err, calls.Load())
	}
}

// Headers and bodies are as the protocol specifies.
func TestRequestHeaders(t *testing.T) {
	type seen struct {
		path   string
		header http.Header
		body   []byte
	}
	got := make(chan seen, 10)
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.URL.Path, r.Header.Clone(), b}
		if r.URL.Path == "/db/x/v2/pipeline" {
			w.Write([]byte(`{"baton":null,"base_url":null,"results":[]}`))
			return
		}
		writeStream(w, "rev", 1)
	})
	pid := spawn(t, Config{
		URL:              hs.URL + "/db/x/",
		AuthToken:        func() (string, error) { return "sekrit", nil },
		EncryptionKey:    "a2V5",
		EncryptionCipher: "aegis256",
		ZstdPages:        false,
	})
	req := &syncpb.PullUpdatesReqProtoBody{ClientRevision: "r1", LongPollTimeoutMs: 1000}
	mustPull(t, pid, req)
	s := <-got
	want, _ := proto.Marshal(req)
	if s.path != "/db/x/pull-updates" || string(s.body) != string(want) {
		t.Fatalf("pull: path %s body %x", s.path, s.body)
	}
	for k, v := range map[string]string{
		"Authorization":             "Bearer sekrit",
		"X-Turso-Encryption-Key":    "a2V5",
		"X-Turso-Encryption-Cipher": "aegis256",
		"Content-Type":              "application/protobuf",
		"Accept-Encoding":           "application/protobuf",
		"User-Agent":                "syncdb-go",
	} {
		if g := s.header.Get(k); g != v {
			t.Errorf("pull header %s = %q, want %q", k, g, v)
		}
	}

	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1")}); err != nil {
		t.Fatal(err)
	}
	s = <-got
	if s.path != "/db/x/v2/pipeline" || !strings.HasPrefix(string(s.body), `{"baton":null,"requests":[{"type":"batch"`) {
		t.Fatalf("pipeline: path %s body %s", s.path, s.body)
	}
	for k, v := range map[string]string{
		"Authorization":             "Bearer sekrit",
		"X-Turso-Encryption-Key":    "a2V5",
		"X-Turso-Encryption-Cipher": "aegis256",
		"Content-Type":              "application/json",
		"User-Agent":                "syncdb-go",
	} {
		if g := s.header.Get(k); g != v {
			t.Errorf("pipeline header %s = %q, want %q", k, g, v)
		}
	}

	// No token callback, no encryption: no such headers; a custom agent;
	// ZstdPages asks for zstd.
	pid2 := spawn(t, Config{URL: hs.URL + "/db/x", UserAgent: "test-agent", ZstdPages: true})
	mustPull(t, pid2, &syncpb.PullUpdatesReqProtoBody{})
	s = <-got
	for _, k := range []string{"Authorization", "X-Turso-Encryption-Key", "X-Turso-Encryption-Cipher"} {
		if v, ok := s.header[k]; ok {
			t.Errorf("unexpected header %s: %q", k, v)
		}
	}
	if ua := s.header.Get("User-Agent"); ua != "test-agent" {
		t.Errorf("user agent %q", ua)
	}
	var sent syncpb.PullUpdatesReqProtoBody
	if err := proto.Unmarshal(s.body, &sent); err != nil || sent.Encoding != syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD {
		t.Fatalf("zstd request: %v %v", &sent, err)
	}

	// A failing token callback fails the request without sending it.
	tokErr := errors.New("vault sealed")
	pid3 := spawn(t, Config{URL: hs.URL, AuthToken: func() (string, error) { return "", tokErr }, Clock: newFakeClock()})
	if _, err := pull(context.Background(), pid3, nil); !errors.Is(err, tokErr) {
		t.Fatalf("token error: %v", err)
	}
	select {
	case s := <-got:
		t.Fatalf("request sent despite the token error: %s", s.path)
	default:
	}
}

// A non-retryable pipeline (a push) is sent once even on a 503; a
// retryable one is retried.
func TestPipelineRetryOnlyIfRetryable(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1)%2 == 1 {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"baton":null,"base_url":null,"results":[{"type":"error","error":{"message":"m","code":"C"}}]}`))
	})
	clock := newFakeClock()
	pid := spawn(t, Config{URL: hs.URL, Clock: clock})
	_, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("INSERT INTO t VALUES (1)")})
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.Status != http.StatusServiceUnavailable || herr.Endpoint != EndpointPipeline || calls.Load() != 1 {
		t.Fatalf("push: %v after %d calls", err, calls.Load())
	}
	if len(clock.Waits()) != 0 {
		t.Fatalf("push waited %v", clock.Waits())
	}

	calls.Store(0)
	resp, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true})
	if err != nil || calls.Load() != 2 || len(clock.Waits()) != 1 {
		t.Fatalf("read: %v after %d calls, waits %v", err, calls.Load(), clock.Waits())
	}
	if r := resp.Results[0]; r.Type != hrana.ResultError || r.Error.Code != "C" {
		t.Fatalf("results %+v", resp.Results)
	}
}

// A pipeline response cut short is retried only if Retryable; a malformed
// or oversized one is an error.
func TestPipelineBadResponses(t *testing.T) {
	var calls atomic.Int32
	var mode atomic.Value
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n := calls.Add(1)
		switch mode.Load() {
		case "cut":
			if n == 1 {
				w.Header().Set("Content-Length", "100")
				w.Write([]byte(`{"baton":null,`))
				abort(w)
			}
			w.Write([]byte(`{"baton":null,"base_url":null,"results":[]}`))
		case "json":
			w.Write([]byte(`{"results":[{"type":"weird"}]}`))
		case "big":
			w.Write([]byte(`{"baton":null,"base_url":null,"results":[]}` + strings.Repeat(" ", 100)))
		}
	})
	pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock(), MaxPipelineResponse: 64})

	mode.Store("cut")
	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1")}); err == nil || calls.Load() != 1 {
		t.Fatalf("cut push: %v after %d calls", err, calls.Load())
	}
	calls.Store(0)
	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true}); err != nil || calls.Load() != 2 {
		t.Fatalf("cut read: %v after %d calls", err, calls.Load())
	}

	calls.Store(0)
	mode.Store("json")
	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true}); !errors.Is(err, hrana.ErrInvalid) || calls.Load() != 1 {
		t.Fatalf("bad json: %v after %d calls", err, calls.Load())
	}
	calls.Store(0)
	mode.Store("big")
	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true}); err == nil || !strings.Contains(err.Error(), "larger than 64 bytes") || calls.Load() != 1 {
		t.Fatalf("big: %v after %d calls", err, calls.Load())
	}
}

// Cancelling the caller's context ends a long poll promptly, and the server
// sees the request go away.
func TestCancelLongPoll(t *testing.T) {
	entered := make(chan struct{}, 1)
	gone := make(chan struct{}, 1)
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only after the body
		entered <- struct{}{}
		<-r.Context().Done()
		gone <- struct{}{}
	})
	pid := spawn(t, Config{URL: hs.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := pull(ctx, pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: "r", LongPollTimeoutMs: 600_000})
		done <- err
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancellation did not end the long poll")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not see the request cancelled")
	}
}

// Cancelling during a backoff wait returns at once, without waiting for the
// clock.
func TestCancelDuringBackoff(t *testing.T) {
	var calls atomic.Int32
	hs := faultServer(t, failThen(1000, http.StatusServiceUnavailable, &calls))
	clock := newFakeClock()
	clock.block = true
	pid := spawn(t, Config{URL: hs.URL, Clock: clock})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := pid.Pipeline(ctx, &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if calls.Load() != 1 || len(clock.Waits()) != 1 {
		t.Fatalf("%d calls, waits %v", calls.Load(), clock.Waits())
	}
}

// A long poll in flight does not delay other requests.
func TestConcurrentRequests(t *testing.T) {
	release := make(chan struct{})
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		var req syncpb.PullUpdatesReqProtoBody
		b, _ := io.ReadAll(r.Body)
		proto.Unmarshal(b, &req)
		if req.LongPollTimeoutMs > 0 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		writeStream(w, "rev", 2)
	})
	pid := spawn(t, Config{URL: hs.URL})
	poll := make(chan error, 1)
	go func() {
		_, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: "r", LongPollTimeoutMs: 60_000})
		poll <- err
	}()
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := pull(ctx, pid, &syncpb.PullUpdatesReqProtoBody{ServerPagesSelector: []byte{}})
		cancel()
		if err != nil {
			t.Fatalf("page fetch during a long poll: %v", err)
		}
	}
	select {
	case err := <-poll:
		t.Fatalf("long poll ended early: %v", err)
	default:
	}
	close(release)
	if err := <-poll; err != nil {
		t.Fatal(err)
	}
}

// Without a URL every request fails with ErrNoURL; stats still work.
func TestNoURL(t *testing.T) {
	pid := spawn(t, Config{})
	if _, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{}); !errors.Is(err, ErrNoURL) {
		t.Fatalf("pull: %v", err)
	}
	if _, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1")}); !errors.Is(err, ErrNoURL) {
		t.Fatalf("pipeline: %v", err)
	}
	if c, err := pid.Stats(context.Background()); err != nil || c != (messages.NetCounters{}) {
		t.Fatalf("stats: %+v %v", c, err)
	}
}

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":         "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/":        "http://127.0.0.1:8080",
		"https://h/db/name//":           "https://h/db/name",
		"libsql://db-org.turso.io":      "https://db-org.turso.io",
		"turso://db-org.turso.io/":      "https://db-org.turso.io",
		"LIBSQL://db-org.aws.turso.io/": "https://db-org.aws.turso.io",
	} {
		if got, err := NormalizeURL(in); err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://h", "h:8080", "http://", "http://h/?a=b", "::"} {
		if got, err := NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) = %q, want an error", bad, got)
		}
	}
	sys := actors.NewSystem(actors.Options{})
	defer sys.Stop()
	if _, err := Spawn(sys, Config{URL: "ftp://h"}); err == nil {
		t.Fatal("Spawn accepted a bad URL")
	}
}

func TestHTTPErrorMessage(t *testing.T) {
	e := &HTTPError{Status: 500, Body: strings.Repeat("é", 1000), Endpoint: EndpointPipeline}
	msg := e.Error()
	if !strings.Contains(msg, "/v2/pipeline: HTTP 500 Internal Server Error: éé") || !strings.HasSuffix(msg, "…") || len(msg) > 700 {
		t.Fatalf("message %q", msg)
	}
	if !strings.Contains(msg, "é…") {
		t.Fatal("truncation split a rune")
	}
}

// The backoff wait itself ends with the request's context, whatever the
// clock does.
func TestRetryHonoursContext(t *testing.T) {
	clock := newFakeClock()
	clock.block = true
	a := &netActor{cfg: Config{Clock: clock, Retry: RetryPolicy{}.withDefaults()}, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	attempts := 0
	start := time.Now()
	err := a.retry(ctx, "test", true, time.Time{}, func() error { attempts++; return lost(io.ErrUnexpectedEOF) })
	if !errors.Is(err, context.DeadlineExceeded) || attempts != 1 || len(clock.Waits()) != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v, %d attempts, waits %v, after %v", err, attempts, clock.Waits(), time.Since(start))
	}
}

// A pull with Keep returns copies of the pages it names, by page number,
// and reports the first page it does not name instead of keeping it.
func TestPullKeep(t *testing.T) {
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) { writeStream(w, "rev", 4) })
	pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock()})
	info, err := pid.PullUpdates(context.Background(), &messages.PullUpdates{Keep: roaring.BitmapOf(1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Kept) != 2 || !bytes.Equal(info.Kept[2], testPage(2)) || !bytes.Equal(info.Kept[3], testPage(3)) {
		t.Fatalf("kept %d pages: %v", len(info.Kept), slices.Sorted(maps.Keys(info.Kept)))
	}
	if info.Unasked != 1 || info.Pages != 4 {
		t.Fatalf("unasked page %d, %d pages; want page 1 of 4", info.Unasked, info.Pages)
	}
	// Without Keep nothing is kept.
	if info, err := pid.PullUpdates(context.Background(), &messages.PullUpdates{}); err != nil || info.Kept != nil || info.Unasked != 0 {
		t.Fatalf("without Keep: %v, kept %d, unasked %d", err, len(info.Kept), info.Unasked)
	}
}

// A pull cancelled from its OnPage hands out no page after that one: the
// page loop checks ctx, so the pages already read ahead (the frame
// reader's buffer) are not delivered once the caller's Ask returned.
func TestPullCancelledStopsPages(t *testing.T) {
	const pages, cancelAt = 600, 200
	hs := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeStream(w, "rev", pages)
	})
	pid := spawn(t, Config{URL: hs.URL, Clock: newFakeClock()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var returned atomic.Bool
	var after atomic.Int32 // OnPage calls that began after the Ask returned
	_, err := pid.PullUpdates(ctx, &messages.PullUpdates{
		OnPage: func(pgno uint32, data []byte) error {
			if returned.Load() {
				after.Add(1)
			}
			if pgno == cancelAt {
				cancel()
				// The page in flight outlives the Ask, as a slow sink's would.
				for deadline := time.Now().Add(5 * time.Second); !returned.Load() && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			return nil
		},
	})
	returned.Store(true)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("pull: %v, want context.Canceled", err)
	}
	time.Sleep(100 * time.Millisecond) // room for late pages, were there any
	if n := after.Load(); n > 0 {
		t.Fatalf("%d OnPage calls after the cancelled Ask returned", n)
	}
}
