package syncdb

import (
	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
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
)

// Errors of the replica's own state, for errors.Is.
var (
	// ErrInvalidMeta: Open found PATH-info unreadable as sync metadata; the
	// error names the problem.
	ErrInvalidMeta = metaactor.ErrInvalidMeta
	// ErrFailed: a part of the DB panicked earlier (a bug; Close returns
	// the panic). What needs that part fails with ErrFailed until the
	// database is opened again.
	ErrFailed = actors.ErrFailed
)
