package dbactor

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// applyPull applies the pull in the changes file: the four steps of the
// package doc, after the peel (peelPull) that plans them. Nothing physical
// changed: only the synced revision moves.
func (a *dbActor) applyPull(ctx context.Context, revision string, dbSize uint32, changesPath string) (bool, error) {
	if err := a.checkForeignWrites(); err != nil {
		return false, err
	}
	changes, err := openPageStore(a.cfg.FS, changesPath, -1, false)
	if err != nil {
		return false, fmt.Errorf("read downloaded pages: %w", err)
	}
	defer changes.close()
	base := a.base.base
	if changes.len() == 0 && dbSize == base.DBSize {
		// The local layer stays valid on the new base.
		return false, a.updateMeta(ctx, func(m *messages.Meta) error {
			m.SyncedRevision = &messages.Revision{Type: "v1", Revision: revision}
			t := a.now().Unix()
			m.LastPullUnixTime = &t
			return nil
		})
	}
	before, plan, err := a.peelPull(ctx, base, changes, dbSize)
	if err != nil {
		return false, err
	}
	pending := &messages.PendingPull{Revision: revision, DBSize: dbSize, Before: before, Page1: base.Page1}
	if r := a.meta.SyncedRevision; r != nil {
		pending.From = r.Revision
	}
	page1, err := a.journalPull(ctx, pending, plan, changes) // step 1
	if err != nil {
		return false, err
	}
	// Step 2: T1. Readers wait at the gate until T2 committed, so that
	// nobody sees the server's state without the local changes on top.
	if a.cfg.Gate != nil {
		a.cfg.Gate.Close()
		defer a.cfg.Gate.Open()
	}
	werr := a.writeBase(ctx, plan, changes, page1)
	failpoint.Hit("pull.t1", a.cfg.Path)
	if errors.Is(werr, errWriterBusy) {
		// The writer's page cache predates T1 and could not be emptied
		// (refreshWriter): T2 must not run on it (its reads would see the
		// old pages). The pull stays pending, T1 (if it committed) in the
		// WAL; the next request refreshes the cache first (haveWriter)
		// and then finishes it.
		return true, werr
	}
	// Steps 3 and 4. Whatever writeBase reported, the WAL says whether T1
	// committed (a failed COMMIT may still have committed): recoverPull
	// abandons the pull if it did not, and finishes it (T2, new base) if
	// it did.
	if err := a.recoverPull(ctx); err != nil {
		return true, errors.Join(werr, err)
	}
	if a.meta.SyncedRevision == nil || a.meta.SyncedRevision.Revision != revision {
		return false, abandonedPull(werr)
	}
	return true, nil
}

// peelPull finds the local layer a pull peels off (pages written after W,
// pages the local database lost by shrinking below the base, the revert
// store's) and the WAL end before T1 (before), and plans T1 (planPull)
// with the pages the server sent.
func (a *dbActor) peelPull(ctx context.Context, base messages.Base, changes *pageStore, dbSize uint32) (before walfile.Position, plan pullPlan, err error) {
	if before, err = a.anchorWAL(ctx); err != nil {
		return before, plan, err
	}
	dirty, err := a.dirtyPages(ctx)
	if err != nil {
		return before, plan, err
	}
	for _, pg := range a.base.revert.sortedPages() {
		dirty[pg] = true
	}
	var curSize uint32
	if err := a.own().QueryRowContext(ctx, "PRAGMA page_count").Scan(&curSize); err != nil {
		return before, plan, err
	}
	plan, err = planPull(base.DBSize, dirty, changes.sortedPages(), curSize, dbSize)
	return before, plan, err
}

// journalPull is step 1: the journal of local changes, which records the
// pending pull: once it is in place, a crash is recovered from it
// (recoverPull). It also holds the true header of the new base's page 1
// if T1 writes that page (with a bumped cookie; set in pending.Page1
// here): the rest of the page is what T1 writes, so the base needs no
// copy of it in the revert store (messages.Base.Page1). It returns that
// true page 1 for T1 to write (nil if T1 does not write page 1).
func (a *dbActor) journalPull(ctx context.Context, pending *messages.PendingPull, plan pullPlan, changes *pageStore) (page1 []byte, err error) {
	switch plan.Page1 {
	case fromServer:
		if page1, err = changes.read(nil, 1); err != nil {
			return nil, err
		}
	case fromBase:
		if page1, err = a.base.page(nil, 1); err != nil {
			return nil, err
		}
	}
	if page1 != nil {
		pending.Page1 = page1Header(page1)
	}
	if _, err := a.saveJournal(ctx, a.files.Replay, pending.Revision, pending); err != nil {
		// It may be in place all the same (a failed directory sync): the
		// next request finds no T1 and removes it before anything writes.
		a.pull, a.pending = pending, true
		return nil, fmt.Errorf("save local changes: %w", err)
	}
	failpoint.Hit("pull.journal", a.cfg.Path)
	a.pull, a.pending = pending, true
	failpoint.Hit("pull.pending", a.cfg.Path)
	return page1, nil
}

// errT1NotInWAL: T1's write reported success, but recovery found no T1 in
// the WAL and abandoned the pull.
var errT1NotInWAL = errors.New("the first transaction reported a commit that the WAL does not hold; the pull was abandoned")

// abandonedPull is the error of a pull recovery abandoned after T1's
// write (werr, nil if it reported success).
func abandonedPull(werr error) error {
	if werr == nil {
		werr = errT1NotInWAL
	}
	return fmt.Errorf("apply pulled pages: %w", werr)
}

