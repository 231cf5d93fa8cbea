package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/server/coord"
	"github.com/syncdb/syncdb/server/history"
)

// The client connection (d.client, the sandboxed writer) is owned by one
// holder at a time: a request that runs SQL, or a Hrana stream between its
// requests while it is inside a transaction (see hrana.go). Holding it is
// taking d.writer. The holder runs statements with exec, which takes d.mu
// only to set the connection up before them and to record their commits
// after them, never while they run: pulls (which take d.mu, briefly) wait
// neither for a transaction that stays open nor for a statement or cursor
// that runs long. When the connection passes on, endSession puts it back
// into the state every holder starts from.

// errWriterBusy reports that another stream kept the writer (it is inside a
// transaction) for longer than a request may wait.
var errWriterBusy = errors.New("database is locked: another stream holds an open transaction")

// errTxnTimeout reports that a stream's transaction was rolled back while
// the stream was idle: it kept the writer for longer than StreamTxnTimeout
// while another stream waited for it.
var errTxnTimeout = errors.New("the transaction was rolled back: it was idle for longer than the transaction timeout while another stream waited for the writer")

// errTxnHeld reports that a stream's transaction was rolled back because
// it had kept the writer for longer than twice the transaction timeout
// while another stream waited for it. Over HTTP the stream ends
// (STREAM_EXPIRED, as for an idle one), over WebSocket its next request
// fails with TRANSACTION_TIMEOUT.
var errTxnHeld = errors.New("the transaction was rolled back: it kept the writer for longer than twice the transaction timeout while another stream waited for the writer")

// errTxnInterrupted is the error of the request after one whose statement
// was interrupted inside a transaction, which rolled the transaction back
// (executor.interrupted); as errTxnHeld, it ends an HTTP stream.
var errTxnInterrupted = errors.New("the transaction was rolled back: a statement in it was interrupted (the statement timeout, or a cancel)")

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

// exec runs fn on the client connection, in its sandbox, and records the
// commits fn made. The caller holds the writer. A transaction fn leaves
// open stays open: exec reports whether the connection is in autocommit
// mode afterwards, and how many transactions fn committed (they are
// durable, even if err is not nil).
//
// fn runs without d.mu: the writer token alone owns the client connection
// (close takes it too), and the WAL frames fn appends are invisible to
// pulls until they are recorded here, under d.mu, after fn. Pulls serve the
// latest recorded revision meanwhile, which is consistent (see live).
//
// A commit that the history cannot record now (its disk is full, say)
// stays in the WAL, which is not checkpointed until it is recorded; pulls
// fail with ErrHistoryBehind meanwhile (see catchUp), so that no pull is
// served without it.
func (d *database) exec(ctx context.Context, fn func(*sqlitex.Conn, *sandbox) error) (autocommit bool, commits int, err error) {
	lease, _, err := d.opts.coord.Writer(ctx, d.name)
	if err != nil {
		return true, 0, err
	}
	if lease == nil {
		return true, 0, errNotWriter
	}
	if !lease.Valid() {
		return true, 0, fmt.Errorf("%w: this node's lease lapsed", history.ErrFenced)
	}
	if err := d.prepareClient(ctx, lease); err != nil {
		return true, 0, err
	}
	d.commits = 0
	autocommit = true
	// fn bounds its statements by ctx itself; the recording must happen
	// even if the client went away meanwhile.
	err = sqlitex.Raw(context.WithoutCancel(ctx), d.client, func(c *sqlitex.Conn) error {
		d.sb.refused = ""
		ferr := fn(c, d.sb)
		autocommit = c.Autocommit()
		return ferr
	})
	commits = d.commits
	if commits > 0 {
		// Committed in SQLite, not recorded yet: a crash here leaves a
		// commit the client never saw acknowledged.
		failpoint.Hit("server.committed", d.name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.shared {
		// In a cluster a commit is acknowledged only once the shared store
		// has it: one it could not record may be dropped (another node may
		// take over), so it is reported as not committed, and settled
		// before anything else runs (see settle).
		if _, rerr := d.recordCommits(context.WithoutCancel(ctx)); rerr != nil {
			d.log.Warn("recording commits in the store failed", "err", rerr)
			return autocommit, 0, errors.Join(err, fmt.Errorf("record history: %w", d.recordFailed(rerr)))
		}
	} else {
		d.record(context.WithoutCancel(ctx))
	}
	if commits > 0 {
		// Recorded, not acknowledged yet: the client's retry must not
		// apply it again.
		failpoint.Hit("server.recorded", d.name)
	}
	return autocommit, commits, err
}

// prepareClient makes the client connection ready for the holder's
// statements under lease: the local copy settled (in a cluster), the
// fence of the commits set, the connection open.
func (d *database) prepareClient(ctx context.Context, lease coord.Lease) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.shared {
		if err := d.settle(ctx, lease); err != nil {
			return err
		}
	}
	d.fence = history.Fence{Epoch: lease.Epoch()}
	d.lease = lease
	if d.client == nil {
		if d.admin == nil {
			return errClosed
		}
		// A failed reset closed it; open a fresh one.
		if err := d.openClient(ctx); err != nil {
			return err
		}
	}
	return nil
}

// endSession puts the client connection back into the state every holder
// starts from (see resetSession: an open transaction is rolled back and
// recorded nowhere). The caller holds the writer and lets it go next.
func (d *database) endSession(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return
	}
	var broken error
	sqlitex.Raw(context.WithoutCancel(ctx), d.client, func(c *sqlitex.Conn) error {
		d.sb.readOnlyTx = false
		broken = resetSession(c)
		return nil
	})
	if broken != nil {
		// The next holder must not see what this one left: it gets a new
		// connection.
		d.log.Warn("cannot reset the client connection; reopening it", "err", broken)
		if cerr := closeClient(d.client); cerr != nil {
			d.log.Warn("close the client connection", "err", cerr)
		}
		d.client = nil
	}
}

