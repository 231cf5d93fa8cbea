package sim

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/change"
)

// conflictRec is one recorded conflict of a client, as its
// _syncdb_conflicts table holds it.
type conflictRec struct {
	id                       int64
	kind, table              string
	key                      int64
	hasKey                   bool
	revision, base, resolved string
	tokens                   []string // value tokens of the local changes it holds
	// written are the tokens its local changes wrote (in the after image,
	// not the before image): writes of the replica not yet on the server.
	written []string
}

// readConflicts reads every conflict c recorded.
func readConflicts(db *syncdb.DB) ([]conflictRec, error) {
	rows, err := db.Query(context.Background(), "SELECT id, kind, table_name, revision, base, resolved, changes FROM _syncdb_conflicts ORDER BY id")
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil, nil
		}
		return nil, err
	}
	defer rows.Close()
	var out []conflictRec
	for rows.Next() {
		var r conflictRec
		var blob []byte
		if err := rows.Scan(&r.id, &r.kind, &r.table, &r.revision, &r.base, &r.resolved, &blob); err != nil {
			return nil, err
		}
		cs, err := dbactor.ConflictChanges(blob)
		if err != nil || len(cs) == 0 {
			return nil, fmt.Errorf("conflict %d: %d changes, %v", r.id, len(cs), err)
		}
		if k := change.Key(cs[0]); len(k) == 1 {
			r.key, r.hasKey = k[0].(int64)
		}
		for _, c := range cs {
			before := map[string]bool{}
			for _, v := range c.Before {
				if s, ok := v.(string); ok && isToken(s) {
					r.tokens = append(r.tokens, s)
					before[s] = true
				}
			}
			for _, v := range c.After {
				if s, ok := v.(string); ok && isToken(s) {
					r.tokens = append(r.tokens, s)
					if !before[s] {
						r.written = append(r.written, s)
					}
				}
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func isToken(s string) bool { return strings.HasPrefix(s, "c") && strings.Contains(s, ".") }

// checkConflicts checks the conflicts c recorded since the last check:
// each must match a real concurrent change, one committed by another
// client in the revisions between the replica's base and the pull that
// found it (for a row conflict, a change of that row). It also keeps the
// tokens of the local changes that conflicts hold back (waiting, or
// resolved for the remote side): those never reach the server, and that
// is not a lost write.
func (w *world) checkConflicts(c *client, op string) {
	recs, err := readConflicts(c.db)
	if err != nil {
		w.fail("%s after %s: read conflicts: %v", c.name, op, err)
		return
	}
	c.heldTokens = map[string]bool{}
	if c.conflictTokens == nil {
		c.conflictTokens = map[string]bool{}
	}
	for _, r := range recs {
		earlier := maps.Clone(c.conflictTokens)
		for _, t := range r.tokens {
			c.conflictTokens[t] = true
		}
		if r.resolved == "" || r.resolved == "remote" {
			for _, t := range r.tokens {
				c.heldTokens[t] = true
			}
		}
		if r.id <= c.seenConflict {
			continue
		}
		c.seenConflict = r.id
		w.logf("%s recorded conflict %d: %s on %s %d (base %s, at %s), resolved %q", c.name, r.id, r.kind, r.table, r.key, r.base, r.revision, r.resolved)
		row := r.kind != "constraint" && r.hasKey
		// A conflict is between the server and a local write it did not
		// have: a write that had landed by the conflict's revision means the
		// pull replayed a change the server had, over what landed since
		// (last writer wins: the later write must stand). (A rekeyed or
		// kept local write lands after it, with the resolution; keeping the
		// local side of an earlier conflict may bring a row back with
		// writes that had landed.)
		for _, tok := range r.written {
			if !strings.HasPrefix(tok, fmt.Sprintf("c%d.", c.i)) || earlier[tok] {
				continue
			}
			if seq, landed := w.model.landed(tok); landed && seq <= parseRevSeq(r.revision) {
				w.fail("%s: conflict %d (%s on %s %d, at %s) holds its write %s, which the server had since revision %d: the pull replayed a change the server already had",
					c.name, r.id, r.kind, r.table, r.key, r.revision, tok, seq)
				break
			}
		}
		if !w.model.concurrent(c.name, r.table, r.key, row, parseRevSeq(r.base), parseRevSeq(r.revision)) {
			w.fail("%s: conflict %d (%s on %s %d) matches no change another client committed between revisions %s and %s",
				c.name, r.id, r.kind, r.table, r.key, r.base, r.revision)
		}
	}
}

// resolveSome resolves each waiting conflict of c with a chance of one in
// three (all with every), keeping a side the seed chooses.
func (w *world) resolveSome(c *client, every bool) string {
	cs, err := c.db.Conflicts(context.Background())
	if err != nil {
		return errText(err)
	}
	var done []string
	for _, cf := range cs {
		if !every && w.rng.IntN(3) != 0 {
			continue
		}
		keep := [2]string{"local", "remote"}[w.rng.IntN(2)]
		err := c.db.ResolveConflict(context.Background(), cf.ID, keep)
		done = append(done, fmt.Sprintf("%d %s: %s", cf.ID, keep, errText(err)))
	}
	return fmt.Sprintf("%d waiting, resolved [%s]", len(cs), strings.Join(done, ", "))
}
