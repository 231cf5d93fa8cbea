package dbactor

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// ErrExternalModification reports that the database's files were changed
// by something other than syncdb (judged by their content: reading them,
// copying them or touching them is not a change). The synced base can no
// longer be trusted, so syncdb refuses to write, pull or push (a pull would
// corrupt the database); local reads go on. Config.Recover (syncdb
// recover PATH) rebuilds the replica from the server, keeping the changes
// made through syncdb that the server does not have.
//
// Detection has a window (docs/ARCHITECTURE.md §5): a pull's reload of
// the base checks only the WAL frames after the previous base's commit
// frame (walIndexAfter), and writes check only the WAL's end. A change to
// an earlier frame of the same generation that leaves that commit frame's
// header alone (bit rot, a tool editing a page in the WAL) is reported
// only by the next scan from the WAL's start: the next checkpoint
// (checkBaseFrames, before it copies them), open or recovery; until then
// pulls may copy base images from those frames.
var ErrExternalModification = errors.New("the database files were modified outside syncdb")

func externalModification(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrExternalModification}, args...)...)
}

// detach puts the actor in the read-only state of a replica modified
// outside syncdb: the error every write, pull and push gets says what
// changed and what to run.
func (a *dbActor) detach(ctx context.Context, err error) {
	n := "its"
	var count int64
	if a.conn != nil && a.conn.QueryRowContext(ctx, "SELECT count(*) FROM _syncdb_changes").Scan(&count) == nil {
		n = fmt.Sprintf("its %d", count)
	}
	if errors.Is(err, errWALLost) {
		// A rebuild would keep only what the database file holds.
		giveUp := "move all of the replica's files aside and open it again to download it from the server"
		if c := a.meta.SavedConfiguration; a.meta.SyncedRevision == nil && (c == nil || c.RemoteURL == nil || *c.RemoteURL == "") {
			giveUp = "move its files aside and start a new database (this one never synced)"
		}
		a.detached = fmt.Errorf("%w. Local reads still work, without those commits; writes, pulls and pushes are refused. "+
			"Put the -wal back (from the backup or the copy the database file came from) and open the replica again; or, to give "+
			"those commits up, %s", err, giveUp)
	} else {
		a.detached = fmt.Errorf("%w. Local reads still work; writes, pulls and pushes are refused. "+
			"Run: syncdb recover %s (or open it with Config.Recover): it rebuilds the replica from the server, keeping %s unpushed changes",
			err, a.cfg.Path, n)
	}
	a.cfg.Logger.Error("the replica was modified outside syncdb", "err", err)
}

// baseReader reads pages of the synced base: the database file, overlaid by
// WAL frames 1..W, overlaid by the revert store.
type baseReader struct {
	base   messages.Base
	dbFile *os.File
	wal    *os.File // nil when there is no WAL yet
	index  *walfile.Index
	revert *pageStore
	pages  messages.LazyPages // a partial replica's; nil for a full one
}

// writerTag marks the writer connection for the page actor (it may read
// the pages a pull is about to overwrite as zeros). Must equal
// pageactor.WriterTag.
const writerTag = "writer"

// walIndex scans the WAL from the start up to (and checking) the base's
// position, returning the index of frames 1..b.WAL.Frame: none if a
// checkpoint copied them (b.Copied).
func walIndex(wal *os.File, b messages.Base) (*walfile.Index, error) {
	return walIndexAfter(wal, b, nil)
}