// session runs fn as a request of its own on the client connection: it
// takes the writer (waiting as long as ctx lets it), runs fn, puts the
// connection back (rolling back what fn left open) and lets the writer go.
func (d *database) session(ctx context.Context, fn func(*sqlitex.Conn, *sandbox) error) (int, error) {
	select {
	case d.writer <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-d.stopped:
		return 0, errClosed
	}
	defer d.releaseWriter()
	_, commits, err := d.exec(ctx, fn)
	d.endSession(ctx)
	return commits, err
}

// idleHolder is a stream that keeps the writer while it waits for its next
// request (it is inside a transaction).
type idleHolder struct {
	st    *hranaStream
	since time.Time
	// expire rolls the stream's transaction back (and lets the writer go)
	// if the stream is still idle, at once or soon; it reports whether it
	// will.
	expire func() bool
}

func (d *database) setHolder(h *idleHolder) {
	d.hmu.Lock()
	d.holder = h
	d.hmu.Unlock()
}

// clearHolder forgets st as the idle holder, if it is: a request of its
// own runs, or it ends.
func (d *database) clearHolder(st *hranaStream) {
	d.hmu.Lock()
	if d.holder != nil && d.holder.st == st {
		d.holder = nil
	}
	d.hmu.Unlock()
}

// setOwner records st as the stream that has the writer, from now.
func (d *database) setOwner(st *hranaStream) {
	d.hmu.Lock()
	d.owner, d.ownedSince = st, time.Now()
	d.hmu.Unlock()
}

// clearOwner forgets st as the stream that has the writer, if it is.
func (d *database) clearOwner(st *hranaStream) {
	d.hmu.Lock()
	if d.owner == st {
		d.owner = nil
	}
	d.hmu.Unlock()
}

// longOwner returns the stream that has had the writer for longer than
// limit, if one has, and tells it to yield it (hranaStream.yield).
func (d *database) longOwner(limit time.Duration) *hranaStream {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	if d.owner == nil || time.Since(d.ownedSince) < limit {
		return nil
	}
	d.owner.yield.Store(true)
	return d.owner
}

// idleHolder returns the idle holder, or nil.
func (d *database) idleHolder() *idleHolder {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	return d.holder
}
