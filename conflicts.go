package syncdb

import (
	"context"
	"errors"
	"time"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/messages"
)

// ErrConflict is wrapped by the error of Push, Pull and Sync when local
// changes wait, refused, for conflicts to be resolved (DB.Conflicts,
// DB.ResolveConflict). Everything else of the operation was done: a Pull
// that returns it applied the server's changes.
var ErrConflict = dbactor.ErrConflict

// ErrNoConflict is wrapped by the error of DB.ResolveConflict for an id
// that names no conflict.
var ErrNoConflict = dbactor.ErrNoConflict

// A Conflict is a local change that met a remote change it never saw: an
// insert of a key another client inserted too ("insert-insert"), an update
// of a row another client deleted ("update-deleted"), a delete of a row
// another client changed ("delete-updated"), or a change the database
// refuses on top of the server's ("constraint": a UNIQUE value another
// client took, a table it dropped). Conflicts are found when a push or a
// pull meets them, recorded in the database in the same transaction, and
// kept until resolved; see the README's "Conflicts" section for the rules.
type Conflict struct {
	ID    int64
	Table string
	Key   []any // the row's primary key values, as the local change named them
	Kind  string
	// Local is the row as the local changes leave it, Remote as the server
	// has it when the conflict was found; nil means no row (deleted).
	Local, Remote map[string]any
	// Resolved is "" while the local changes wait; "local" or "remote"
	// once resolved (by ResolveConflict or Config.OnConflict); "rekeyed"
	// when the local row moved to NewKey (the default for an insert-insert
	// on a key SQLite assigned).
	Resolved string

	NewKey   []any     // rekeyed: the local row's new key
	Error    string    // constraint: what the database said
	Revision string    // the server revision the conflict was found at
	Time     time.Time // when it was recorded
	Changes  int       // the local changes it holds: the conflicting one and the later ones of the same row
}

func conflictOf(m messages.Conflict) Conflict {
	return Conflict{ID: m.ID, Table: m.Table, Key: m.Key, Kind: m.Kind, Local: m.Local, Remote: m.Remote, Resolved: m.Resolved,
		NewKey: m.NewKey, Error: m.Error, Revision: m.Revision, Time: time.Unix(m.Time, 0), Changes: m.Changes}
}

// onConflict adapts Config.OnConflict for the database actor.
func onConflict(f func(context.Context, Conflict) (string, error)) dbactor.OnConflict {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, c messages.Conflict) (string, error) { return f(ctx, conflictOf(c)) }
}

// Conflicts returns the unresolved conflicts, oldest first.
func (d *DB) Conflicts(ctx context.Context) ([]Conflict, error) {
	return d.listConflicts(ctx, false)
}

// ConflictHistory returns every recorded conflict, resolved ones included,
// oldest first.
func (d *DB) ConflictHistory(ctx context.Context) ([]Conflict, error) {
	return d.listConflicts(ctx, true)
}

func (d *DB) listConflicts(ctx context.Context, all bool) ([]Conflict, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	ms, err := closed(d.db.ListConflicts(ctx, all))
	if err != nil {
		return nil, err
	}
	out := make([]Conflict, len(ms))
	for i, m := range ms {
		out[i] = conflictOf(m)
	}
	return out, nil
}

// ResolveConflict resolves conflict id: keep "local" applies the local
// changes over the remote row (the insert replaces it, the update brings
// the deleted row back, the delete deletes it, a constraint conflict's
// blocking row gives way), keep "remote" drops them. It is one local write
// transaction; the next Push sends its changes. Resolving a conflict the
// same way twice is a no-op; otherwise a resolved conflict stays as it is.
func (d *DB) ResolveConflict(ctx context.Context, id int64, keep string) error {
	if err := d.check(); err != nil {
		return err
	}
	err := closedErr(d.db.ResolveConflict(ctx, id, keep))
	return err
}

// syncErr is Sync's error: a push that leaves conflicts waiting does not
// stop the pull.
func syncErr(push, pull error) error {
	if push != nil && !errors.Is(push, ErrConflict) {
		return push
	}
	if pull != nil {
		return pull
	}
	return push
}
