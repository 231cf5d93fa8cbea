package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/metaactor"
)

// Power losses of SyncNormal clients
//
// A SyncNormal replica commits local writes without syncing its WAL, so a
// power loss takes back the commits no WAL sync followed (the Recorder
// restores every file as of its last xSync: such a commit is lost, every
// earlier one survives). What the documentation allows, and all the oracle
// accepts:
//
//   - Those commits, and only those, are lost: their tokens leave the
//     client's writes (a token a WAL sync covered must still reach the
//     server), and a lost token that the server did not have never lands
//     later (nothing brings a lost write back).
//   - Nothing pulled, pushed or checkpointed is lost (pulls and checkpoints
//     sync; the revision-monotonic and -info checks run as for the others),
//     and every database stays intact.
//   - No commit the server has is lost: a push makes the local commits
//     durable before it sends them (dbactor's syncLocal), so a power loss
//     that takes back a commit whose changes landed is a violation.
//   - Should a replica still lose commits it had pushed (the server's mark
//     for its client id, in its pull generation, is beyond its last change
//     id), it is a copy as far as the server can tell: a later push or pull
//     must refuse it with ErrClientCloned before it pushes anything under
//     that id; the simulation then recovers it (Config.Recover, a new
//     client id) and goes on, and at quiescence it must have been refused.
//     ErrClientCloned in any other state is a violation.

// atRisk is one local write of a SyncNormal client that committed with no
// WAL sync since: syncs is the WAL's sync count when it committed.
type atRisk struct {
	tokens []string
	syncs  int64
}

// noteCommit is the write.committed hook: the WAL's sync count right after
// a local commit of c, before the write's automatic checkpoint.
func (w *world) noteCommit(owner string) {
	for _, c := range w.clients {
		if c.syncNormal && owner == c.path {
			c.commitSyncs = c.rec.SyncsOf(layout.For(c.path).WAL)
		}
	}
}

// committedAtRisk records the tokens of a write of c that committed.
func (w *world) committedAtRisk(c *client, tokens []string) {
	if !c.syncNormal || c.commitSyncs < 0 {
		return
	}
	c.atRisk = append(c.atRisk, atRisk{tokens: tokens, syncs: c.commitSyncs})
	c.commitSyncs = -1
}

// losePower applies a power loss of SyncNormal client c to the oracle: its
// I/O is frozen, its connections closed, the files not restored yet.
func (w *world) losePower(c *client) {
	if !c.syncNormal {
		return
	}
	synced := c.rec.SyncsOf(layout.For(c.path).WAL)
	var lost, pushed []string
	for _, r := range c.atRisk {
		if r.syncs < synced {
			continue // a WAL sync came after it: durable
		}
		for _, tok := range r.tokens {
			if _, landed := w.model.landed(tok); landed {
				pushed = append(pushed, tok)
			} else {
				lost = append(lost, tok)
				c.lost[tok] = true
			}
		}
	}
	// What survives is on disk now. The pushed tokens stay: the server has
	// them, and the replica must get them back.
	c.atRisk = nil
	c.tokens = slices.DeleteFunc(c.tokens, func(tok string) bool { return c.lost[tok] })
	if len(lost)+len(pushed) > 0 {
		w.logf("%s: the power loss takes back its unsynced commits: tokens %v (pushed before: %v)", c.name, lost, pushed)
	}
	if len(pushed) > 0 {
		w.fail("%s: a power loss took back commits whose changes the server has (%v): a push sent local commits that were not on disk", c.name, pushed)
	}
	c.cloneCheck = true
}

// checkCopyState runs after c opened again following a power loss: if the
// server's mark for c's client id is beyond c's last change id in the same
// pull generation, c lost commits it had pushed and must be refused as a
// copy (expectCloned stays set until it is).
func (w *world) checkCopyState(ctx context.Context, c *client) {
	c.cloneCheck = false
	meta, err := metaactor.Load(fsx.OS, layout.For(c.path).Info)
	if err != nil || meta.ClientUniqueID == "" {
		return
	}
	var gen, last int64
	err = c.db.QueryRow(ctx, `SELECT coalesce((SELECT value FROM _syncdb_local WHERE key = 'pull_gen'), 0),
		max(coalesce((SELECT max(change_id) FROM _syncdb_changes), 0), coalesce((SELECT value FROM _syncdb_local WHERE key = 'trimmed'), 0))`).Scan(&gen, &last)
	if err != nil {
		if !strings.Contains(err.Error(), "no such table") {
			w.fail("%s: read its change ids after a power loss: %v", c.name, err)
		}
		return
	}
	var rows [][]any
	w.tr.calm(func() {
		_, rs, qerr := w.serverQuery(fmt.Sprintf("SELECT pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id = '%s'", meta.ClientUniqueID))
		err = qerr
		for _, r := range rs {
			rows = append(rows, []any{r[0].V, r[1].V})
		}
	})
	if err != nil {
		if !strings.Contains(err.Error(), "no such table") {
			w.fail("%s: read the server's mark after a power loss: %v", c.name, err)
		}
		return
	}
	if len(rows) != 1 {
		return
	}
	sgen, sid := toInt(rows[0][0]), toInt(rows[0][1])
	if sgen == gen && sid > last {
		w.logf("%s: lost commits it had pushed (the server has its changes up to %d of generation %d, it has %d): a copy now", c.name, sid, gen, last)
		c.expectCloned, c.copyID = true, meta.ClientUniqueID
	}
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case string:
		var i int64
		fmt.Sscan(n, &i)
		return i
	}
	return -1
}

// refusedAsCopy handles an error of a push or pull of c: ErrClientCloned,
// expected, recovers c (Config.Recover) and reports true; unexpected, it
// is a violation.
func (w *world) refusedAsCopy(c *client, op string, err error) bool {
	if !errors.Is(err, syncdb.ErrClientCloned) {
		return false
	}
	if !c.expectCloned {
		w.fail("%s %s: refused as a copy, but it lost no commit it had pushed: %v", c.name, op, err)
		return true
	}
	w.logf("%s %s: refused as a copy, as expected: recovering", c.name, op)
	w.dropPrefetches(c)
	cerr := c.db.Close()
	c.db = nil
	c.expectCloned, c.recover = false, true
	if p := w.takeCrash(); p != nil {
		w.crashClient(c, p.power, p.fired) // the operation's crash plan fired in the close
	} else if cerr != nil {
		w.fail("%s: close before recovery: %v", c.name, cerr)
	}
	w.ensureOpen(c)
	if c.recover {
		c.recover = false
		w.fail("%s: recovery of a copy did not open", c.name)
	}
	return true
}

// pushedAsCopy is called for every batch the server committed: none may
// come from a client id whose replica lost commits the server has under it.
func (w *world) pushedAsCopy(client string) {
	for _, c := range w.clients {
		if c.expectCloned && c.copyID == client {
			w.fail("%s pushed under client id %s, although it lost commits it had pushed under it (no ErrClientCloned)", c.name, client)
		}
	}
}

// checkLost runs at quiescence: no lost write came back, and no copy went
// unnoticed.
func (w *world) checkLost() {
	w.model.mu.Lock()
	defer w.model.mu.Unlock()
	for _, c := range w.clients {
		for tok := range c.lost {
			if w.model.tokens[tok] > 0 {
				w.fail("%s's write %s, lost in a power loss before it was pushed, landed on the server later", c.name, tok)
			}
		}
		if c.expectCloned {
			w.fail("%s lost commits it had pushed, and no push or pull refused it as a copy", c.name)
		}
	}
}