// anchorWAL returns the WAL end before a pull's T1, making sure it is a
// real, durable position in a WAL generation: an empty WAL (after a
// checkpoint) gets a small durable commit first. Recovery recognises T1 as
// the first commit after that position, in that generation. Under
// SyncNormal the last local commits may not be on disk yet (a power loss
// takes them back, and the recorded position with them: recovery found it
// beyond the WAL's end and refused the replica as modified outside
// syncdb), so the anchor commit is made there too: the pull runs in
// durable(), so it is synchronous=FULL and its fsync covers the frames
// before it. A WAL that still ends where a checkpoint copied all of it
// (the base's W, Copied) gets one as well: SQLite restarts such a WAL at
// the next commit, so T1 would begin a new generation and recovery, which
// looks for it in Before's, would take it for not committed.
func (a *dbActor) anchorWAL(ctx context.Context) (walfile.Position, error) {
	pos, err := a.walEnd()
	if err != nil {
		return pos, externalModification("the WAL cannot be read: %w", err)
	}
	b := a.meta.SyncDB.Base
	copied := b.Copied && pos == b.WAL && !mutation.copiedUnanchored
	if (pos.Frame > 0 && !copied && (!a.cfg.SyncNormal || mutation.unsyncedAnchor)) || mutation.unanchoredWAL {
		return pos, nil
	}
	if _, err := a.conn.ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('wal_anchor', ?)", a.now().UnixNano()); err != nil {
		return pos, fmt.Errorf("anchor the WAL: %w", err)
	}
	a.noteWAL()
	if pos, err = a.walEnd(); err != nil {
		return pos, fmt.Errorf("anchor the WAL: %w", err)
	}
	if pos.Frame == 0 || copied && pos == b.WAL {
		return pos, errors.New("anchor the WAL: its commit is not in the WAL")
	}
	return pos, nil
}

// walEmpty reports whether the WAL file is empty or absent.
func (a *dbActor) walEmpty() bool {
	st, err := os.Stat(a.files.WAL)
	return err != nil || st.Size() == 0
}

// walPages returns every page with a frame in the valid log of the WAL:
// the pages a checkpoint copies into the database file (SQLite's recovery
// sees no frame after a bad one, and copies none of them).
func (a *dbActor) walPages() map[uint32]bool {
	pages := map[uint32]bool{}
	if a.openWAL() != nil || a.walFile == nil {
		return pages
	}
	st, err := a.walFile.Stat()
	if err != nil {
		return pages
	}
	// An unreadable WAL gives the pages read before the error, as it
	// always did.
	_, _ = walfile.Scan(a.walFile, st.Size(), walfile.Position{}, func(frames []walfile.Frame) error {
		for _, f := range frames {
			pages[f.Pgno] = true
		}
		return nil
	})
	return pages
}

// dirtyPages returns the pages the local layer may have changed since the
// base: those in WAL frames after W, and those beyond the local size that
// the base has.
func (a *dbActor) dirtyPages(ctx context.Context) (map[uint32]bool, error) {
	dirty := map[uint32]bool{}
	if err := a.openWAL(); err != nil {
		return nil, err
	}
	if a.walFile != nil {
		st, err := a.walFile.Stat()
		if err != nil {
			return nil, err
		}
		// Up to the end of the valid log: SQLite's recovery sees no frame
		// after a bad one, so the local layer holds none of their pages;
		// nor any after an invalid header (walEmptyAt).
		if !a.walEmptyAt(st.Size()) {
			if _, err := walfile.Scan(a.walFile, st.Size(), a.base.base.WAL, func(frames []walfile.Frame) error {
				for _, f := range frames {
					dirty[f.Pgno] = true
				}
				return nil
			}); err != nil {
				return nil, externalModification("the WAL cannot be read: %w", err)
			}
		}
	}
	var size uint32
	if err := a.own().QueryRowContext(ctx, "PRAGMA page_count").Scan(&size); err != nil {
		return nil, err
	}
	for pg := size + 1; pg <= a.base.base.DBSize; pg++ {
		dirty[pg] = true
	}
	return dirty, nil
}

// pageFrom says where T1 takes a page's image from.
type pageFrom uint8

const (
	fromNone   pageFrom = iota // not written
	fromBase                   // the base (a page of the local layer the server did not send)
	fromServer                 // the server's download
)

func (f pageFrom) String() string {
	return [...]string{"none", "base", "server"}[f]
}

// pullWrite is one page T1 writes.
type pullWrite struct {
	Pgno uint32
	From pageFrom
}

// pullPlan is what T1 does, decided by planPull from the pages alone;
// writeBase does it.
type pullPlan struct {
	// Zero: the pages T1 overwrites, which a partial replica's writer
	// reads as zeros rather than fetch them (sqlite_dbpage reads each page
	// before it writes it).
	Zero []uint32
	// Writes: every page but 1 that T1 writes, in page order.
	Writes []pullWrite
	// Page1: where the new base's true page 1 comes from (fromNone: T1
	// does not write it, the old base's header stays). It is written with
	// a bumped schema cookie, last, when WritePage1.
	Page1      pageFrom
	WritePage1 bool
	// Truncate: the database is cut to DBSize pages, in page 1's statement
	// (whose header then claims size 0: see writeBase).
	Truncate bool
	DBSize   uint32
}

