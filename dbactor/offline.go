package dbactor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
)

// BaseImage reads the synced base of a closed database — the pages the
// client believes the server has at meta.SyncedRevision — for checks and
// tools. fn gets each page 1..DBSize in order; data is valid during the
// call only. For a partial replica, present tells which pages of the
// bootstrap are in the file (nil for a full replica); a page the replica
// does not hold is passed with nil data.
// For syncdb's own packages; no compatibility promise.
func BaseImage(fs fsx.FS, path string, meta *messages.Meta, present func(pgno uint32) bool, fn func(pgno uint32, data []byte) error) error {
	files := layout.For(path)
	db, err := os.Open(files.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	var wal *os.File
	if f, err := os.Open(files.WAL); err == nil {
		wal = f
		defer f.Close()
	}
	b := meta.SyncDB.Base
	idx, err := walIndex(wal, b)
	if err != nil {
		return err
	}
	rv, err := openPageStore(fs, files.Revert, b.RevertLen, true)
	if err != nil {
		return fmt.Errorf("open revert store: %w", err)
	}
	defer rv.close()
	r := &baseReader{base: b, dbFile: db, wal: wal, index: idx, revert: rv}
	var buf []byte
	for pg := uint32(1); pg <= b.DBSize; pg++ {
		_, inWAL := idx.Lookup(pg, b.WAL.Frame)
		if present != nil && (rv.remote(pg) || !inWAL && !rv.has(pg) && !present(pg)) {
			if err := fn(pg, nil); err != nil {
				return err
			}
			continue
		}
		if buf, err = r.page(buf[:0], pg); err != nil {
			return err
		}
		if err := fn(pg, buf); err != nil {
			return err
		}
	}
	return nil
}

// ConflictChanges decodes the local changes a conflict record holds (the
// changes column of _syncdb_conflicts), for checks and tools.
func ConflictChanges(blob []byte) ([]change.Change, error) {
	parts, err := splitFramed(blob)
	if err != nil {
		return nil, err
	}
	out := make([]change.Change, len(parts))
	for i, p := range parts {
		if out[i], err = change.Decode(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// saveLocal answers SaveLocal: the local state as a rebuild's journal.
func (a *dbActor) saveLocal(ctx context.Context, path string) (int, error) {
	if a.detached != nil && errors.Is(a.detached, errWALLost) {
		// The database file lacks the WAL's commits: a rebuild from it
		// would drop them for good.
		return 0, fmt.Errorf("%w. A rebuild would carry over only the changes in the database file and give those up: nothing was changed", a.detached)
	}
	hdr, entries, conflicts, ok, err := a.pendingJournal(ctx)
	if err != nil {
		return 0, err
	}
	if ok {
		hdr.Revision, hdr.Pull = "", nil // a rebuild's journal
		return len(entries), writeJournal(a.cfg.FS, path, hdr, entries, conflicts, true)
	}
	return a.saveJournal(ctx, path, "", nil)
}

// pendingJournal reads the journal of a pull that a crash left pending
// and that the replica did not finish since (it opened detached: another
// program checkpointed its WAL; ok false if there is none). The pull may
// have committed its T1, and then the database holds the server's pages,
// whose _syncdb_* tables are not this replica's: the local changes are
// only in the journal. Unless the database records the pull as finished,
// the journal is the local state.
func (a *dbActor) pendingJournal(ctx context.Context) (hdr journalHeader, entries []journalEntry, conflicts []*conflictRecord, ok bool, err error) {
	if a.detached == nil && !a.pending {
		return hdr, nil, nil, false, nil // an open finished any pending pull
	}
	p, err := a.pendingPull(ctx)
	if err != nil || p == nil {
		return hdr, nil, nil, false, err
	}
	if done, err := a.recordsPull(ctx, p.Before); err != nil || done {
		return hdr, nil, nil, false, err
	}
	hdr, entries, conflicts, err = readJournal(a.cfg.FS, a.files.Replay)
	return hdr, entries, conflicts, err == nil, err
}

// saveJournal writes the replay journal of a pull (to revision, recording
// it as pending) or of a rebuild (revision "", pull nil): the local
// changes, the conflicts, the push chain and whether the replica is a
// copy. It returns the number of changes.
func (a *dbActor) saveJournal(ctx context.Context, path, revision string, pull *messages.PendingPull) (int, error) {
	gen, err := a.localPullGen(ctx)
	if err != nil {
		return 0, err
	}
	entries, err := a.readChangeLog(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the change log: %w", err)
	}
	conflicts, err := a.readConflicts(ctx, false)
	if err != nil {
		return 0, err
	}
	chain, err := a.storedChain(ctx)
	if err != nil {
		return 0, err
	}
	cloned, err := a.clonedReason(ctx)
	if err != nil {
		return 0, err
	}
	pushed, err := lastPushed(ctx, a.own(), &a.meta)
	if err != nil {
		return 0, err
	}
	sent, err := a.sentUpTo(ctx, chain)
	if err != nil {
		return 0, err
	}
	hdr := journalHeader{PullGen: gen, Revision: revision, Chain: chain, Cloned: cloned, Pushed: pushed.After, PushTime: pushed.Time, Sent: sent, Pull: pull}
	// The replica's own journal stays between pulls and is rewritten in
	// place; its directory entry is synced by the first rewrite of each
	// process, since a file found at open may be one whose creation a
	// crash kept from being synced (a torn first write, an import's).
	own := path == a.files.Replay
	if err := writeJournal(a.cfg.FS, path, hdr, entries, conflicts, !own || !a.journalSynced); err != nil {
		return 0, err
	}
	a.journalSynced = a.journalSynced || own
	return len(entries), nil
}

// importLocal answers ImportLocal: T2 of a pull, from a journal another
// replica saved, on this one's synced base.
func (a *dbActor) importLocal(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	a.journalSynced = false // replaced, then removed unsynced
	if err := fsx.WriteFileAtomic(a.cfg.FS, a.files.Replay, data); err != nil {
		return err
	}
	defer a.cfg.FS.Remove(a.files.Replay)
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	before := a.walPos
	rev := ""
	if r := a.meta.SyncedRevision; r != nil {
		rev = r.Revision
	}
	if err := a.durable(ctx, func() error { return a.replay(ctx, rev, rev, nil) }); err != nil {
		return err
	}
	a.cap.nextID = 0
	a.noteWAL()
	a.recordLocalWAL(ctx, before)
	return nil
}
