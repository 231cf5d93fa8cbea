package syncdb

import (
	"errors"
	"fmt"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/pageactor"
)

// Errors of the network, for errors.Is.
var (
	// ErrUnreachable: a request got no answer from the server (nothing
	// listens, the name does not resolve, the connection failed) within
	// Config.MaxRetryTime.
	ErrUnreachable = netactor.ErrUnreachable
	// ErrUnauthorized: the server answered 401 or 403 (the token is
	// missing, wrong, or may not do this; read-only tokens cannot push).
	ErrUnauthorized = netactor.ErrUnauthorized
	// ErrBadStream: the server's answer to a pull could not be decoded (an
	// encoding that was not asked for, a page of the wrong size, a header
	// the page protocol does not use). It is not retried.
	ErrBadStream = netactor.ErrBadStream
)

// HTTPError is a server's answer whose status is not 200 (errors.As
// finds it in the error of a Pull, Push, Sync or Open that got one): the
// status, the start of the body, the endpoint and the URL.
type HTTPError = netactor.HTTPError

// Errors of the replica's own state, for errors.Is.
var (
	// ErrInvalidMeta: Open found PATH-info unreadable as sync metadata; the
	// error names the problem.
	ErrInvalidMeta = metaactor.ErrInvalidMeta
	// ErrFailed: a part of the DB panicked earlier (a bug; Close returns
	// the panic). What needs that part fails with ErrFailed until the
	// database is opened again.
	ErrFailed = actors.ErrFailed
	// ErrPullPending: a pull was interrupted (a crash, a failing disk)
	// after it began to write the database, and could not be finished
	// before this request; the error wraps why. Reads go on; each later
	// request tries to finish the pull again.
	ErrPullPending = dbactor.ErrPullPending
	// ErrCorruptJournal: Open found PATH-syncdb-replay damaged or missing while an
	// interrupted pull needs it: the pull had already replaced the
	// database's content with the server's, and the journal holds the
	// only copy of the local changes not yet pushed. Nothing is changed;
	// the error says what to do (put the file back from a backup, or move
	// the replica aside and download it again, giving those changes up).
	ErrCorruptJournal = dbactor.ErrCorruptJournal
	// ErrNewerJournal: Open found PATH-syncdb-replay written by a newer
	// release of syncdb for a pull it had not finished. Nothing is
	// changed; open the replica with that release to finish the pull,
	// after which this release opens it again.
	ErrNewerJournal = dbactor.ErrNewerJournal
	// ErrFetch: a partial replica could not fetch a page it needs from
	// the server (the error wraps why, ErrUnreachable for example).
	ErrFetch = pageactor.ErrFetch
)

// A call that raced with Close may find the actor it asks already stopped
// (actors.ErrStopped): the facade reports that as ErrClosed, its one word
// for "the database is closed", rather than exporting a second sentinel.

// closed is an actor handle's answer with closedErr applied, for the
// facade's own calls: closed(d.db.Stats(ctx)).
func closed[T any](v T, err error) (T, error) {
	return v, closedErr(err)
}

// closedErr makes an error that an actor stopped by Close caused match
// ErrClosed (it still wraps actors.ErrStopped).
func closedErr(err error) error {
	if err != nil && errors.Is(err, actors.ErrStopped) && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}