// planPull decides T1 of a pull that turns the database into the server's
// at dbSize pages: the base image of every dirty page (written after W,
// held by the revert store, or lost by the local database shrinking) the
// server did not send, the server's image of every changed page (sorted),
// page 1 last, and truncation when the local database (curSize pages) is
// longer. The server must send every page beyond the base's baseSize.
func planPull(baseSize uint32, dirty map[uint32]bool, changed []uint32, curSize, dbSize uint32) (pullPlan, error) {
	isChanged := make(map[uint32]bool, len(changed))
	for _, pg := range changed {
		isChanged[pg] = true
	}
	for pg := baseSize + 1; pg <= dbSize; pg++ {
		if !isChanged[pg] {
			return pullPlan{}, fmt.Errorf("the server's update is incomplete: page %d is new but was not sent", pg)
		}
	}
	var pages []uint32
	for pg := range dirty {
		if pg <= dbSize && !isChanged[pg] {
			pages = append(pages, pg)
		}
	}
	pages = append(pages, changed...)
	slices.Sort(pages)
	p := pullPlan{Zero: pages, Truncate: curSize > dbSize, DBSize: dbSize}
	switch {
	case isChanged[1]:
		p.Page1 = fromServer
	case dirty[1]:
		p.Page1 = fromBase
	}
	for _, pg := range pages {
		if pg > dbSize {
			continue
		}
		if pg == 1 {
			p.WritePage1 = true
			continue
		}
		from := fromBase
		if isChanged[pg] {
			from = fromServer
		}
		p.Writes = append(p.Writes, pullWrite{pg, from})
	}
	return p, nil
}

