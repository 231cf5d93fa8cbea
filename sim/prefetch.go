package sim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// Prefetching partial replicas, and their fetches racing a checkpoint.
//
// Half the partial clients prefetch. Each opens for the first time (its
// bootstrap) only after 40 to 100 operations, with a prefix of page 1
// alone, when the database (whose kv rows carry padding in such worlds, so
// that kv's B-tree has an interior root and several leaves) is larger; that
// step reads kv's root page alone (probeRoot). The fetch brings the root,
// and the page actor prefetches its children in the background, pinned to
// the bootstrap revision. Background downloads are queued
// (testhooks.Hooks.Background) and run one at a time at points the seed
// decides, so that the order of network faults stays reproducible: when a
// fetch waits for one (the failpoint pages.wait), or before the client's
// next operation after another push landed (the client mostly skips its
// operations until then, which would need the pages). There the client
// first pulls, which brings the pages the push changed into its WAL, and
// checkpoints, which makes them present with their new content; then the
// queued prefetch writes: it must skip those pages, not put their older
// versions over them (pageactor: a fetch never overwrites a present page).

// prefetchPad pads kv rows in worlds with a prefetching client.
var prefetchPad = strings.Repeat("p", 1800)

// schema is the kv table of this world.
func (w *world) schema() string {
	if w.padded {
		return fmt.Sprintf("CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, a TEXT, b TEXT, p TEXT DEFAULT '%s')", prefetchPad)
	}
	return kvSchema
}

// clientAt is the client whose database or directory path is owner.
func (w *world) clientAt(owner string) *client {
	for _, c := range w.clients {
		if owner == c.dir || strings.HasPrefix(owner, c.dir+string(filepath.Separator)) {
			return c
		}
	}
	return nil
}

// background queues a prefetch download of c (testhooks.Hooks.Background).
func (w *world) background(c *client) func(func()) {
	return func(f func()) {
		pushes := w.pushes() // before w.mu: the model logs under its lock
		w.mu.Lock()
		if len(c.bg) == 0 {
			c.bgSince = pushes
		}
		c.bg = append(c.bg, f)
		w.mu.Unlock()
	}
}

// runPrefetches runs c's queued downloads, one after the other: each sends
// its pages to the page actor, which writes them (pages.prefetched).
func (w *world) runPrefetches(c *client) {
	for {
		w.mu.Lock()
		if len(c.bg) == 0 {
			w.mu.Unlock()
			return
		}
		f := c.bg[0]
		c.bg = c.bg[1:]
		c.bgSent++
		w.mu.Unlock()
		f()
	}
}

// prefetched is the failpoint pages.prefetched: the page actor wrote a
// prefetch (or failed to).
func (w *world) prefetched(owner string) {
	c := w.clientAt(owner)
	if c == nil {
		return
	}
	w.mu.Lock()
	if c.bgSent > 0 { // 0 after a drop: its process is gone
		c.bgSent--
	}
	w.mu.Unlock()
	w.bgCond.Broadcast()
}

// dropPrefetches forgets c's queued downloads: its process ends.
func (w *world) dropPrefetches(c *client) {
	w.mu.Lock()
	c.bg, c.bgSent = nil, 0
	w.mu.Unlock()
}

// kvRootRead reads kv's root page alone (none if kv is not there yet).
const kvRootRead = "SELECT count(*) FROM sqlite_dbpage WHERE pgno = (SELECT rootpage FROM sqlite_schema WHERE name = 'kv') AND length(data) > ?"

// probeRoot reads kv's root page alone, once, after the client's first
// open: the fetch brings it, and its children are prefetched, in the queue
// until the client's next operation.
func (w *world) probeRoot(ctx context.Context, c *client) {
	c.probed = true
	var n int
	err := c.db.QueryRow(ctx, kvRootRead, 0).Scan(&n)
	res := fmt.Sprintf("%d %s", n, errText(err))
	if st, err := c.db.Stats(ctx); err == nil {
		res += fmt.Sprintf(" (pages present %d of %d)", st.PagesPresent, st.PagesTotal)
	}
	w.logf("%s: read kv's root page: %s", c.name, res)
}

// pushes is the number of pushes the server committed so far.
func (w *world) pushes() int {
	w.model.mu.Lock()
	defer w.model.mu.Unlock()
	return len(w.model.commits)
}

// settlePrefetches runs c's queued downloads before its next operation
// once another push landed since they were queued: first a pull, which
// brings the pages the push changed, and a checkpoint, which makes them
// present; then it runs the downloads and waits until the page actor wrote
// them. Until a push lands, c mostly skips its operations (false), so that
// they do not need the pages and run the downloads first.
func (w *world) settlePrefetches(ctx context.Context, c *client) bool {
	pushes := w.pushes()
	w.mu.Lock()
	queued := len(c.bg) > 0
	if queued && pushes == c.bgSince {
		w.mu.Unlock()
		return w.krng.IntN(4) == 0
	}
	fired := w.plan != nil && w.plan.fired != ""
	if !fired {
		w.plan = nil // the operation's crash plan did not fire: it ends here
	}
	w.mu.Unlock()
	if !queued {
		return true
	}
	if fired || c.db == nil {
		w.dropPrefetches(c)
		return true
	}
	{
		_, perr := c.db.Pull(ctx)
		cerr := c.db.Checkpoint(ctx)
		w.logf("%s: pull and checkpoint with a prefetch queued: %s, %s", c.name, errText(perr), errText(cerr))
		for _, err := range []error{perr, cerr} {
			if err != nil && !expectedError(errText(err)) {
				w.fail("%s: pull or checkpoint with a prefetch queued: unexpected error: %v", c.name, err)
			}
		}
	}
	w.runPrefetches(c)
	w.mu.Lock()
	for c.bgSent > 0 {
		w.bgCond.Wait()
	}
	w.mu.Unlock()
	w.logf("%s: prefetches written", c.name)
	return true
}
