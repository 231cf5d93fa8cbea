package dbactor

import (
	"context"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
)

// Handle is how the sync actor and the facade talk to the database actor:
// one method per message (local writes go through Writer instead). The
// zero Handle names no actor (its calls fail with actors.ErrStopped).
type Handle struct{ ref actors.Ref }

// From is h as held by an actor at level (see actors.Level): an actor
// stamps the handles it is given with its own level, so that the call
// order is checked under the invariants build tag.
func (h Handle) From(level actors.Level) Handle { return Handle{h.ref.From(level)} }

// Open opens the database (messages.OpenDB); send it before anything else.
func (h Handle) Open(ctx context.Context, m *messages.OpenDB) error {
	_, err := actors.Ask(ctx, h.ref, m)
	return err
}

// Tx runs fn in one local write transaction on the writer connection,
// inside the actor (messages.Tx); it commits if fn returns nil.
func (h Handle) Tx(ctx context.Context, fn func(messages.WriteConn) error) error {
	_, err := actors.Ask(ctx, h.ref, &messages.Tx{Fn: fn})
	return err
}

// PendingChanges reads local changes for a push (messages.PendingChanges).
func (h Handle) PendingChanges(ctx context.Context, m *messages.PendingChanges) (messages.Pending, error) {
	return actors.Ask(ctx, h.ref, m)
}

// RecordPush records that the server has the changes of pull generation
// gen up to upTo, at unix time now (messages.RecordPush).
func (h Handle) RecordPush(ctx context.Context, gen, upTo, now int64) error {
	_, err := actors.Ask(ctx, h.ref, &messages.RecordPush{PullGen: gen, UpTo: upTo, Time: now})
	return err
}

// Download opens a pull's download and returns its sink (messages.Download).
func (h Handle) Download(ctx context.Context) (messages.PageSink, error) {
	return actors.Ask(ctx, h.ref, &messages.Download{})
}

// MoveBootstrap moves a downloaded bootstrap into place
// (messages.MoveBootstrap). It runs to the end once sent: ctx's end
// does not stop it, as a rename that happens anyway must not be
// reported as failed.
func (h Handle) MoveBootstrap(ctx context.Context) error {
	_, err := actors.Ask(context.WithoutCancel(ctx), h.ref, &messages.MoveBootstrap{})
	return err
}

// BeginBootstrap creates a bootstrap's download and returns its sink
// (messages.BeginBootstrap). Like MoveBootstrap it runs to the end once
// sent, so that no attempt's file is created after its caller returned.
// An opened database refuses it: ErrBootstrapOpened.
func (h Handle) BeginBootstrap(ctx context.Context, partial bool) (messages.BootstrapSink, error) {
	return actors.Ask(context.WithoutCancel(ctx), h.ref, &messages.BeginBootstrap{Partial: partial})
}

// FinishDownload ends a bootstrap's download with its file steps and
// returns the stamp (messages.FinishDownload). It runs to the end once
// sent, as the steps it replaced (direct calls) did: a cancelled bootstrap
// still closes its file.
func (h Handle) FinishDownload(ctx context.Context, sink messages.BootstrapSink, steps []messages.DownloadStep) (*messages.FileStamp, error) {
	return actors.Ask(context.WithoutCancel(ctx), h.ref, &messages.FinishDownload{Sink: sink, Steps: steps})
}

// DropDownload removes a download that will not be applied
// (messages.DropDownload).
func (h Handle) DropDownload(ctx context.Context, sink messages.PageSink) error {
	_, err := actors.Ask(ctx, h.ref, &messages.DropDownload{Download: sink})
	return err
}

// ApplyPull applies a downloaded pull (messages.ApplyPull).
func (h Handle) ApplyPull(ctx context.Context, m *messages.ApplyPull) (messages.PullResult, error) {
	return actors.Ask(ctx, h.ref, m)
}

// Checkpoint moves the WAL into the database file; closing: the replica
// is closing (messages.Checkpoint).
func (h Handle) Checkpoint(ctx context.Context, closing bool) error {
	_, err := actors.Ask(ctx, h.ref, &messages.Checkpoint{Closing: closing})
	return err
}

// Stats returns local statistics.
func (h Handle) Stats(ctx context.Context) (messages.LocalStats, error) {
	return actors.Ask(ctx, h.ref, &messages.DBStats{})
}

// ListConflicts returns the unresolved conflicts, or with all every one.
func (h Handle) ListConflicts(ctx context.Context, all bool) ([]messages.Conflict, error) {
	return actors.Ask(ctx, h.ref, &messages.ListConflicts{All: all})
}

// ResolveConflict keeps the "local" or "remote" side of conflict id.
func (h Handle) ResolveConflict(ctx context.Context, id int64, keep string) error {
	_, err := actors.Ask(ctx, h.ref, &messages.ResolveConflict{ID: id, Keep: keep})
	return err
}

// Chain returns the push chain value up to change id upTo.
func (h Handle) Chain(ctx context.Context, upTo int64) (messages.ChainInfo, error) {
	return actors.Ask(ctx, h.ref, &messages.Chain{UpTo: upTo})
}

// CheckMarks says why the server's marks cannot be this replica's ("" if
// they can; messages.CheckMarks).
func (h Handle) CheckMarks(ctx context.Context, mark messages.Mark, chain *messages.Mark) (string, error) {
	return actors.Ask(ctx, h.ref, &messages.CheckMarks{Mark: mark, Chain: chain})
}

// MarkCloned records durably that the replica is a copy, and why.
func (h Handle) MarkCloned(ctx context.Context, why string) error {
	_, err := actors.Ask(ctx, h.ref, &messages.MarkCloned{Why: why})
	return err
}

// Fork gives the replica a new client id and returns it (messages.Fork).
func (h Handle) Fork(ctx context.Context, why string, inherit bool) (string, error) {
	return actors.Ask(ctx, h.ref, &messages.Fork{Why: why, Inherit: inherit})
}

// BasePage returns page pgno of the synced base.
func (h Handle) BasePage(ctx context.Context, pgno uint32) ([]byte, error) {
	return actors.Ask(ctx, h.ref, &messages.BasePage{Pgno: pgno})
}

// SaveLocal saves the replica's local state as a replay journal at path
// and returns the number of changes saved (messages.SaveLocal).
func (h Handle) SaveLocal(ctx context.Context, path string) (int, error) {
	return actors.Ask(ctx, h.ref, &messages.SaveLocal{Path: path})
}

// ImportLocal replays the journal at path (messages.ImportLocal).
func (h Handle) ImportLocal(ctx context.Context, path string) error {
	_, err := actors.Ask(ctx, h.ref, &messages.ImportLocal{Path: path})
	return err
}

// ReplicaStatus returns the waiting conflicts and why the replica is a
// copy, if it is.
func (h Handle) ReplicaStatus(ctx context.Context) (messages.Status, error) {
	return actors.Ask(ctx, h.ref, &messages.ReplicaStatus{})
}