// writeBase is T1: one transaction of raw page writes that turns the
// database into the server's at the new revision, as plan says; page1 is
// the new base's true page 1 (plan.Page1's).
func (a *dbActor) writeBase(ctx context.Context, plan pullPlan, changes *pageStore, page1 []byte) error {
	var cookie uint32
	if err := a.own().QueryRowContext(ctx, "PRAGMA schema_version").Scan(&cookie); err != nil {
		return err
	}
	if a.pages != nil {
		a.pages.ZeroFill(roaring.BitmapOf(plan.Zero...))
		defer a.pages.ZeroFill(nil)
	}
	err := sqlitex.Raw(ctx, a.conn, func(c *sqlitex.Conn) error {
		if err := c.Exec("BEGIN IMMEDIATE"); err != nil {
			return err
		}
		err := func() error {
			st, _, err := c.Prepare("INSERT INTO sqlite_dbpage(pgno, data) VALUES(?, ?)")
			if err != nil {
				return err
			}
			defer st.Close()
			var buf []byte
			for _, w := range plan.Writes {
				if w.From == fromServer {
					buf, err = changes.read(buf[:0], w.Pgno)
				} else {
					buf, err = a.base.page(buf[:0], w.Pgno)
				}
				if err != nil {
					return err
				}
				if err := st.BindAll(int64(w.Pgno), buf); err != nil {
					return err
				}
				if _, err := st.Step(); err != nil {
					return fmt.Errorf("write page %d: %w", w.Pgno, err)
				}
				if err := st.Reset(); err != nil {
					return err
				}
			}
			// Page 1 and the truncation go last, in one statement: once
			// page 1 (with its header) is written, any further statement in
			// this transaction would reload the schema against the old page
			// count and fail. Truncation is applied at commit and any data
			// write after it would cancel it.
			var p1 []byte
			if plan.WritePage1 {
				// Every connection must reload the schema: give the page a
				// cookie none of them has seen.
				p1 = append([]byte(nil), page1...)
				bumpCookie(p1, cookie)
				if plan.Truncate {
					// sqlite_dbpage truncates only below the size the page-1
					// header claims when the statement ends; with the
					// server's (smaller) size there the truncation would be
					// ignored, leaving the WAL and file at the old size
					// forever. 0 means "compute it" to SQLite, and the next
					// commit that changes the size writes the real one.
					binary.BigEndian.PutUint32(p1[28:32], 0)
				}
			}
			switch {
			case p1 != nil && plan.Truncate:
				err = c.Exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(1, ?), (?, NULL)", p1, int64(plan.DBSize)+1)
			case p1 != nil:
				err = c.Exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(1, ?)", p1)
			case plan.Truncate:
				err = c.Exec("INSERT INTO sqlite_dbpage(pgno, data) VALUES(?, NULL)", int64(plan.DBSize)+1)
			}
			if err != nil {
				return fmt.Errorf("write page 1: %w", err)
			}
			return c.Exec("COMMIT")
		}()
		if err != nil && !c.Autocommit() {
			c.Exec("ROLLBACK")
		}
		return err
	})
	// This connection's page cache is stale after raw page writes, commit
	// or not: empty it (or replace the connection).
	if rerr := a.refreshWriter(ctx); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// bumpCookie sets the schema cookie (page 1, bytes 40..43) above both its
// current value in page and the local one.
func bumpCookie(page []byte, local uint32) {
	c := binary.BigEndian.Uint32(page[40:44])
	binary.BigEndian.PutUint32(page[40:44], max(c, local)+1)
}

// abandonPull forgets a pull whose T1 did not commit. The journal that
// records it must be gone for good before anything else is written: one
// that a power loss brought back would make the next Open take a later
// local commit for T1. It is removed and the directory synced (the next
// pull creates it again, with a directory sync of its own): a rare path.
func (a *dbActor) abandonPull(ctx context.Context) error {
	if a.meta.SyncDB.Pull != nil { // recorded there by an older version
		if err := a.updateMeta(ctx, func(m *messages.Meta) error { m.SyncDB.Pull = nil; return nil }); err != nil {
			return err
		}
	}
	a.cfg.FS.Remove(a.files.RevertNext)
	a.journalSynced = false
	if err := a.cfg.FS.Remove(a.files.Replay); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := a.cfg.FS.SyncDir(filepath.Dir(a.cfg.Path)); err != nil {
		return err
	}
	a.pull, a.pending = nil, false
	return nil
}

// pendingPull reads the pull an interrupted ApplyPull left to finish, nil
// if none: planPending decides (recoverplan.go), learner reads what it
// asks for, pendingOf executes.
func (a *dbActor) pendingPull(ctx context.Context) (*messages.PendingPull, error) {
	f := a.recoveryFacts()
	s, err := decide(f, planPending, a.learner(ctx))
	if err != nil {
		return nil, err
	}
	return a.pendingOf(s, f)
}

// pendingOf is the pending pull of planPending's decision s. Any action
// planPending does not decide is an error, not "nothing pending": that
// would let the next pull rewrite a journal that may hold the only copy
// of the unpushed changes.
func (a *dbActor) pendingOf(s recoveryStep, f *recoveryFacts) (*messages.PendingPull, error) {
	switch s.Action {
	case actNone:
		return nil, nil
	case actPending:
		return s.Pull, nil
	case actRefuse:
		return nil, a.refusal(s.Refusal, f)
	}
	return nil, fmt.Errorf("dbactor: pendingPull: unexpected recovery action %v", s.Action)
}

// recoveryFacts is what recovery knows without reading the files.
func (a *dbActor) recoveryFacts() *recoveryFacts {
	m := &a.meta
	f := &recoveryFacts{
		InfoPull:      m.SyncDB.Pull,
		Pulled:        m.SyncDB.Pulled,
		BaseWAL:       m.SyncDB.Base.WAL,
		Fresh:         m.SyncDB.Fresh,
		Created:       a.created,
		Writer:        a.conn != nil && !a.staleCache, // a stale cache cannot replay T2 (refreshWriter)
		Detached:      a.detached != nil,
		Checkpointing: m.SyncDB.Checkpointing,
		Stamped:       m.SyncDB.DBFile != nil,
	}
	if r := m.SyncedRevision; r != nil {
		f.SyncedFrom = r.Revision
	}
	c := m.SavedConfiguration
	f.Server = m.SyncedRevision != nil || c != nil && c.RemoteURL != nil && *c.RemoteURL != ""
	return f
}

// learner reads from the files the fact a recovery step asks for.
func (a *dbActor) learner(ctx context.Context) func(*recoveryFacts, recoveryStep) error {
	return func(f *recoveryFacts, s recoveryStep) error {
		switch s.Need {
		case needJournal:
			hdr, err := readJournalHeader(a.cfg.FS, a.files.Replay)
			f.JournalPull = hdr.Pull
			switch {
			case errors.Is(err, os.ErrNotExist):
				f.Journal = journalMissing
			case errors.Is(err, errTornJournal):
				f.Journal, f.tornErr = journalTorn, err
			case errors.Is(err, errUndecodedHeader):
				f.Journal, f.newerErr = journalUndecoded, err
			case errors.Is(err, errNewerJournal):
				f.Journal, f.newerErr = journalNewer, err
			case err != nil:
				return err
			default:
				f.Journal = journalWhole
			}
		case needBody:
			_, _, _, err := readJournal(a.cfg.FS, a.files.Replay)
			if errors.Is(err, errTornJournal) {
				f.BodyTorn, f.tornErr = true, err
			} else if err != nil {
				return err
			}
		case needProgress:
			t1, t2, err := a.pullProgress(s.Before)
			if err != nil {
				return err
			}
			f.T1, f.T2 = t1, t2
		case needLocalTables:
			ok, err := tableExists(ctx, a.own(), "_syncdb_local")
			if err != nil {
				return err
			}
			f.LocalTables = ok
		case needRecordsPull:
			done, err := a.recordsPull(ctx, s.Before)
			if err != nil {
				return err
			}
			f.RecordsPull = done
		case needBaseInWAL:
			if err := a.openWAL(); err != nil {
				return err
			}
			if _, err := walIndex(a.walFile, a.meta.SyncDB.Base); errors.Is(err, ErrExternalModification) {
				f.BaseLost, f.baseErr = true, err
			} else if err != nil {
				return err
			}
		case needWALEnd:
			end, err := a.walState(a.meta.SyncDB.Base.WAL)
			if err != nil {
				return err
			}
			f.WALEnd = end
		default:
			return fmt.Errorf("dbactor: recovery asked for an unknown fact %v", s.Need)
		}
		return nil
	}
}

// refusal is the error of a recovery that refuses to go on: what is
// wrong and what the user can do.
func (a *dbActor) refusal(r refusal, f *recoveryFacts) error {
	path := a.files.Replay
	switch r {
	case refuseNoWriter:
		return ErrNoWriter
	case refuseTornNoWriter:
		return fmt.Errorf("journal %s is not whole, and the database cannot be read to tell whether its pull began: %w", path, ErrNoWriter)
	case refuseMissingNoWriter:
		return fmt.Errorf("journal %s is missing, and the database cannot be read to tell whether a pull began: %w", path, ErrNoWriter)
	case refuseTorn:
		return corruptJournal(path, f.tornErr)
	case refuseNewer:
		return fmt.Errorf("%w: %w: the replica was opened by a newer release of syncdb with a pull in progress, which this release cannot finish. Nothing was changed. "+
			"Open the replica with that release (or a later one) to finish the pull; this release opens it again afterwards", ErrNewerJournal, f.newerErr)
	case refuseMissingDetached:
		return fmt.Errorf("%w: %s is missing, and the database has no local tables (a pull's T1 replaced its content, or its WAL "+
			"was lost: %w), so the local changes not yet pushed are in neither and cannot be carried over. Nothing was changed. Put back "+
			"the journal, or the replica's -wal, from the backup they came from and open the replica again; or, to give those changes up, "+
			"move all of the replica's files aside and open it again to download it from the server", ErrCorruptJournal, path, a.detached)
	case refuseMissingBaseLost:
		return fmt.Errorf("%w (and the pull journal %s is missing)", f.baseErr, path)
	case refuseMissingNoServer:
		// No server on record: the advice to download it makes no sense.
		return fmt.Errorf("%w: %s is missing and the database has no local tables, but no server is on record: most likely its WAL "+
			"lost the frames that created them (a backup restored without its -wal, or an earlier release's first open killed or "+
			"followed by a power loss), and what was written since is gone with them. Nothing was changed. Restore all of the "+
			"replica's files, its -wal included, from a backup and open it again, or move them aside to start a new database "+
			"(this one never synced); if it did pull from a server, put %s back instead",
			ErrCorruptJournal, path, path)
	case refuseMissing:
		return fmt.Errorf("%w: %s is missing (deleted, or a backup restored without it), and the database shows that an interrupted pull "+
			"had already replaced its content with the server's: that file held the only copy of the local changes not yet pushed. "+
			"Nothing was changed. Put %s back from a backup of the replica's files and open it again; or, to give those changes up, "+
			"move all of the replica's files aside and open it again to download it from the server",
			ErrCorruptJournal, path, path)
	}
	return fmt.Errorf("dbactor: unknown recovery refusal %d", r)
}

// corruptJournal is the error of a journal that is not whole after its
// pull's T1: what is wrong and what the user can do.
func corruptJournal(path string, torn error) error {
	return fmt.Errorf("%w (%w): an interrupted pull had already replaced the database's content with the server's, "+
		"and this file held the only copy of the local changes not yet pushed. Nothing was changed. "+
		"Put %s back from a backup of the replica's files and open it again; or, to give those changes up, "+
		"move all of the replica's files aside and open it again to download it from the server",
		ErrCorruptJournal, torn, path)
}

// pullProgress reads from the WAL how far the pull that began at before
// got: t1 is the position after its T1 (nil: not committed), t2 whether
// T2 committed too.
func (a *dbActor) pullProgress(before walfile.Position) (t1 *walfile.Position, t2 bool, err error) {
	if err := a.openWAL(); err != nil || a.walFile == nil {
		return nil, false, err
	}
	st, err := a.walFile.Stat()
	if err != nil {
		return nil, false, err
	}
	sc, err := walfile.NewScanner(a.walFile, st.Size(), before)
	if err != nil {
		return nil, false, externalModification("the WAL does not match the interrupted pull: %w", err)
	}
	// T1 is always appended to the WAL generation of Before: a WAL of
	// another generation (a power loss brought back the frames of a
	// checkpointed WAL whose truncation was not yet durable) does not
	// hold it.
	if sc.Restarted() {
		return nil, false, nil
	}
	// T2 is the transaction right after T1 (nothing else writes in
	// between, and it always writes): the WAL, which only this replica
	// writes, says whether it committed. Not a row of the database: T1
	// copied the server's pages, whose tables a remote writer controls (a
	// planted _syncdb_local with the pull's applied_revision skipped T2
	// and lost the local changes). Both are read up to the end of the
	// valid log, as SQLite's recovery reads it: a transaction at or after
	// a bad frame did not commit (T1's: the pull is abandoned, T2's: it
	// runs again).
	var pos walfile.Position
	n := 0
	if err := sc.Each(func([]walfile.Frame) error {
		if n++; n == 1 {
			pos = sc.Position()
			return nil
		}
		return errScanDone
	}); err != nil && err != errScanDone {
		return nil, false, externalModification("the WAL cannot be read: %w", err)
	}
	if n == 0 {
		return nil, false, nil
	}
	return &pos, n > 1, nil
}

// errScanDone stops a walfile scan that has read what it needed.
var errScanDone = errors.New("scan done")

// recoverPull finishes the pending pull (a.pull) as planRecover decides
// (recoverplan.go): abandons it if T1 did not commit, else runs T2 if
// needed and makes the new base current.
func (a *dbActor) recoverPull(ctx context.Context) error {
	p, f := a.pull, a.recoveryFacts()
	s, err := decide(f, func(f *recoveryFacts) recoveryStep { return planRecover(f, p) }, a.learner(ctx))
	if err != nil {
		return err
	}
	return a.execRecover(ctx, s, f)
}

// execRecover does what planRecover decided (s). Any action planRecover
// does not decide is an error before anything is written: taken for a
// finish, it would record s's zero Record as the new base.
func (a *dbActor) execRecover(ctx context.Context, s recoveryStep, f *recoveryFacts) error {
	switch s.Action {
	case actNone:
		a.pending = false
		return nil
	case actRefuse:
		return a.refusal(s.Refusal, f)
	case actAbandon:
		return a.abandonPull(ctx)
	case actFinish:
		return a.finishPull(ctx, s)
	}
	return fmt.Errorf("dbactor: recoverPull: unexpected recovery action %v", s.Action)
}

// finishPull records the new base of the pull s finishes (a.pull), after
// T2 if s.Replay.
func (a *dbActor) finishPull(ctx context.Context, s recoveryStep) error {
	p := a.pull
	rec := s.Record
	rec.PullTime = a.now().Unix()
	// Nothing reads the old -revert once T1 committed. -revert.next is
	// renamed only if still there: the older version (at its
	// pull.renamed) or an interrupted recovery may have done it.
	if s.TakeRevertNext {
		if err := a.takeRevertNext(); err != nil {
			return err
		}
	}
	if s.Replay {
		if err := a.replay(ctx, p.Revision, s.From, &rec); err != nil {
			return fmt.Errorf("replay local changes: %w", err)
		}
		failpoint.Hit("pull.t2", a.cfg.Path)
	}
	// Step 4: -info learns the new base (deferred after T2: see
	// planRecover).
	if err := a.updateMetaMaybeDeferred(ctx, rec.apply, s.Deferred); err != nil {
		return err
	}
	a.pull, a.pending = nil, false
	// The journal stays: Pulled names its pull now, and the next pull
	// rewrites it in place (no new file, no directory sync).
	failpoint.Hit("pull.done", a.cfg.Path)
	a.cap.nextID = 0
	a.noteWAL()
	return a.loadBase()
}

// takeRevertNext renames an older version's -revert.next over -revert,
// durably, if it is still there.
func (a *dbActor) takeRevertNext() error {
	next := a.files.RevertNext
	if _, err := a.cfg.FS.Stat(next); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if a.base != nil && a.base.revert != nil {
		a.base.revert.close()
	}
	if err := a.cfg.FS.Rename(next, a.files.Revert); err != nil {
		return err
	}
	return a.cfg.FS.SyncDir(filepath.Dir(a.cfg.Path))
}

// syncedBase is what a pull sets in -info, as its T2 records it in
// _syncdb_local ('synced_base'). Between T1 and T2 that table is the
// server's (T1 writes the server's pages; T2 drops what they brought), so
// the record is the last finished pull's only while no pull is pending.
type syncedBase struct {
	Revision string           `json:"revision"`
	Base     messages.Base    `json:"base"`
	Pulled   walfile.Position `json:"pulled"` // the pull's Before
	PullTime int64            `json:"pull_time"`
}

func (r *syncedBase) apply(m *messages.Meta) error {
	m.SyncedRevision = &messages.Revision{Type: "v1", Revision: r.Revision}
	if l := m.SyncDB.LocalWAL; l != nil && copiedUpTo(m.SyncDB.Base, *l) {
		// A record the copied base covers is satisfied (its commits are
		// in the database file), and only that base says so: the new
		// one, of another generation maybe, would leave it naming a WAL
		// the open then calls lost (reconcileBase after a kill took the
		// pull's -info update, with a record a49b44d's build left).
		m.SyncDB.LocalWAL = nil
	}
	m.SyncDB.Base = r.Base
	m.SyncDB.Pull = nil
	before := r.Pulled
	m.SyncDB.Pulled = &before // the journal is left over from now on
	t := r.PullTime
	m.LastPullUnixTime = &t
	m.LastPushedPullGenHint, m.LastPushedChangeIDHint = 0, 0
	return nil
}

// reconcileBase brings -info up to the last finished pull when a crash
// took that pull's deferred -info update with it: the database's record
// (T2's) names a pull that -info's Pulled does not. It runs at open, before
// anything reads the base, and after the pending pull is finished or
// abandoned (recoverPull): after a crash between T1 and T2 the record is
// the server's, which a remote writer could forge (a malformed one failed
// every open, a well-formed one went into -info).
func (a *dbActor) reconcileBase(ctx context.Context) error {
	js, err := a.syncedBaseRecord(ctx)
	if err != nil {
		return err
	}
	m, err := Reconciled(&a.meta, js)
	if err != nil || m == nil {
		return err
	}
	return a.updateMeta(ctx, func(cur *messages.Meta) error { *cur = *m; return nil })
}

// syncedBaseRecord reads the database's record of the last finished pull
// (_syncdb_local 'synced_base'), "" if none.
func (a *dbActor) syncedBaseRecord(ctx context.Context) (string, error) {
	if ok, err := tableExists(ctx, a.own(), "_syncdb_local"); err != nil || !ok {
		return "", err
	}
	var js string
	err := a.own().QueryRowContext(ctx, "SELECT value FROM _syncdb_local WHERE key = 'synced_base'").Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return js, err
}

// recordsPull reports whether the database records the pull that began at
// before as finished (its T2 wrote that record). A server's pages cannot
// name the pull: before is a position in this replica's WAL, salts and
// checksums included.
func (a *dbActor) recordsPull(ctx context.Context, before walfile.Position) (bool, error) {
	js, err := a.syncedBaseRecord(ctx)
	if err != nil || js == "" {
		return false, err
	}
	var rec syncedBase
	if json.Unmarshal([]byte(js), &rec) != nil {
		return false, nil // not T2's
	}
	return rec.Pulled == before, nil
}

// Reconciled is the metadata an open takes from -info's meta and the
// database's record of the last finished pull (_syncdb_local
// 'synced_base', record; "" if none): meta with the record's pull applied
// if meta's Pulled does not name that pull, or nil if meta is current.
func Reconciled(meta *messages.Meta, record string) (*messages.Meta, error) {
	if record == "" {
		return nil, nil
	}
	var rec syncedBase
	if err := json.Unmarshal([]byte(record), &rec); err != nil {
		return nil, fmt.Errorf("the synced base recorded in the database: %w", err)
	}
	if p := meta.SyncDB.Pulled; p != nil && *p == rec.Pulled {
		return nil, nil
	}
	m := *meta
	rec.apply(&m)
	return &m, nil
}

// tableExists reports whether the main schema has table (or view) name.
// SQLite has no error code of its own for a missing table, so callers ask
// first rather than match "no such table" in an error. It reads
// sqlite_schema, which lists what pragma_table_list lists for main (but
// sqlite_schema itself): the pragma, whose name column is no argument,
// describes every table (type, column count, strictness) before the filter,
// and was most of the cost of a status request, made twice per push and
// twice per pull (bench/RESULTS.md §6).
func tableExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, name string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, "SELECT count(*) FROM main.sqlite_schema WHERE type IN ('table', 'view') AND name = ?", name).Scan(&n)
	return n > 0, err
}

