package netactor

import (
	"context"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire/hrana"
)

// Handle is how other actors and the facade talk to the network actor:
// one method per message. The zero Handle names no actor (its calls fail
// with actors.ErrStopped).
type Handle struct{ ref actors.Ref }

// From is h as held by an actor at level (see actors.Level): an actor
// stamps the handles it is given with its own level, so that the call
// order is checked under the invariants build tag.
func (h Handle) From(level actors.Level) Handle { return Handle{h.ref.From(level)} }

// PullUpdates sends one POST /pull-updates (see messages.PullUpdates).
func (h Handle) PullUpdates(ctx context.Context, m *messages.PullUpdates) (messages.PullInfo, error) {
	return actors.Ask(ctx, h.ref, m)
}

// Pipeline sends one POST /v2/pipeline (see messages.Pipeline).
func (h Handle) Pipeline(ctx context.Context, m *messages.Pipeline) (*hrana.PipelineRespBody, error) {
	return actors.Ask(ctx, h.ref, m)
}

// Stats returns the byte counters.
func (h Handle) Stats(ctx context.Context) (messages.NetCounters, error) {
	return actors.Ask(ctx, h.ref, &messages.NetStats{})
}
