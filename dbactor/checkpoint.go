package dbactor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// checkpoint copies the WAL into the database file without losing the
// synced base:
//
//  1. append to <db>-revert the base image of every page the checkpoint
//     will overwrite that the revert store does not hold yet, fsync, and
//     record the new length with Checkpointing set;
//  2. PRAGMA wal_checkpoint(TRUNCATE), or RESTART (below);
//  3. record, if every frame was copied, W = the end of the copied log
//     (zero for an emptied WAL) with Copied set, the database file's
//     stamp, Checkpointing cleared.
//
// After step 1 the base no longer depends on the database file's copy of
// the local pages, so a crash during or after step 2 leaves it intact; an
// open with Checkpointing set finishes step 3 (recoverCheckpoint).
//
// An automatic checkpoint (restart) leaves the WAL file as it is: SQLite
// starts the next commit at its first frame, under new salts, and writes
// over the copied generation without changing the file's size (whose
// change made every commit's fsync update the file's metadata too). The
// copied frames stay valid until then, which is why W names their end
// instead of being zero. Explicit checkpoints and the one at close
// truncate: a closed replica's WAL is empty.
func (a *dbActor) checkpoint(ctx context.Context, restart bool) error {
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	if err := a.checkBaseFrames(); err != nil {
		return err
	}
	if err := a.syncBeforeMark(ctx); err != nil {
		return err
	}
	return a.copyWAL(ctx, true, restart)
}

// syncBeforeMark makes a SyncNormal partial replica's local commits
// durable before copyWAL's MarkPresent records their pages: SQLite fsyncs
// the WAL only inside wal_checkpoint, after the record, so a power loss
// between them would take the frames of a page never fetched (a reused
// free-list leaf) and leave the log naming its hole as present. It comes
// first, before the base images are saved, because its own commit adds a
// frame whose page they must cover too.
func (a *dbActor) syncBeforeMark(ctx context.Context) error {
	if a.pages == nil || !a.unsynced {
		return nil
	}
	return a.durableMark(ctx)
}

// checkBaseFrames scans the base's WAL frames from the start (walIndex)
// before a checkpoint copies them and saves base images from them: a
// pull's reload checks only the frames after the previous base
// (walIndexAfter), so a change to an earlier frame (bit rot, a tool
// editing a page in the WAL) is seen here at the latest, before it
// reaches the database file. The checkpoint reads every frame anyway.
func (a *dbActor) checkBaseFrames() error {
	b := a.meta.SyncDB.Base
	if b.WAL.Frame == 0 || b.Copied {
		return nil
	}
	if err := a.openWAL(); err != nil {
		return err
	}
	if a.walFile == nil {
		return nil // checkForeignWrites judged the WAL's end
	}
	if _, err := walIndex(a.walFile, b); errors.Is(err, ErrExternalModification) {
		a.detach(context.Background(), err)
		return a.detached
	} else if err != nil {
		return err
	}
	return nil
}