// replay is T2: re-apply the journaled local changes above the replay
// floor on the new base, capturing them again in a new pull generation,
// with the conflict rules (see conflicts.go); the conflicts recorded so far
// come back from the journal, new ones are added, all in this transaction.
//
// A pull's T2 also records the new base (rec; nil for a rebuild's import).
// planReplay (replayplan.go) decides which changes replay and what T2
// records; this runs it, and the conflict rules as each change applies.
func (a *dbActor) replay(ctx context.Context, revision, base string, rec *syncedBase) error {
	hdr, entries, carried, err := readJournal(a.cfg.FS, a.files.Replay)
	if err != nil {
		return err
	}
	marks, err := a.serverMarks(ctx)
	if err != nil {
		return err
	}
	plan, err := planReplay(hdr, entries, marks, a.ignored, revision, rec)
	if err != nil {
		a.cap.nextID = 0 // as a failed T2 leaves it
		return err
	}
	if _, err := a.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err = func() error {
		if rec != nil {
			if err := a.dropServerLocal(ctx); err != nil {
				return err
			}
		}
		if _, err := a.conn.ExecContext(ctx, localSchema); err != nil {
			return err
		}
		for _, rec := range carried {
			if err := a.writeConflict(ctx, rec); err != nil {
				return err
			}
		}
		a.cap.nextID = 1
		// Which conflicts a change meets is decided as it applies
		// (replayer.apply: precondition on the row as the changes before
		// it left it), so that part is no plan made ahead.
		rp := a.newReplayer(revision, base)
		for _, c := range plan.Changes {
			rp.reserve(c)
		}
		for _, c := range plan.Changes {
			if err := rp.apply(ctx, c); err != nil {
				return err
			}
		}
		if err := a.flush(ctx); err != nil {
			return err
		}
		if mutation.dropConflicts {
			rp.records = nil
		}
		for _, rec := range rp.records {
			if err := a.writeConflict(ctx, rec); err != nil {
				return err
			}
		}
		for _, r := range plan.Local {
			if _, err := a.own().ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES(?, ?)", r.Key, r.Value); err != nil {
				return err
			}
		}
		_, err := a.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT")
		return err
	}()
	if err != nil {
		a.rollback()
		a.endTxn(false)
		return err
	}
	a.endTxn(true)
	return nil
}

