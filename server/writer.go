package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/server/stream"
)

// The writer connection is owned by one holder at a time: a request that
// runs SQL, or a Hrana stream between its requests while it is inside a
// transaction (see hrana.go). Holding it is taking d.writer; the holder
// runs statements with exec, which also takes d.mu for their duration, so
// that pulls (which take only d.mu, briefly) are never blocked by a
// transaction that merely stays open.

// errWriterBusy reports that another stream kept the writer (it is inside a
// transaction) for longer than a request may wait.
var errWriterBusy = errors.New("database is locked: another stream holds an open transaction")

// errDBClosed reports a request on a database that is closing.
var errDBClosed = errors.New("database closed")

// tryWriter takes the writer if it is free.
func (d *database) tryWriter() bool {
	select {
	case d.writer <- struct{}{}:
		return true
	default:
		return false
	}
}

func (d *database) releaseWriter() { <-d.writer }

// exec runs fn on the writer connection and records the commits fn made.
// The caller holds the writer. A transaction fn leaves open stays open;
// exec reports whether the connection is in autocommit mode afterwards.
func (d *database) exec(ctx context.Context, fn func(*sqlitex.Conn) error) (autocommit bool, err error) {
	lease, _, err := d.opts.coord.Writer(ctx, d.name)
	if err != nil {
		return d.autocommit(), err
	}
	if lease == nil || !lease.Valid() {
		return d.autocommit(), errNotWriter
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return true, errDBClosed
	}
	d.fence = history.Fence{Epoch: lease.Epoch()}
	autocommit = true
	// The request's context bounds the statements; recording the commits
	// they made must happen even if the client went away meanwhile.
	err = sqlitex.Raw(context.WithoutCancel(ctx), d.conn, func(c *sqlitex.Conn) error {
		ferr := fn(c)
		autocommit = c.Autocommit()
		return ferr
	})
	if _, rerr := d.recordCommits(context.WithoutCancel(ctx)); rerr != nil {
		// The commit is durable in the WAL; the history is not. Refuse to
		// go on rather than serve pulls that miss it.
		d.log.Error("recording commits failed", "err", rerr)
		return autocommit, errors.Join(err, fmt.Errorf("record history: %w", rerr))
	}
	return autocommit, err
}

// autocommit tells whether the writer connection is outside a transaction.
// The caller holds the writer.
func (d *database) autocommit() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return true
	}
	auto := true
	sqlitex.Raw(context.Background(), d.conn, func(c *sqlitex.Conn) error {
		auto = c.Autocommit()
		return nil
	})
	return auto
}

// rollback ends the writer connection's open transaction, if any, recording
// nothing. The caller holds the writer.
func (d *database) rollback(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return nil
	}
	return sqlitex.Raw(context.WithoutCancel(ctx), d.conn, func(c *sqlitex.Conn) error {
		if c.Autocommit() {
			return nil
		}
		return c.Exec("ROLLBACK")
	})
}

// idleHolder is a stream that keeps the writer while it waits for its next
// request (it is inside a transaction).
type idleHolder struct {
	ref   stream.Ref
	since time.Time
}

func (d *database) setHolder(h *idleHolder) {
	d.hmu.Lock()
	d.holder = h
	d.hmu.Unlock()
}

func (d *database) idleHolderSince() (*idleHolder, bool) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	return d.holder, d.holder != nil
}
