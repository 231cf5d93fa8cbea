package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// fault is what the network does to one request.
type fault int

const (
	faultNone         fault = iota
	faultDropRequest        // the request never reaches the server
	faultDropResponse       // the server handles it; the response is lost
	faultDuplicate          // the server gets it twice
	faultServerError        // a 503 from a proxy; the server never sees it
	faultTruncate           // the response body is cut short
	faultReplayOld          // an old push is delivered again before this request
	numFaults
)

var faultNames = [...]string{"none", "drop-request", "drop-response", "duplicate", "503", "truncate", "replay-old"}

// transport is the simulated network: an http.RoundTripper that calls the
// server's handler in-process and injects faults chosen by the seed. Calls
// arrive one at a time (the simulation runs one operation at a time), so
// its random choices are reproducible.
type transport struct {
	w *world

	mu       sync.Mutex
	handler  http.Handler // nil while the server is down
	faultPct int          // chance of a fault per request, in percent
	pushes   [][]byte     // bodies of past pushes, for faultReplayOld
	marks    map[string]mark
	// requests counts the requests and trace hashes their sequence
	// (endpoint and fault of each): a replay must make the same ones, even
	// where no fault shows in the log (see TestReplayIsDeterministic).
	requests int
	trace    hash.Hash64
}

// calm runs fn without network faults (the simulation's own checks).
func (t *transport) calm(fn func()) {
	t.mu.Lock()
	pct := t.faultPct
	t.faultPct = 0
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.faultPct = pct
		t.mu.Unlock()
	}()
	fn()
}

// requestTrace is the number of requests so far and the hash of their
// sequence.
func (t *transport) requestTrace() (int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.requests, fmt.Sprintf("%016x", t.trace.Sum64())
}

func (t *transport) setHandler(h http.Handler) {
	t.mu.Lock()
	t.handler = h
	t.mu.Unlock()
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	t.mu.Lock()
	h := t.handler
	f := faultNone
	if t.faultPct > 0 && t.w.rng.IntN(100) < t.faultPct {
		f = fault(1 + t.w.rng.IntN(int(numFaults)-1))
	}
	var replay []byte
	if f == faultReplayOld && len(t.pushes) > 0 {
		replay = t.pushes[t.w.rng.IntN(len(t.pushes))]
	}
	cut := t.w.rng.Float64()
	endpoint := req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]
	t.requests++
	fmt.Fprintf(t.trace, "%s %d\n", endpoint, f)
	t.mu.Unlock()

	if f != faultNone {
		t.w.logf("net %s %s", faultNames[f], endpoint)
	}
	if h == nil {
		return nil, errors.New("sim: connection refused (server down)")
	}
	switch f {
	case faultDropRequest:
		return nil, errors.New("sim: connection reset before the request was sent")
	case faultServerError:
		return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Body: io.NopCloser(strings.NewReader("sim: proxy error")),
			Header: http.Header{}, Request: req}, nil
	case faultReplayOld:
		if replay != nil {
			// The pushes are kept decoded (see serve): replayed plain.
			plain := req.Clone(req.Context())
			plain.Header.Del("Content-Encoding")
			t.serve(h, plain, replay)
		}
	}
	rec := t.serve(h, req, body)
	if f == faultDuplicate {
		rec = t.serve(h, req, body)
	}
	if f == faultDropResponse {
		return nil, errors.New("sim: connection reset before the response arrived")
	}
	out := rec.Body.Bytes()
	if f == faultTruncate && len(out) > 2 {
		out = out[:int(cut*float64(len(out)-1))]
	}
	return &http.Response{StatusCode: rec.Code, Status: fmt.Sprintf("%d %s", rec.Code, http.StatusText(rec.Code)),
		Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(out)), ContentLength: -1, Request: req}, nil
}

// serve runs one request through the server, and feeds committed pushes to
// the model.
func (t *transport) serve(h http.Handler, req *http.Request, body []byte) (rec *httptest.ResponseRecorder) {
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec = httptest.NewRecorder()
	func() {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			}
		}()
		h.ServeHTTP(rec, r)
	}()
	if strings.HasSuffix(req.URL.Path, "/v2/pipeline") && rec.Code == 200 {
		if req.Header.Get("Content-Encoding") == "zstd" {
			// The client compresses pushes to our server: the model reads
			// them decoded (the server decoded them to run them).
			var err error
			if body, err = pushDecoder.DecodeAll(body, nil); err != nil {
				t.w.fail("decode a compressed pipeline request the server ran: %v", err)
				return rec
			}
		}
		t.observePush(h, req, body, rec.Body.Bytes())
	}
	return rec
}

var pushDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))

// latestRevision asks the server (past the faults) for its latest
// revision's sequence number.
func (t *transport) latestRevision(h http.Handler, req *http.Request) int64 {
	sel, _ := wire.EncodeSelector(wire.SelectorRange(0, 1))
	body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerPagesSelector: sel})
	r := req.Clone(req.Context())
	r.URL.Path = strings.TrimSuffix(r.URL.Path, "/v2/pipeline") + "/pull-updates"
	var rec *httptest.ResponseRecorder
	t.w.probe(func() { rec = t.serve(h, r, body) })
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if rec.Code != 200 || wire.NewFrameReader(rec.Body, 0).Next(hdr) != nil {
		t.w.fail("read the server's revision after a push: HTTP %d", rec.Code)
		return 0
	}
	return parseRevSeq(hdr.ServerRevision)
}