// dropServerLocal drops every object named like syncdb's local tables at
// the start of a pull's T2. T1 made the database the server's, so any
// such object is the server's (planted by a remote writer or let in by an
// older server), never this replica's: kept, its rows would pass for this
// replica's changes, conflicts or records (a 'cloned' flag, a synced base).
func (a *dbActor) dropServerLocal(ctx context.Context) error {
	rows, err := a.conn.QueryContext(ctx, `SELECT type, name FROM sqlite_schema
		WHERE type IN ('table', 'view', 'trigger') AND lower(name) LIKE '\_syncdb\_%' ESCAPE '\'
		ORDER BY type = 'table'`)
	if err != nil {
		return err
	}
	var drops []string
	for rows.Next() {
		var kind, name string
		if err := rows.Scan(&kind, &name); err != nil {
			rows.Close()
			return err
		}
		drops = append(drops, fmt.Sprintf("DROP %s IF EXISTS main.\"%s\"", strings.ToUpper(kind), strings.ReplaceAll(name, `"`, `""`)))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, q := range drops {
		if _, err := a.conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("drop the server's %s: %w", q, err)
		}
	}
	return nil
}

// replayOne applies one change inside a savepoint, so that a change that
// does not apply leaves nothing behind.
func (a *dbActor) replayOne(ctx context.Context, c change.Change) error {
	stmts, err := change.Statements(c)
	if err != nil {
		return err
	}
	if len(stmts) == 0 {
		return nil
	}
	if _, err := a.conn.ExecContext(ctx, "SAVEPOINT replay"); err != nil {
		return captureError{err}
	}
	a.cap.assigned = func(string, int) bool { return c.KeyAssigned }
	defer func() { a.cap.assigned = nil }()
	for _, st := range stmts {
		a.denied = ""
		_, err := a.execOne(ctx, st.SQL, st.Args, false)
		if err != nil && (st.Tolerated == "" || !strings.Contains(err.Error(), st.Tolerated)) {
			if isCaptureError(err) {
				return err
			}
			if a.denied != "" { // a trigger of the server's schema writes it
				err = fmt.Errorf("a trigger changes %s, syncdb's own table: %w", a.denied, err)
			}
			if _, rerr := a.conn.ExecContext(ctx, "ROLLBACK TO replay; RELEASE replay"); rerr != nil {
				return captureError{rerr}
			}
			a.cap.nextID = 0
			return err
		}
	}
	if _, err := a.conn.ExecContext(ctx, "RELEASE replay"); err != nil {
		return captureError{err}
	}
	return nil
}

