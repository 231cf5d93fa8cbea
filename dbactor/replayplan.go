package dbactor

import (
	"encoding/json"
	"fmt"

	"github.com/syncdb/syncdb/internal/change"
)

// serverMarks is this client's rows of turso_sync_last_change_id in the
// pulled pages: its mark, and its push chain value (nil if absent).
type serverMarks struct {
	Mark  mark
	Chain *mark
}

// replayPlan is what T2 (replay) does apart from the conflict rules:
// which journaled changes it replays, in journal order, and the rows it
// sets in _syncdb_local after them. Which conflicts a change meets is
// not planned: replayer.apply decides it on the row as the changes before
// it left it (precondition, itself pure), in the transaction.
type replayPlan struct {
	Floor  int64  // the journaled changes at or below it are in the pulled pages
	Cloned string // why the replica is a copy of another one ("" if it is not)
	// Changes are the changes to replay, decoded, with their journal ids.
	Changes []change.Change
	Local   []localRow
}

// localRow is one row of _syncdb_local that T2 sets.
type localRow struct {
	Key   string
	Value any
}

// planReplay plans T2 of a pull to revision (rec: the new base it
// records; nil for a rebuild's import) from the journal (hdr, entries),
// the server's marks for this client in the pulled pages (nil: none) and
// the local-only tables (ignored).
//
// Changes at or below the floor are in the pulled pages, except those of
// local-only tables, which the server never gets: those replay always.
// The records: the new pull generation and revision, the new base (a
// pull's), the last push's time (kept across the pull), and the copy's
// mark, newly found or carried in the journal.
func planReplay(hdr journalHeader, entries []journalEntry, marks *serverMarks, ignored map[string]bool, revision string, rec *syncedBase) (replayPlan, error) {
	var p replayPlan
	if marks != nil {
		p.Floor, p.Cloned = planFloor(hdr, entries, marks.Mark, marks.Chain)
	}
	for _, e := range entries {
		c, err := change.Decode(e.Record)
		if err != nil {
			return p, fmt.Errorf("journal change %d: %w", e.ID, err)
		}
		if e.ID <= p.Floor && !ignored[c.Table] {
			continue
		}
		c.ID, c.Txn = e.ID, e.Txn
		p.Changes = append(p.Changes, c)
	}
	p.Local = []localRow{{"pull_gen", hdr.PullGen + 1}, {"applied_revision", revision}}
	if rec != nil {
		js, err := json.Marshal(rec)
		if err != nil {
			return p, err
		}
		p.Local = append(p.Local, localRow{"synced_base", string(js)})
	}
	if hdr.PushTime > 0 {
		p.Local = append(p.Local, localRow{"push_time", hdr.PushTime})
	}
	cloned := p.Cloned
	if cloned == "" {
		cloned = hdr.Cloned
	}
	if cloned != "" {
		p.Local = append(p.Local, localRow{"cloned", cloned})
	}
	return p, nil
}

// planFloor decides which journaled changes the server already has, from
// this client's mark (and push chain value, if any) in the pulled pages:
// the mark, if the push chain there is this replica's own. If it is not
// (the server holds changes under this id that this replica did not make:
// it is a copy of another one), the floor is the last change this replica
// knows it pushed, so that it keeps every later one, and why is set. A
// mark of another pull generation says nothing of this one's changes:
// floor 0.
func planFloor(hdr journalHeader, entries []journalEntry, server mark, chain *mark) (floor int64, why string) {
	known := max(hdr.Chain.ID, hdr.Pushed) // trimmed, or recorded: confirmed by a push
	if why = clonedWhy(hdr.PullGen, hdr.Chain, entries, max(known, hdr.Sent), server, chain); why != "" {
		return known, why
	}
	if server.Gen != hdr.PullGen {
		return 0, ""
	}
	if mutation.replayPushed {
		return known, ""
	}
	return server.ID, ""
}
