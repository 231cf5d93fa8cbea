package metaactor

import (
	"context"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
)

// Handle is how other actors and the facade talk to the metadata actor:
// one method per message. The zero Handle names no actor (its calls fail
// with actors.ErrStopped).
type Handle struct{ ref actors.Ref }

// From is h as held by an actor at level (see actors.Level): an actor
// stamps the handles it is given with its own level, so that the call
// order is checked under the invariants build tag.
func (h Handle) From(level actors.Level) Handle { return Handle{h.ref.From(level)} }

// Get returns a copy of the current metadata (nil if there is none yet).
func (h Handle) Get(ctx context.Context) (*messages.Meta, error) {
	return actors.Ask(ctx, h.ref, &messages.GetMeta{})
}

// Update applies fn to a copy of the metadata, inside the actor, and
// writes the result durably (see messages.UpdateMeta); the answer is a
// copy of the new metadata.
func (h Handle) Update(ctx context.Context, fn func(*messages.Meta) error) (*messages.Meta, error) {
	return actors.Ask(ctx, h.ref, &messages.UpdateMeta{Fn: fn})
}

// UpdateDeferred is Update without writing -info (messages.UpdateMeta's
// Defer): the caller holds a durable record of the change elsewhere.
func (h Handle) UpdateDeferred(ctx context.Context, fn func(*messages.Meta) error) (*messages.Meta, error) {
	return actors.Ask(ctx, h.ref, &messages.UpdateMeta{Fn: fn, Defer: true})
}