// serverMarks reads this client's rows of turso_sync_last_change_id in
// the pulled pages (nil if the table or the mark is not there).
func (a *dbActor) serverMarks(ctx context.Context) (*serverMarks, error) {
	if ok, err := tableExists(ctx, a.own(), "turso_sync_last_change_id"); err != nil || !ok {
		return nil, err
	}
	m, chain, err := readMarks(ctx, a.conn, a.meta.ClientUniqueID)
	if err != nil || m == nil {
		return nil, err
	}
	return &serverMarks{Mark: *m, Chain: chain}, nil
}

// mark is one row of turso_sync_last_change_id.
type mark struct{ Gen, ID int64 }

// readMarks reads a client's mark and its push chain value (nil if absent).
func readMarks(ctx context.Context, conn interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string) (m, chain *mark, err error) {
	rows, err := conn.QueryContext(ctx, "SELECT client_id, pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id IN (?, ?)", id, id+ChainSuffix)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var who string
		var v mark
		if err := rows.Scan(&who, &v.Gen, &v.ID); err != nil {
			return nil, nil, err
		}
		if who == id {
			m = &v
		} else {
			chain = &v
		}
	}
	return m, chain, rows.Err()
}

// clonedWhy decides whether the server's mark (and chain value, if any)
// for this client id can be this replica's own, given its generation,
// change log and what it has sent (sentUpTo); if not, it says why. It is
// pure, for the push and the pull.
func clonedWhy(gen int64, stored chainState, log []journalEntry, sent int64, server mark, chain *mark) string {
	switch {
	case server.Gen > gen:
		return fmt.Sprintf("the server has its pull generation %d, this replica only %d", server.Gen, gen)
	case server.Gen < gen || server.ID == 0:
		return ""
	case server.ID < stored.ID:
		return "" // below what this replica had confirmed: the server lost pushes, not a copy
	}
	st, ok := fold(stored, log, server.ID)
	switch {
	case !ok:
		return fmt.Sprintf("the server has its changes up to %d, this replica made %d", server.ID, max(st.ID, lastID(log)))
	case chain != nil && chain.Gen == gen && chain.ID != ChainValue(st.Hash):
		return fmt.Sprintf("the changes the server has under its id up to change %d are not this replica's", server.ID)
	case (chain == nil || chain.Gen != gen) && server.ID > sent:
		// Nothing shows that the changes after sent are on the server, and
		// this replica never gave them: taking the mark would drop them.
		return fmt.Sprintf("the server has its changes up to %d with no push chain to show they are this replica's, which sent only up to %d", server.ID, sent)
	}
	return ""
}