// copyWAL runs the checkpoint's steps. carry says whether the database
// file's recorded content hash may be carried through the copy (not after
// an interrupted copy, which may have changed the file already).
func (a *dbActor) copyWAL(ctx context.Context, carry, restart bool) error {
	dirty, err := a.dirtyPages(ctx)
	if err != nil {
		return err
	}
	rv := a.base.revert
	var buf []byte
	for pg := range dirty {
		if pg > a.base.base.DBSize || rv.has(pg) {
			continue
		}
		// A partial replica does not fetch a page only to save it before
		// overwriting it: the base image of a page missing from the file
		// (and not in the base's WAL frames) is the server's bootstrap image.
		if a.pages != nil && !a.pages.Present(pg) {
			if _, inWAL := a.base.index.Lookup(pg, a.base.base.WAL.Frame); !inWAL {
				if err := rv.appendRemote(pg); err != nil {
					return err
				}
				continue
			}
		}
		if buf, err = a.base.page(buf[:0], pg); err != nil {
			return fmt.Errorf("save base page %d: %w", pg, err)
		}
		if err := rv.append(pg, buf); err != nil {
			return err
		}
	}
	if err := rv.sync(); err != nil {
		return err
	}
	failpoint.Hit("checkpoint.revert", a.cfg.Path)
	newLen := rv.size
	if err := a.updateMeta(ctx, func(m *messages.Meta) error {
		m.SyncDB.Base.RevertLen = newLen
		m.SyncDB.Checkpointing = true
		// The copy changes the WAL: a clean close's record of it (open
		// checked it already, before recovering a checkpoint) would make
		// the next open take a crash during this one for a foreign write.
		m.SyncDB.CleanClose = nil
		return nil
	}); err != nil {
		return err
	}
	a.base.base.RevertLen = newLen
	failpoint.Hit("checkpoint.meta", a.cfg.Path)
	// The checkpoint will write every page of the WAL into the file: a
	// partial replica records them in its presence log first, in one
	// append, so that a crash cannot leave a copied page looking missing.
	// Each becomes present only as SQLite writes it (WillWrite, which also
	// shuts fetches out): a reader that holds the copy back reads the
	// pages it left from the file, and must fetch them, not read holes.
	// A failed record changes nothing; the next checkpoint records them.
	// The WAL's frames must be durable before the record (a power loss
	// after it must not take frames of pages never fetched):
	// checkpoint's syncBeforeMark sees to it. recoverCheckpoint (at open,
	// or for unfinished) comes here without it and needs none:
	// Checkpointing is recorded only after syncBeforeMark, and what
	// commits while it is set is durable: open and checkForeignWrites
	// recover before any write; the open's recoverPull commits under
	// durable, FULL; close's 'closed' commit (SyncNormal, with unfinished
	// set by a failed finish) runs under durable too, and the next open
	// finds Checkpointing on disk, skips checkLocalWAL and takes the WAL
	// that commit restarted for later commits (recoverCheckpoint). After
	// a power loss the WAL holds only what reached the disk.
	// TestPartialSyncNormalRecoveredCheckpointPowerLoss.
	if a.pages != nil {
		var all []uint32
		for pg := range a.walPages() {
			all = append(all, pg)
		}
		if err := a.pages.MarkPresent(all); err != nil {
			return fmt.Errorf("mark pages present: %w", err)
		}
		failpoint.Hit("checkpoint.marked", a.cfg.Path)
	}

	// The pages the copy may write, or drop by truncating the file, leave
	// the content hash; after the copy their new content joins it.
	var plan *hashPlan
	if st := a.meta.SyncDB.DBFile; carry && a.pages == nil && st != nil && st.Hash != 0 {
		if plan, err = a.planHash(ctx, st.Hash); err != nil {
			return err
		}
	}

	// Both modes wait (the writer's busy timeout) for readers of frames
	// not yet copied, and neither needs this actor: the read pool and a
	// partial replica's fetches (pageactor) do not ask it for anything.
	mode := "TRUNCATE"
	if restart {
		mode = "RESTART"
	}
	var busy, logFrames, copied int
	if err := a.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &logFrames, &copied); err != nil {
		// The copy may have written some pages into the file (a full disk,
		// an I/O error, an interrupt) before it failed: the file no longer
		// has the content the hash plan was made for. Finish as an open
		// would (recoverCheckpoint, which recomputes the hash) before the
		// next operation.
		a.unfinished = true
		return fmt.Errorf("checkpoint: %w", err)
	}
	failpoint.Hit("checkpoint.copied", a.cfg.Path)
	// Busy (a reader kept the WAL from being truncated or restarted)
	// matters only if frames were left behind.
	all := logFrames >= 0 && copied == logFrames
	if err := a.finishCheckpoint(ctx, plan, all); err != nil {
		// The WAL is copied (and maybe emptied) but the metadata still
		// points into it, with Checkpointing set: finish as an open would,
		// before the next operation reads the base or compares the WAL.
		a.unfinished = true
		return err
	}
	return nil
}