// walIndexAfter is walIndex, extending the index of prev (the base reader
// being replaced; nil for none) instead of scanning from the start when
// prev's base is an earlier position of the same WAL generation in the
// same file: every pull's new base is such a position, and the scan from
// the start grew with the WAL (up to AutoCheckpointFrames frames read and
// checksummed per pull; a tenth of the Go load clients' CPU,
// bench/RESULTS.md §6). The frames up to prev's position were checked
// when prev was loaded, and SQLite appends after a commit, never before
// it, in a generation; the scan from there checks that prev's commit
// frame still carries its recorded checksum (NewScanner) and every frame
// after it, as the scan from the start would. prev's index is taken over
// (prev must not be used again).
func walIndexAfter(wal *os.File, b messages.Base, prev *baseReader) (*walfile.Index, error) {
	idx := walfile.BuildIndex(nil)
	upTo := b.WAL
	if upTo.Frame == 0 || b.Copied {
		return idx, nil
	}
	if wal == nil {
		return nil, externalModification("the WAL holding the synced base is missing")
	}
	st, err := wal.Stat()
	if err != nil {
		return nil, err
	}
	var from walfile.Position
	if p := prev; p != nil && p.index != nil && p.wal == wal && !p.base.Copied {
		if w := p.base.WAL; w.Frame > 0 && w.Frame <= upTo.Frame && w.Salt1 == upTo.Salt1 && w.Salt2 == upTo.Salt2 && p.index.Last() == w.Frame {
			idx, from = p.index, w
		}
	}
	sc, err := walfile.NewScanner(wal, st.Size(), from)
	if err != nil {
		return nil, externalModification("the WAL cannot be read: %w", err)
	}
	if h := sc.Header(); h.Salt1 != upTo.Salt1 || h.Salt2 != upTo.Salt2 {
		return nil, externalModification("the WAL was restarted by another program")
	}
	if from == upTo {
		// prev's own position (a reload: an open's recovery, a checkpoint
		// that copied nothing): NewScanner checked its commit frame.
		return idx, nil
	}
	// The valid log must reach upTo: a bad frame before it (SQLite's
	// recovery sees nothing after one) lost frames of the base.
	var addErr error
	if err := sc.Each(func(frames []walfile.Frame) error {
		if addErr = idx.Add(frames...); addErr != nil {
			return addErr
		}
		if idx.Last() >= upTo.Frame {
			return errScanDone
		}
		return nil
	}); addErr != nil {
		return nil, addErr
	} else if err != nil && err != errScanDone {
		return nil, externalModification("the WAL cannot be read: %w", err)
	}
	if idx.Last() < upTo.Frame {
		return nil, externalModification("the WAL lost frames of the synced base (has %d, base needs %d)", idx.Last(), upTo.Frame)
	}
	if p := sc.Position(); idx.Last() != upTo.Frame || p.Cksum1 != upTo.Cksum1 || p.Cksum2 != upTo.Cksum2 {
		return nil, externalModification("the WAL frames of the synced base were rewritten")
	}
	return idx, nil
}

// page appends the base image of pgno to dst.
func (b *baseReader) page(dst []byte, pgno uint32) ([]byte, error) {
	if pgno == 0 || pgno > b.base.DBSize {
		return dst, fmt.Errorf("page %d is not in the synced base (%d pages)", pgno, b.base.DBSize)
	}
	if b.revert.has(pgno) {
		if b.revert.remote(pgno) {
			img, err := b.pages.Image(context.Background(), pgno)
			return append(dst, img...), err
		}
		return b.revert.read(dst, pgno)
	}
	if f, ok := b.index.Lookup(pgno, b.base.WAL.Frame); ok {
		start := len(dst)
		dst = append(dst, make([]byte, PageSize)...)
		if _, err := walfile.ReadPage(b.wal, f, PageSize, dst[start:]); err != nil {
			return dst, err
		}
		return dst, b.patchPage1(pgno, dst[start:])
	}
	// A page missing from a partial replica's file has its bootstrap
	// image, unchanged since (it would be present otherwise).
	if b.pages != nil && !b.pages.Present(pgno) {
		if err := b.pages.Ensure(context.Background(), pgno); err != nil {
			return dst, err
		}
	}
	start := len(dst)
	dst = append(dst, make([]byte, PageSize)...)
	n, err := b.dbFile.ReadAt(dst[start:], int64(pgno-1)*PageSize)
	if n == PageSize {
		return dst, b.patchPage1(pgno, dst[start:])
	}
	if err == io.EOF || err == nil {
		return dst, fmt.Errorf("page %d of the synced base is beyond the end of the database file", pgno)
	}
	return dst, err
}

// patchPage1 turns the local image of page 1 into the base's when the base
// records its true header (messages.Base.Page1): a pull's T1 wrote the page
// with a bumped schema cookie, and SQLite changed other header fields at
// that commit; the rest of the page is the base's. The CRC of the whole
// true page checks the result.
func (b *baseReader) patchPage1(pgno uint32, page []byte) error {
	h := b.base.Page1
	if pgno != 1 || h == nil {
		return nil
	}
	if len(h.Header) != page1HeaderSize {
		return fmt.Errorf("the synced base's page-1 header has %d bytes", len(h.Header))
	}
	copy(page, h.Header)
	if crc32.Checksum(page, crcTable) != h.CRC {
		return errors.New("page 1 of the synced base does not match its recorded checksum")
	}
	return nil
}

// page1HeaderSize is the size of SQLite's database header, at the start of
// page 1.
const page1HeaderSize = 100

// page1Header records the true header of page 1 of a base.
func page1Header(page []byte) *messages.Page1Header {
	return &messages.Page1Header{Header: append([]byte(nil), page[:page1HeaderSize]...), CRC: crc32.Checksum(page, crcTable)}
}