func lastID(log []journalEntry) int64 {
	if len(log) == 0 {
		return 0
	}
	return log[len(log)-1].ID
}

// localPullGen is the local pull generation (0 before the first pull
// that rebased).
func (a *dbActor) localPullGen(ctx context.Context) (int64, error) {
	var gen int64
	err := a.own().QueryRowContext(ctx, "SELECT value FROM _syncdb_local WHERE key = 'pull_gen'").Scan(&gen)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return gen, nil
}

func (a *dbActor) readChangeLog(ctx context.Context) ([]journalEntry, error) {
	return a.changeLogRange(ctx, math.MinInt64, math.MaxInt64)
}

// pendingChanges reads the change log above after (with unpushed, above
// the last recorded push), for a push: whole local transactions, stopping
// at the first transaction boundary once it has limit changes (0 = no
// limit).
func (a *dbActor) pendingChanges(ctx context.Context, after int64, limit int, peek, unpushed bool) (messages.Pending, error) {
	var p messages.Pending
	var err error
	if p.PullGen, err = a.localPullGen(ctx); err != nil {
		return p, err
	}
	if unpushed {
		pushed, err := lastPushed(ctx, a.own(), &a.meta)
		if err != nil {
			return p, err
		}
		after, p.Recorded = pushed.After, pushed.Recorded
	}
	rows, err := a.own().QueryContext(ctx, "SELECT change_id, txn, record FROM _syncdb_changes WHERE change_id > ? ORDER BY change_id", after)
	if err != nil {
		return p, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, txn int64
		var rec []byte
		if err := rows.Scan(&id, &txn, &rec); err != nil {
			return p, err
		}
		if n := len(p.Changes); (limit > 0 && n >= limit && (p.Changes[n-1].Txn != txn || mutation.splitTxns)) || (peek && n > 0) {
			p.More = true
			break
		}
		c, err := change.Decode(rec)
		if err != nil {
			return p, fmt.Errorf("change %d: %w", id, err)
		}
		c.ID, c.Txn = id, txn
		p.Changes = append(p.Changes, c)
	}
	return p, rows.Err()
}
