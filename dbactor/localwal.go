package dbactor

import (
	"context"
	"errors"
	"fmt"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// The record of a WAL generation that holds local commits
// (messages.SyncDBState.LocalWAL). When the base's W has no frame in the
// WAL's current generation (W is frame 0 after a bootstrap or a
// truncating checkpoint; Copied after an automatic one), a -wal lost
// whole (deleted, a backup restored or a copy made without it) leaves
// nothing the open checks: the base is the database file, there is no T1
// to look for, and the replica opened as its base without the local
// commits the WAL held, unpushed ones included, telling nobody. -info now
// names the generation's first local commit, so an open can tell that
// the WAL it finds lacks them.
//
// The record is written after that commit is durable and before the
// write returns, never before the commit: a record naming a commit a
// crash kept from being made would refuse a healthy replica. So every
// crash point leaves either no record and a WAL that may hold the
// commit (opens, with the commit if it was made: the window below), or
// the record and the commit both durable (opens). Under SyncNormal the
// commit is made durable first (durableMark), since a power loss could
// otherwise keep the record and take back the commit. Once per
// generation: a commit in a generation the record names costs nothing;
// the first commit of a new one (after a checkpoint, or the first of a
// process: a clean close checkpoints) costs one -info write (under
// SyncNormal, one WAL fsync more). Only local writes (DB.Exec, DB.Tx,
// conflict resolution, a rebuild's import) record: syncdb's own commits
// (the first open's local tables, a pull's T1 and T2, a push record) put
// nothing in the WAL that is lost with it (a pull's T1 and T2 are redone
// from the server, a push record from the server's mark), and a fresh
// replica whose WAL held only its local tables opens without it.
//
// Not caught: the commit of a write killed between its commit and its
// record (never acknowledged) lost with the WAL before the next write
// of its generation records it; a WAL lost while an interrupted
// checkpoint is recorded (Checkpointing: recoverCheckpoint finishes it
// whatever the WAL holds); and a WAL cut after the recorded commit (only
// the generation's first local commit is checked).

// errWALLost is wrapped by checkLocalWAL's refusal (with
// ErrExternalModification).
var errWALLost = errors.New("the WAL lost local commits that are not in the database file")

// recordLocalWAL records the WAL's generation in -info after a local
// commit (a.walPos, noted after it; before, the WAL's end before it),
// unless -info names it already or the commit wrote no frame. A
// commit that wrote none (an UPDATE matching no row, an INSERT OR IGNORE
// of a present key, a DB.Tx that only read) left nothing in the WAL to
// lose, and its position may be the end of a generation a checkpoint
// copied whole, which the next commit, syncdb's own maybe (a pull's
// anchor, a push record), restarts without a record: the open would then call the WAL "of
// another generation" and refuse a healthy replica. A failure is logged,
// not returned: the write committed, and the next one of the generation
// records it.
func (a *dbActor) recordLocalWAL(ctx context.Context, before walfile.Position) {
	if a.walPos == before || !a.needsLocalWAL(a.walPos) {
		return
	}
	ctx = context.WithoutCancel(ctx) // the write committed: its caller giving up must not leave it unrecorded
	if a.unsynced && !mutation.unsyncedLocalWAL {
		// The record must not outlive the commit in a power loss.
		err := a.checkForeignWrites()
		if err == nil {
			err = a.durableMark(ctx)
		}
		if err != nil {
			a.cfg.Logger.Warn("making the WAL's first local commit durable", "err", err)
			return
		}
		if !a.needsLocalWAL(a.walPos) {
			return
		}
	}
	failpoint.Hit("localwal.committed", a.cfg.Path)
	p := a.walPos
	if err := a.updateMeta(ctx, func(m *messages.Meta) error { m.SyncDB.LocalWAL = &p; return nil }); err != nil {
		a.cfg.Logger.Warn("recording the WAL generation of a local commit", "err", err)
		return
	}
	failpoint.Hit("localwal.recorded", a.cfg.Path)
}

// needsLocalWAL reports whether p, a position after a commit, is in a
// WAL generation -info does not name as holding local commits, and past
// what the database file holds (a generation a checkpoint copied up to
// the base's W, Copied: those commits are in the file).
func (a *dbActor) needsLocalWAL(p walfile.Position) bool {
	if p.Frame <= 0 || copiedUpTo(a.meta.SyncDB.Base, p) {
		return false
	}
	r := a.meta.SyncDB.LocalWAL
	return r == nil || r.Salt1 != p.Salt1 || r.Salt2 != p.Salt2
}

// copiedUpTo reports whether a checkpoint copied the WAL's generation
// of p into the database file up to p at least: the base's W is of p's
// generation, at or after it, Copied. A record there names commits the
// file holds (one a commit that wrote no frame made, before
// recordLocalWAL looked for frames): it is satisfied whatever the WAL
// holds, which SQLite restarts at its next commit.
func copiedUpTo(b messages.Base, p walfile.Position) bool {
	return b.Copied && b.WAL.Salt1 == p.Salt1 && b.WAL.Salt2 == p.Salt2 && p.Frame <= b.WAL.Frame
}

// checkLocalWAL refuses (ErrExternalModification: the replica opens read
// only) a WAL that lacks the local commit -info records: none, too short
// for a header, of another generation, the commit frame not there with
// its checksum, or a bad frame before it (SQLite's recovery reads no
// further). The scan reads the generation's frames up to the record, the
// first local commit of its generation: few, as a rule. Not while a
// checkpoint is recorded as interrupted (recoverCheckpoint clears the
// record with the rest), and not when the database file's stamp did not
// match (openFiles reports that instead: another program checkpointed,
// and the WAL's commits may well be in the file, which Config.Recover
// keeps).
//
// stamped: the database file's stamp was checked and matched, so nobody
// checkpointed the WAL into it: its commits are lost (errWALLost, whose
// advice is to put the -wal back, and which a rebuild refuses: it would
// keep only the file's changes). Without a stamp (a partial replica, a
// local database before its first checkpoint) another program's
// checkpoint, which deletes the WAL when it closes, leaves the same WAL:
// the refusal says both, and Config.Recover may rebuild from the file;
// but a replica with no server on record cannot be rebuilt, and gets
// errWALLost's advice.
func (a *dbActor) checkLocalWAL(stamped bool) error {
	r := a.meta.SyncDB.LocalWAL
	if r == nil || a.meta.SyncDB.Checkpointing || copiedUpTo(a.meta.SyncDB.Base, *r) {
		return nil
	}
	c := a.meta.SavedConfiguration
	server := a.meta.SyncedRevision != nil || c != nil && c.RemoteURL != nil && *c.RemoteURL != ""
	lost := func(what string) error {
		if !stamped && server {
			return externalModification("%s, though -info records a local commit at its frame %d: another program checkpointed it "+
				"into the database file (its commits are then there), or it was lost with the commits it held, which may include "+
				"changes not yet pushed (deleted, or the replica restored or copied without it): then put it back before anything else",
				what, r.Frame)
		}
		return fmt.Errorf("%w: %w: %s (-info records a local commit at its frame %d): it was deleted, or the replica was "+
			"restored or copied without it, and the commits it held, which may include changes not yet pushed, are not in "+
			"the database file", ErrExternalModification, errWALLost, what, r.Frame)
	}
	if err := a.openWAL(); err != nil {
		return err
	}
	if a.walFile == nil {
		return lost(fmt.Sprintf("the WAL %s is missing", a.files.WAL))
	}
	st, err := a.walFile.Stat()
	if err != nil {
		return err
	}
	if st.Size() < walfile.HeaderSize {
		return lost(fmt.Sprintf("the WAL %s is missing (or empty)", a.files.WAL))
	}
	sc, err := walfile.NewScanner(a.walFile, st.Size(), walfile.Position{})
	if err != nil {
		return lost(fmt.Sprintf("the WAL %s cannot be read (%v)", a.files.WAL, err))
	}
	if h := sc.Header(); h.Salt1 != r.Salt1 || h.Salt2 != r.Salt2 {
		return lost(fmt.Sprintf("the WAL %s is of another generation", a.files.WAL))
	}
	err = sc.Each(func([]walfile.Frame) error {
		if sc.Position().Frame >= r.Frame {
			return errScanDone
		}
		return nil
	})
	if err != nil && err != errScanDone {
		return lost(fmt.Sprintf("the WAL %s cannot be read (%v)", a.files.WAL, err))
	}
	if sc.Position() != *r {
		return lost(fmt.Sprintf("the WAL %s no longer holds that commit (its valid log ends at frame %d)", a.files.WAL, sc.Position().Frame))
	}
	return nil
}