// hashPlan carries the content hash of the database file through a
// checkpoint: the hash without the pages the checkpoint may change.
type hashPlan struct {
	pages   map[uint32]bool
	without uint64
}

func (a *dbActor) planHash(ctx context.Context, hash uint64) (*hashPlan, error) {
	st, err := a.dbFile.Stat()
	if err != nil {
		return nil, err
	}
	oldPages := uint32(st.Size() / PageSize)
	var newPages uint32
	if err := a.conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&newPages); err != nil {
		return nil, err
	}
	pages := a.walPages()
	for pg := newPages + 1; pg <= oldPages; pg++ {
		pages[pg] = true
	}
	old, err := pagesHash(a.dbFile, pages, oldPages)
	if err != nil {
		return nil, err
	}
	return &hashPlan{pages: pages, without: hash ^ old}, nil
}

// stamp stamps the database file after a checkpoint: from plan if there
// is one, else by hashing the whole file.
func (a *dbActor) stamp(plan *hashPlan) (*messages.FileStamp, error) {
	if plan == nil {
		return StampOf(a.cfg.Path)
	}
	cur, err := fileStamp(a.cfg.Path)
	if err != nil {
		return nil, err
	}
	now, err := pagesHash(a.dbFile, plan.pages, uint32(cur.Size/PageSize))
	if err != nil {
		return nil, err
	}
	cur.Hash = plan.without ^ now
	return cur, nil
}

// finishCheckpoint records the state after a checkpoint, complete or not.
// If every frame was copied (all) the base is the database file plus the
// revert store, and W becomes the end of the copied log, Copied (zero if
// the WAL was emptied); if not (a reader held it back), W stays and the
// pages copied so far are covered by the revert store.
func (a *dbActor) finishCheckpoint(ctx context.Context, plan *hashPlan, all bool) error {
	var stamp *messages.FileStamp
	if a.pages == nil {
		var err error
		if stamp, err = a.stamp(plan); err != nil {
			return err
		}
	}
	var end walfile.Position
	if all {
		var err error
		if end, err = a.walState(a.meta.SyncDB.Base.WAL); err != nil {
			return externalModification("the WAL cannot be read: %w", err)
		}
	}
	emptied := all
	// A partial replica's fetches move to the synced revision once the WAL
	// is empty (see pageactor.Repin), so that it outlives its bootstrap
	// revision on the server.
	repin := ""
	if p := a.meta.SyncDB.Partial; p != nil && emptied && a.meta.SyncedRevision != nil {
		repin = a.meta.SyncedRevision.Revision
	}
	if err := a.updateMeta(ctx, func(m *messages.Meta) error {
		if emptied {
			m.SyncDB.Base.WAL, m.SyncDB.Base.Copied = end, !end.IsZero()
			// The generation's commits are in the database file now:
			// the next local commit records its own (recordLocalWAL).
			m.SyncDB.LocalWAL = nil
		}
		if repin != "" {
			m.SyncDB.Partial.FetchRevision = repin
		}
		m.SyncDB.DBFile = stamp
		m.SyncDB.Checkpointing = false
		return nil
	}); err != nil {
		return err
	}
	if repin != "" {
		a.pages.Repin(repin)
	}
	a.noteWAL()
	return a.loadBase()
}

