package syncdb

import (
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
