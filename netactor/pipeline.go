package netactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cenkalti/backoff/v4"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire/hrana"
)

// pipeline serves one Pipeline: POST /v2/pipeline with the JSON body. Only a
// Retryable message is retried (see the package documentation).
func (a *netActor) pipeline(ctx context.Context, m *messages.Pipeline) (*hrana.PipelineRespBody, error) {
	body, err := json.Marshal(m.Body)
	if err != nil {
		return nil, fmt.Errorf("encode pipeline request: %w", err)
	}
	var out *hrana.PipelineRespBody
	err = a.retry(ctx, EndpointPipeline, m.Retryable, m.RetryUntil, func() error {
		var err error
		out, err = a.pipelineOnce(ctx, body)
		return err
	})
	return out, err
}

func (a *netActor) pipelineOnce(ctx context.Context, body []byte) (*hrana.PipelineRespBody, error) {
	resp, err := a.post(ctx, EndpointPipeline, contentTypeJSON, body, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusError(resp, EndpointPipeline)
	}
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