// recoverCheckpoint finishes a checkpoint interrupted by a crash (or whose
// last -info write failed). The revert store covers every page the WAL's
// local frames held at the checkpoint's first step, and the WAL may still
// hold them (the crash came before or during the copy) or be empty (after
// it). But it may also hold later commits, which the revert store does not
// cover: a process that died right after renaming the finished
// checkpoint's -info, before syncing the directory, leaves that record to
// the next process, which reads it and writes on, until a power loss takes
// the rename back. So the recovery runs the checkpoint again, saving the
// base images of what the WAL holds now before copying it; copying alone
// would put local pages into the base (their changes then vanish at the
// next pull's replay, which finds them already there).
func (a *dbActor) recoverCheckpoint(ctx context.Context) error {
	size := a.walSizeNow()
	if a.walEmptyAt(size) {
		return a.finishCheckpoint(ctx, nil, true)
	}
	sc, err := walfile.NewScanner(a.walFile, size, a.meta.SyncDB.Base.WAL)
	if err != nil {
		return externalModification("the WAL cannot be read: %w", err)
	}
	if sc.Restarted() {
		// SQLite restarts the WAL only once all of it is in the database
		// file: the copy finished, the base is the file and the revert
		// store, and every frame of this WAL is a later local commit.
		// The old generation, the record of its local commits with it, is
		// all in the file: a record left would name a WAL of another
		// generation if the copy below leaves frames (finishCheckpoint
		// then keeps it), and the open would refuse a healthy replica.
		if err := a.updateMeta(ctx, func(m *messages.Meta) error {
			m.SyncDB.Base.WAL, m.SyncDB.Base.Copied = walfile.Position{}, false
			m.SyncDB.LocalWAL = nil
			return nil
		}); err != nil {
			return err
		}
	}
	if err := a.loadBase(); err != nil {
		return err
	}
	return a.copyWAL(ctx, false, false)
}

// walEmptyAt reports whether a WAL of size bytes holds no frame SQLite
// would read: it is shorter than a header, or its header is not valid and
// it is one header's size or W is Copied. The former is what a power loss
// can leave, on a real disk, of a new generation's first write after a
// checkpoint emptied the WAL: the size reached the disk, the header's
// bytes did not (SQLite fsyncs the header before it writes any frame, so
// no frame can be lost with it). The latter is a torn restart header over
// a WAL reused after an automatic checkpoint (RESTART): every frame in the
// file had been copied, and, the header synced first, no frame of the new
// generation is lost with it. SQLite takes both for an empty WAL.
// Otherwise the frames after an invalid header are commits the database
// file does not hold (the base's, or local ones after a W a truncating
// checkpoint made zero): not empty, and the loss is refused.
func (a *dbActor) walEmptyAt(size int64) bool {
	if size < walfile.HeaderSize {
		return true
	}
	if size > walfile.HeaderSize && !a.meta.SyncDB.Base.Copied || a.openWAL() != nil || a.walFile == nil {
		return false
	}
	var b [walfile.HeaderSize]byte
	if _, err := a.walFile.ReadAt(b[:], 0); err != nil {
		return false
	}
	_, err := walfile.ParseHeader(b[:])
	return errors.Is(err, walfile.ErrInvalidHeader)
}

// stats reports the local statistics.
func (a *dbActor) stats(ctx context.Context) (messages.LocalStats, error) {
	var s messages.LocalStats
	if a.detached != nil {
		s.Detached = a.detached.Error()
	}
	// A fork's settling moves the hints in -info without this actor: read
	// them fresh.
	m, err := a.cfg.Meta.Get(ctx)
	if err != nil {
		return s, err
	}
	if hdr, entries, conflicts, ok, err := a.pendingJournal(ctx); err != nil {
		return s, err
	} else if ok { // the database may hold the server's pages
		for _, e := range entries {
			if e.ID > hdr.Pushed {
				s.CDCOperations++
			}
		}
		for _, c := range conflicts {
			if c.Resolved == "" {
				s.Conflicts++
			}
		}
		s.LastPushUnixTime = hdr.PushTime
	} else {
		if s.CDCOperations, s.LastPushUnixTime, err = UnpushedChanges(ctx, a.conn, m); err != nil {
			return s, err
		}
		if s.Conflicts, err = a.unresolvedConflicts(ctx); err != nil {
			return s, err
		}
	}
	s.MainWALSize = a.walSizeNow()
	if a.pages != nil {
		s.PagesPresent, s.PagesTotal = a.pages.Counts()
	}
	if st, err := os.Stat(a.files.Revert); err == nil {
		s.RevertWALSize = st.Size()
	}
	return s, nil
}
