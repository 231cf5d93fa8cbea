package netactor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/server"
	"github.com/syncdb/syncdb/wire/hrana"
)

// bigBatch is a pipeline request of n inserts, well above
// minCompressedRequest and as repetitive as a push.
func bigBatch(n int) hrana.PipelineReqBody {
	stmts := []string{"CREATE TABLE IF NOT EXISTS big(id INTEGER PRIMARY KEY, v TEXT)"}
	for i := range n {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO big VALUES(%d, '%s')", i, strings.Repeat("abcdefghij", 10)))
	}
	return batch(stmts...)
}

// Against our server, the first request goes plain and the server's answer
// lets the next large ones go compressed; small ones stay plain.
func TestPipelineZstdRealServer(t *testing.T) {
	url, counts := realServer(t, server.Config{})
	h := spawn(t, Config{URL: url})
	exec(t, h, "SELECT 1") // learns that the server takes zstd
	body := bigBatch(500)
	plain, _ := json.Marshal(body)
	before := counts.in.Load()
	resp, err := h.Pipeline(context.Background(), &messages.Pipeline{Body: body})
	if err != nil || resp.Results[0].Type != hrana.ResultOK {
		t.Fatalf("big batch: %v %+v", err, resp)
	}
	sent := counts.in.Load() - before
	if sent*10 > int64(len(plain)) {
		t.Errorf("the batch of %d bytes arrived as %d bytes: not compressed", len(plain), sent)
	}
	br := exec(t, h, "SELECT count(*) FROM big")
	if got := br.StepResults[0].Rows[0][0].V; got != int64(500) {
		t.Fatalf("the compressed batch inserted %v rows, want 500", got)
	}
	before = counts.in.Load()
	exec(t, h, "SELECT 2")
	if small, _ := json.Marshal(batch("SELECT 2")); counts.in.Load()-before != int64(len(small)) {
		t.Errorf("a small request arrived as %d bytes, want %d plain", counts.in.Load()-before, len(small))
	}
}

// fakeHrana answers every pipeline with an empty batch result, recording
// each request's Content-Encoding; advertise says whether its answers
// carry the header, refuse whether it answers compressed requests 415.
type fakeHrana struct {
	mu        sync.Mutex
	codings   []string
	advertise bool
	refuse    bool
}

func (f *fakeHrana) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	coding := r.Header.Get("Content-Encoding")
	f.mu.Lock()
	f.codings = append(f.codings, coding)
	advertise, refuse := f.advertise, f.refuse
	f.mu.Unlock()
	if advertise {
		w.Header().Set(requestEncodingHeader, "zstd")
	}
	if coding != "" && refuse {
		http.Error(w, "no", http.StatusUnsupportedMediaType)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"batch","result":{"step_results":[null],"step_errors":[null]}}}]}`)
}

func (f *fakeHrana) seen() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.codings))
	for i, c := range f.codings {
		out[i] = map[bool]string{true: "plain", false: c}[c == ""]
	}
	return strings.Join(out, " ")
}

func TestPipelineZstdNegotiation(t *testing.T) {
	big := bigBatch(200)
	// run sends n big requests to f, calling between(i) before request i.
	run := func(t *testing.T, f *fakeHrana, n int, between func(i int)) {
		t.Helper()
		h := spawn(t, Config{URL: faultServer(t, f.ServeHTTP).URL})
		for i := range n {
			f.mu.Lock()
			between(i)
			f.mu.Unlock()
			if _, err := h.Pipeline(context.Background(), &messages.Pipeline{Body: big}); err != nil {
				t.Fatalf("pipeline %d: %v", i, err)
			}
		}
	}
	t.Run("sqld", func(t *testing.T) {
		// A server that never says it takes zstd (sqld) gets plain requests.
		f := &fakeHrana{}
		run(t, f, 3, func(int) {})
		if got := f.seen(); got != "plain plain plain" {
			t.Errorf("requests: %s", got)
		}
	})
	t.Run("ours", func(t *testing.T) {
		f := &fakeHrana{advertise: true}
		run(t, f, 3, func(int) {})
		if got := f.seen(); got != "plain zstd zstd" {
			t.Errorf("requests: %s", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		// The server behind the URL said it takes zstd, then no longer does
		// (415): the same request goes again plain at once (it ran
		// nothing), and the next ones plain.
		f := &fakeHrana{advertise: true}
		run(t, f, 3, func(i int) {
			if i == 1 {
				f.advertise, f.refuse = false, true
			}
		})
		if got := f.seen(); got != "plain zstd plain plain" {
			t.Errorf("requests: %s", got)
		}
	})
	t.Run("stops saying", func(t *testing.T) {
		// An answer without the header (a server replaced by sqld) makes
		// the next requests plain.
		f := &fakeHrana{advertise: true}
		run(t, f, 4, func(i int) {
			if i == 2 {
				f.advertise = false
			}
		})
		if got := f.seen(); got != "plain zstd zstd plain" {
			t.Errorf("requests: %s", got)
		}
	})
}
