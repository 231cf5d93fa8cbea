package syncactor

import (
	"context"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
)

// Handle is how the facade talks to the sync actor: one method per
// message. The zero Handle names no actor (its calls fail with
// actors.ErrStopped).
type Handle struct{ ref actors.Ref }

// Bootstrap downloads the remote database into a new replica: the whole
// database, or with partial a part of it (messages.Bootstrap).
func (h Handle) Bootstrap(ctx context.Context, partial *messages.PartialBootstrap) error {
	_, err := actors.Ask(ctx, h.ref, &messages.Bootstrap{Partial: partial})
	return err
}

// Pull fetches and applies the server's changes (messages.Pull).
func (h Handle) Pull(ctx context.Context, m *messages.Pull) (messages.PullResult, error) {
	return actors.Ask(ctx, h.ref, m)
}

// Push sends the local changes; with tables, the answer names the tables
// a pull the push ran first changed (messages.Push).
func (h Handle) Push(ctx context.Context, tables bool) (messages.PushResult, error) {
	return actors.Ask(ctx, h.ref, &messages.Push{Tables: tables})
}

// CheckRemote checks that the configured URL serves the replica's
// database; old is the URL it came from (messages.CheckRemote).
func (h Handle) CheckRemote(ctx context.Context, old string) error {
	_, err := actors.Ask(ctx, h.ref, &messages.CheckRemote{Old: old})
	return err
}

// RevisionKept asks whether the server still serves the replica's synced
// revision.
func (h Handle) RevisionKept(ctx context.Context) (bool, error) {
	return actors.Ask(ctx, h.ref, &messages.RevisionKept{})
}
