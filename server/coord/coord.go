// Package coord decides which node writes each database and tells nodes when
// a database has a new revision. Local is the single-node implementation;
// server/pgstore has one over PostgreSQL for many nodes.
package coord

import (
	"context"
	"errors"
	"net/url"
	"sync"
)

// ErrUnknownDatabase reports a database that does not exist (yet): Writer
// has no lease to give for it.
var ErrUnknownDatabase = errors.New("coord: no such database")

// Coordinator is the cross-node part of serving a database: the writer
// lease and the wake-ups of long polls. Within a node, the server still
// serializes writes to a database on its own writer connection.
type Coordinator interface {
	// Writer returns this node's lease on db when this node is (or has just
	// become) its writer. Otherwise it returns the URL of the node that is,
	// to forward the write to.
	Writer(ctx context.Context, db string) (Lease, *url.URL, error)
	// Changed returns a channel that is closed once db may have a revision
	// newer than it had when Changed was called. Waiters re-check the
	// history after it fires; a spurious wake-up is harmless.
	Changed(db string) <-chan struct{}
	// Published tells the coordinator that this node recorded revision seq
	// of db.
	Published(db string, seq int64)
	// Unreachable reports that a write forwarded to holder, the writer
	// Writer named for db, could not be delivered: the next Writer checks
	// whether that node is still alive.
	Unreachable(db string, holder *url.URL)
	// Close gives up every lease this node holds.
	Close() error
}

// Lease is a node's right to write one database.
type Lease interface {
	// Epoch is the fencing token that the history checks on every append.
	Epoch() int64
	// Valid reports whether the node may still write: false once the lease
	// may have expired by this node's own clock. The history's fence is what
	// guarantees safety; this check only keeps a paused node from trying.
	Valid() bool
	// Release gives the lease up (after the history fenced it, or when the
	// node stops writing the database).
	Release()
}

// Local is the coordinator of a single node: it is always the writer, and
// wake-ups are channels.
type Local struct {
	mu      sync.Mutex
	changed map[string]chan struct{}
}

// NewLocal returns a single-node coordinator.
func NewLocal() *Local { return &Local{changed: map[string]chan struct{}{}} }

var _ Coordinator = (*Local)(nil)

type localLease struct{}

func (localLease) Epoch() int64 { return 0 }
func (localLease) Valid() bool  { return true }
func (localLease) Release()     {}

// Writer always returns a lease: a single node writes every database.
func (l *Local) Writer(context.Context, string) (Lease, *url.URL, error) {
	return localLease{}, nil, nil
}

// Changed returns db's current wake-up channel.
func (l *Local) Changed(db string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := l.changed[db]
	if ch == nil {
		ch = make(chan struct{})
		l.changed[db] = ch
	}
	return ch
}

// Published wakes every waiter on db.
func (l *Local) Published(db string, _ int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch := l.changed[db]; ch != nil {
		close(ch)
		delete(l.changed, db)
	}
}

// Unreachable does not happen: the local node writes everything itself.
func (l *Local) Unreachable(string, *url.URL) {}

// Close does nothing: local leases need no release.
func (l *Local) Close() error { return nil }
