package netactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cenkalti/backoff/v4"
	"github.com/klauspost/compress/zstd"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire/hrana"
)

// pipeline serves one Pipeline: POST /v2/pipeline with the JSON body,
// zstd-compressed for a server that takes it (see requestEncoder). Only a
// Retryable message is retried (see the package documentation).
func (a *netActor) pipeline(ctx context.Context, m *messages.Pipeline) (*hrana.PipelineRespBody, error) {
	body, err := json.Marshal(m.Body)
	if err != nil {
		return nil, fmt.Errorf("encode pipeline request: %w", err)
	}
	var zbody []byte // body compressed, once it is needed
	var out *hrana.PipelineRespBody
	err = a.retry(ctx, EndpointPipeline, m.Retryable, m.RetryUntil, func() error {
		var err error
		send, coding := body, ""
		if a.zstdRequests.Load() && len(body) >= minCompressedRequest {
			if zbody == nil {
				zbody = requestEncoder.EncodeAll(body, nil)
			}
			send, coding = zbody, "zstd"
		}
		out, err = a.pipelineOnce(ctx, send, coding)
		if errors.Is(err, errCodingRefused) {
			// The server ran none of it (415): it no longer takes
			// compressed requests. Sending it plain is the same request.
			a.zstdRequests.Store(false)
			out, err = a.pipelineOnce(ctx, body, "")
		}
		return err
	})
	return out, err
}

// Compressed requests. The server says it takes zstd request bodies with
// a header on its Hrana answers (server.RequestEncodingHeader; sqld never
// sends it), so the first request to a server goes plain (a push's
// high-water read) and the following ones, the push batch, compressed: a
// batch repeats its SQL texts and conditions for every change, and shrinks
// about a hundredfold. Small requests stay plain: nothing to gain.
const (
	requestEncodingHeader = "X-Syncdb-Request-Encoding" // server.RequestEncodingHeader
	minCompressedRequest  = 1 << 10
)

// requestEncoder compresses request bodies (EncodeAll may be called
// concurrently). Its 1 MiB window is what the server's decoder allows
// (4 MiB at most): not a single-segment frame, whose window would be the
// whole body.
var requestEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false))

// errCodingRefused: the server answered a compressed request with 415.
var errCodingRefused = errors.New("the server refused the request's content encoding")

// takesZstd reports whether a response's RequestEncodingHeader lists zstd.
func takesZstd(h http.Header) bool {
	for _, v := range h.Values(requestEncodingHeader) {
		for _, coding := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(coding), "zstd") {
				return true
			}
		}
	}
	return false
}

func (a *netActor) pipelineOnce(ctx context.Context, body []byte, coding string) (*hrana.PipelineRespBody, error) {
	var header http.Header
	if coding != "" {
		header = http.Header{"Content-Encoding": {coding}}
	}
	resp, err := a.post(ctx, EndpointPipeline, contentTypeJSON, body, header)
	if err != nil {
		return nil, err
	}
	defer resp.Close()
	if resp.StatusCode == http.StatusUnsupportedMediaType && coding != "" {
		return nil, errCodingRefused
	}
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusError(resp, EndpointPipeline)
	}
	// What the server says now holds for the next requests.
	a.zstdRequests.Store(takesZstd(resp.Header))
	limit := a.cfg.MaxPipelineResponse
	b, err := io.ReadAll(io.LimitReader(resp.body, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, backoff.Permanent(ctx.Err())
		}
		// The response was lost on the way; a retryable request may try
		// again.
		return nil, lost(fmt.Errorf("read pipeline response: %w", err))
	}
	if int64(len(b)) > limit {
		return nil, backoff.Permanent(fmt.Errorf("pipeline response larger than %d bytes", limit))
	}
	out, err := hrana.DecodePipelineResp(b)
	if err != nil {
		if cutShort(b) {
			// A body that ended cleanly but early (a proxy that closed the
			// connection of a response without a length): lost on the way.
			return nil, lost(fmt.Errorf("pipeline response cut short after %d bytes: %w", len(b), err))
		}
		return nil, backoff.Permanent(fmt.Errorf("pipeline response: %w", err))
	}
	return out, nil
}

// cutShort reports whether b, a JSON body that did not decode, ends in
// the middle of its document (a decoder reading it as a stream meets the
// end too early), as opposed to a malformed or ill-shaped one.
func cutShort(b []byte) bool {
	err := json.NewDecoder(bytes.NewReader(b)).Decode(new(json.RawMessage))
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}