// observePush applies a push batch that committed to the model, in server
// commit order.
func (t *transport) observePush(h http.Handler, httpReq *http.Request, reqBody, respBody []byte) {
	req, err := hrana.DecodePipelineReq(reqBody)
	if err != nil || len(req.Requests) != 1 || req.Requests[0].Batch == nil {
		return
	}
	steps := req.Requests[0].Batch.Steps
	if len(steps) < 2 || steps[len(steps)-1].Stmt.SQL == nil || *steps[len(steps)-1].Stmt.SQL != "COMMIT" {
		return
	}
	var resp hrana.PipelineRespBody
	if err := json.Unmarshal(respBody, &resp); err != nil || len(resp.Results) != 1 || resp.Results[0].Response == nil {
		return
	}
	br := resp.Results[0].Response.BatchResult
	if br == nil || len(br.StepResults) != len(steps) || br.StepResults[len(steps)-1] == nil {
		return // not committed
	}
	t.mu.Lock()
	t.pushes = append(t.pushes, reqBody)
	t.mu.Unlock()
	if settle := settlement(steps); settle != nil {
		// A fork's settlement (a recovered copy's new client id): marks
		// only, no changes; the chain of each id goes on from its mark.
		t.w.logf("server committed a fork's settlement: marks %v", settle)
		t.mu.Lock()
		if t.marks == nil {
			t.marks = map[string]mark{}
		}
		for id, m := range settle {
			t.marks[id] = m
		}
		t.mu.Unlock()
	} else if len(steps) > 3 {
		var guard []any
		for _, a := range steps[2].Stmt.Args {
			guard = append(guard, a.V)
		}
		var hw []any
		for _, a := range steps[len(steps)-2].Stmt.Args {
			hw = append(hw, a.V)
		}
		t.w.logf("server committed a push: guard %v, high-water %v, %d steps", guard, hw, len(steps))
		t.checkChain(guard, hw)
	}
	client := ""
	if len(steps) > 3 {
		client, _ = steps[len(steps)-2].Stmt.Args[0].V.(string)
	}
	seq := t.latestRevision(h, httpReq)
	t.w.committed(seq)
	t.w.pushedAsCopy(client)
	t.w.model.beginBatch(client, seq, t.w.syncedSeq(client))
	for i, st := range steps {
		if br.StepResults[i] == nil {
			continue // a tolerated failure (duplicate column)
		}
		args := make([]any, len(st.Stmt.Args))
		for j, a := range st.Stmt.Args {
			args[j] = a.V
		}
		if err := t.w.model.apply(*st.Stmt.SQL, args); err != nil {
			t.w.fail("model: %v", err)
		}
	}
}

// simClock is virtual time: waiting advances it at once.
type simClock struct {
	mu  sync.Mutex
	now int64 // unix nanoseconds
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(0, c.now)
}

func (c *simClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now += int64(d)
	now := c.now
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Unix(0, now)
	return ch
}

func (c *simClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now += int64(d)
	c.mu.Unlock()
}

// seededIDs makes reproducible identifiers.
type seededIDs struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func (s *seededIDs) next() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%08x-%04x", s.rng.Uint32(), s.rng.Uint32()&0xffff)
}

// mark is a client's high-water mark as the committed pushes moved it.
type mark struct{ gen, id int64 }

// settlement returns the marks a batch of nothing but continuity guards and
// marks sets (syncactor's settleFork), by client id; nil for any other
// batch.
func settlement(steps []hrana.BatchStep) map[string]mark {
	if len(steps) < 4 {
		return nil
	}
	marks := map[string]mark{}
	for _, st := range steps[2 : len(steps)-1] {
		sql := *st.Stmt.SQL
		switch {
		case strings.HasPrefix(sql, "SELECT json(CASE WHEN coalesce((SELECT CASE WHEN pull_gen"):
		case strings.HasPrefix(sql, "INSERT INTO turso_sync_last_change_id") && len(st.Stmt.Args) == 3:
			id, _ := st.Stmt.Args[0].V.(string)
			gen, _ := st.Stmt.Args[1].V.(int64)
			last, _ := st.Stmt.Args[2].V.(int64)
			if !strings.HasSuffix(id, dbactor.ChainSuffix) {
				marks[id] = mark{gen, last}
			}
		default:
			return nil
		}
	}
	return marks
}

// checkChain checks exactly-once delivery on the server: each committed
// batch of a client starts exactly where the previous one ended (within a
// pull generation; a new generation starts at 0). A batch applied twice, or
// one that skips changes, breaks the chain.
func (t *transport) checkChain(guard, hw []any) {
	if len(guard) != 3 || len(hw) != 3 {
		t.w.fail("push batch without the expected guard and high-water steps: %v %v", guard, hw)
		return
	}
	client, _ := hw[0].(string)
	gen, _ := hw[1].(int64)
	last, _ := hw[2].(int64)
	floor, _ := guard[2].(int64)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.marks == nil {
		t.marks = map[string]mark{}
	}
	prev := t.marks[client]
	switch {
	case gen < prev.gen:
		t.w.fail("%s: a push of pull generation %d committed after generation %d", client, gen, prev.gen)
	case gen == prev.gen && floor != prev.id:
		t.w.fail("%s: a push of changes (%d, %d] committed after the server had %d of generation %d", client, floor, last, prev.id, gen)
	case gen > prev.gen && floor != 0:
		t.w.fail("%s: the first push of generation %d starts at %d", client, gen, floor)
	case last <= floor:
		t.w.fail("%s: an empty push (%d, %d] committed", client, floor, last)
	}
	t.marks[client] = mark{gen, last}
}
