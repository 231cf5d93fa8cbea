package netactor

import (
	"context"
	"encoding/json"
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
		return nil, fmt.Errorf("read pipeline response: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, backoff.Permanent(fmt.Errorf("pipeline response larger than %d bytes", limit))
	}
	out, err := hrana.DecodePipelineResp(b)
	if err != nil {
		return nil, backoff.Permanent(fmt.Errorf("pipeline response: %w", err))
	}
	return out, nil
}
