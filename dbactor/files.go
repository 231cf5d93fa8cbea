package dbactor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/messages"
)

// PageSize is the only page size the sync protocol allows.
const PageSize = 4096

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// pageRecord is the on-disk unit of the revert store and the changes file:
// page number (big-endian), the page, and a CRC-32C of both.
const pageRecordSize = 4 + PageSize + 4

func encodePageRecord(dst []byte, pgno uint32, page []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, pgno)
	dst = append(dst, page...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

func decodePageRecord(rec []byte) (uint32, []byte, error) {
	pgno := binary.BigEndian.Uint32(rec)
	page := rec[4 : 4+PageSize]
	if crc32.Checksum(rec[:4+PageSize], crcTable) != binary.BigEndian.Uint32(rec[4+PageSize:]) || pgno == 0 {
		return 0, nil, errors.New("page record checksum mismatch")
	}
	return pgno, page, nil
}

// pageStore is an append-only file of page records with an index: the
// revert store (first record of a page wins: it is the oldest image, the
// base's) and the changes file (last record wins: the newest image).
type pageStore struct {
	fs    fsx.FS
	path  string
	f     fsx.File
	index map[uint32]int64 // pgno -> offset of its record
	size  int64            // valid length
	first bool             // keep the first record of a page (revert) rather than the last
	buf   []byte
	// remotes are the pages recorded with remoteFlag
	remotes map[uint32]bool
}

// openPageStore opens path and indexes its first validLen bytes (all of it
// if validLen < 0); anything after is a torn or abandoned tail and is cut
// off. A missing file is an empty store, created on first append.
func openPageStore(fs fsx.FS, path string, validLen int64, first bool) (*pageStore, error) {
	s := &pageStore{fs: fs, path: path, index: map[uint32]int64{}, first: first}
	f, err := fs.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if validLen > 0 {
			return nil, fmt.Errorf("%s is missing but should hold %d bytes", path, validLen)
		}
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if validLen < 0 {
		validLen = st.Size() - st.Size()%pageRecordSize
	}
	if st.Size() < validLen || validLen%pageRecordSize != 0 {
		f.Close()
		return nil, fmt.Errorf("%s has %d bytes, want at least %d in whole records", path, st.Size(), validLen)
	}
	// A read buffer of up to 1 MiB, no larger than the file: a pull's
	// download is often a few pages, and a buffer per open was most of the
	// Go load clients' allocated bytes (bench/RESULTS.md §6).
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, validLen), int(min(validLen, 1<<20)))
	rec := make([]byte, pageRecordSize)
	for off := int64(0); off < validLen; off += pageRecordSize {
		if _, err := io.ReadFull(r, rec); err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		pgno, _, err := decodePageRecord(rec)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s at offset %d: %w", path, off, err)
		}
		remote := pgno&remoteFlag != 0
		pgno &^= remoteFlag
		if _, seen := s.index[pgno]; !seen || !first {
			s.index[pgno] = off
			if remote {
				if s.remotes == nil {
					s.remotes = map[uint32]bool{}
				}
				s.remotes[pgno] = true
			}
		}
	}
	s.size = validLen
	if st.Size() > validLen {
		if err := f.Truncate(validLen); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *pageStore) has(pgno uint32) bool { _, ok := s.index[pgno]; return ok }

// remoteFlag marks a record whose page is "the server's image at the
// bootstrap revision", kept without its data (partial replicas).
const remoteFlag = 1 << 31

func (s *pageStore) remote(pgno uint32) bool { return s.remotes[pgno] }

// appendRemote records pgno as a remote image (revert store only).
func (s *pageStore) appendRemote(pgno uint32) error {
	if s.has(pgno) {
		return nil
	}
	if err := s.append(pgno|remoteFlag, make([]byte, PageSize)); err != nil {
		return err
	}
	off := s.index[pgno|remoteFlag]
	delete(s.index, pgno|remoteFlag)
	s.index[pgno] = off
	if s.remotes == nil {
		s.remotes = map[uint32]bool{}
	}
	s.remotes[pgno] = true
	return nil
}
func (s *pageStore) len() int { return len(s.index) }

// read appends the page image of pgno to dst.
func (s *pageStore) read(dst []byte, pgno uint32) ([]byte, error) {
	off, ok := s.index[pgno]
	if !ok {
		return dst, fmt.Errorf("page %d not in %s", pgno, s.path)
	}
	if cap(s.buf) < pageRecordSize {
		s.buf = make([]byte, pageRecordSize)
	}
	rec := s.buf[:pageRecordSize]
	if _, err := s.f.ReadAt(rec, off); err != nil {
		return dst, fmt.Errorf("read %s: %w", s.path, err)
	}
	_, page, err := decodePageRecord(rec)
	if err != nil {
		return dst, fmt.Errorf("%s at offset %d: %w", s.path, off, err)
	}
	return append(dst, page...), nil
}

// append adds a record; with first, a page already present is skipped.
// Call sync to make appends durable.
func (s *pageStore) append(pgno uint32, page []byte) error {
	if len(page) != PageSize {
		return fmt.Errorf("page %d has %d bytes", pgno, len(page))
	}
	if _, ok := s.index[pgno]; ok && s.first {
		return nil
	}
	if s.f == nil {
		f, err := s.fs.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		s.f = f
	}
	s.buf = encodePageRecord(s.buf[:0], pgno, page)
	if _, err := s.f.WriteAt(s.buf, s.size); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	s.index[pgno] = s.size
	s.size += pageRecordSize
	return nil
}

func (s *pageStore) sync() error {
	if s.f == nil {
		return nil
	}
	return s.f.Sync()
}

func (s *pageStore) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// sortedPages returns the store's page numbers in ascending order.
func (s *pageStore) sortedPages() []uint32 {
	out := make([]uint32, 0, len(s.index))
	for pg := range s.index {
		out = append(out, pg)
	}
	slices.Sort(out)
	return out
}

// The replay journal holds the local change log while a pull peels it off
// the database: a header, then one entry per change, each entry framed as
// [u32 length][payload][u32 CRC-32C of payload], all big-endian. It is
// written and fsynced before the pull's first transaction and read back to
// replay the changes on the new base.
//
// It is rewritten in place by each pull (writeJournal), so a crash or a
// power loss during a rewrite can leave a mix of the old and new bytes.
// The header (format 2) therefore carries the size and CRC-32C of
// everything after it, and its own frame has a CRC: a journal that fails
// them is torn (errTornJournal), which only a rewrite that never finished
// leaves, so no pull's T1 ran on it. Journals of earlier releases (no
// format: they were replaced atomically) are read as before. The header
// stays in the old framing so that an earlier release still reads the
// journal this one leaves in place.
type journalHeader struct {
	// Format is journalFormat (0 in earlier releases' journals); Size and
	// CRC are those of the bytes after the header frame.
	Format    int    `json:"format,omitempty"`
	Size      int64  `json:"size,omitempty"`
	CRC       uint32 `json:"crc,omitempty"`
	PullGen   int64  `json:"pull_gen"`
	Revision  string `json:"revision"`
	Count     int    `json:"count"`
	Conflicts int    `json:"conflicts,omitempty"` // recorded conflicts (JSON entries) after the changes
	// Chain is the push chain value of the trimmed changes; Cloned why
	// the replica was found to be a copy, if it was. Both live in
	// _syncdb_local, which the pull peels off.
	Chain  chainState `json:"chain,omitzero"`
	Cloned string     `json:"cloned,omitempty"`
	// Pushed is the last change of PullGen the server is known to have
	// (lastPushed); PushTime the last push's time, which T2 keeps.
	Pushed   int64 `json:"pushed,omitempty"`
	PushTime int64 `json:"push_time,omitempty"`
	// Sent is the last change of PullGen the replica is known to have
	// sent (sentUpTo); 0 in earlier releases' journals.
	Sent int64 `json:"sent,omitempty"`
	// Pull is the pull this journal was saved for (nil: a rebuild's). A
	// journal that holds one is the durable record of a pending pull: it
	// is written and fsynced before the pull's first transaction, and
	// unless -info's Pulled names it (a finished pull's journal stays in
	// place until the next pull rewrites it), Open finishes or undoes that
	// pull (recoverPull).
	Pull *messages.PendingPull `json:"pull,omitempty"`
}

// journalFormat is the format of the journals this release writes: 2, a
// header with the size and CRC of the rest (rewritten in place).
const journalFormat = 2

// errTornJournal: the journal's bytes are not one whole journal, as a
// crash during its in-place rewrite leaves them.
var errTornJournal = errors.New("the journal is not whole (torn by an interrupted rewrite, or damaged)")

// journalEntry is one saved change: its local id, transaction id and
// encoded record.
type journalEntry struct {
	ID, Txn int64
	Record  []byte
}

func appendFramed(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
}

// nextFrame splits b's first frame off: its payload (a slice of b that
// cannot grow into the rest) and the bytes after it. The frame's length is
// checked against b before anything is taken: a journal is hostile input,
// and a length read from it may claim a gigabyte in a few bytes.
func nextFrame(b []byte) (payload, rest []byte, err error) {
	if len(b) < 8 {
		return nil, nil, io.ErrUnexpectedEOF
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > uint64(len(b)-8) {
		return nil, nil, io.ErrUnexpectedEOF
	}
	p := b[4 : 4+n : 4+n]
	if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(b[4+n:]) {
		return nil, nil, errors.New("journal entry checksum mismatch")
	}
	return p, b[8+n:], nil
}

// writeJournal writes the journal at path durably, in place: the bytes at
// offset 0, the file cut to their length, one fsync. No temporary file, no
// rename, no directory sync (fsx.WriteFileAtomic's), except when the file
// had to be created or syncDir asks: a file's directory entry must be
// durable before a pull's T1 can depend on it. A rewrite that a crash or
// power loss interrupts leaves a torn journal (see journalHeader): T1 runs
// only after the fsync, so a torn one is never a pending pull's.
func writeJournal(fs fsx.FS, path string, hdr journalHeader, entries []journalEntry, conflicts []*conflictRecord, syncDir bool) error {
	var body []byte
	for _, e := range entries {
		p := binary.BigEndian.AppendUint64(nil, uint64(e.ID))
		p = binary.BigEndian.AppendUint64(p, uint64(e.Txn))
		p = append(p, e.Record...)
		body = appendFramed(body, p)
	}
	for _, c := range conflicts {
		p, err := json.Marshal(c)
		if err != nil {
			return err
		}
		body = appendFramed(body, p)
	}
	hdr.Count, hdr.Conflicts = len(entries), len(conflicts)
	hdr.Format, hdr.Size, hdr.CRC = journalFormat, int64(len(body)), crc32.Checksum(body, crcTable)
	h, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	buf := append(appendFramed(nil, h), body...)

	f, err := fs.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = fs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		syncDir = true
	}
	if err != nil {
		return err
	}
	_, err = f.WriteAt(buf, 0)
	if err == nil {
		err = f.Truncate(int64(len(buf)))
	}
	if err == nil {
		failpoint.Hit("journal.written", path)
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || !syncDir {
		return err
	}
	return fs.SyncDir(filepath.Dir(path))
}

// readJournalHeader reads only the header of the journal at path: a
// header that is not whole is errTornJournal, but the rest is not checked
// (readJournal does).
func readJournalHeader(fs fsx.FS, path string) (journalHeader, error) {
	var hdr journalHeader
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return hdr, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return hdr, err
	}
	h, err := headerFrame(f, st.Size())
	if err != nil {
		return hdr, fmt.Errorf("journal %s header: %w", path, err)
	}
	return hdr, parseJournalHeader(path, h, &hdr)
}

// maxJournalHeader bounds a journal header's frame: a real one is a few
// hundred bytes of JSON, and its length is read from a file that may be
// damaged before anything checks it.
const maxJournalHeader = 1 << 20

// headerFrame reads the journal's header frame from r, of size bytes: one
// that is short or fails its CRC is errTornJournal; an I/O error is
// returned as it is.
func headerFrame(r io.ReaderAt, size int64) ([]byte, error) {
	var b [4]byte
	if size < 8 {
		return nil, fmt.Errorf("%w: %d bytes", errTornJournal, size)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(b[:]))
	if n > maxJournalHeader {
		return nil, fmt.Errorf("%w: a header of %d bytes", errTornJournal, n)
	}
	if 8+n > size {
		return nil, fmt.Errorf("%w: a header of %d bytes in %d", errTornJournal, n, size)
	}
	buf := make([]byte, n+4)
	if _, err := r.ReadAt(buf, 4); err != nil {
		return nil, err
	}
	if crc32.Checksum(buf[:n], crcTable) != binary.BigEndian.Uint32(buf[n:]) {
		return nil, fmt.Errorf("%w: header checksum mismatch", errTornJournal)
	}
	return buf[:n], nil
}

// errNewerJournal: the journal's header says a format newer than
// journalFormat. readJournalHeader still fills in the fields this release
// knows (Pull among them), so that a finished pull's journal, which stays
// in place, does not keep this release from opening the replica
// (pendingPull); only its changes cannot be read.
var errNewerJournal = errors.New("a newer release's format")

// errUndecodedHeader: a newer format's header that this release cannot
// decode at all; whether it records a pending pull is unknown.
var errUndecodedHeader = errors.New("its header does not decode")

// parseJournalHeader decodes a whole header frame's payload. A newer
// format is errNewerJournal with hdr filled in as far as it decodes; if it
// does not decode at all, hdr.Format alone is set (and Pull is nil).
func parseJournalHeader(path string, h []byte, hdr *journalHeader) error {
	// Its CRC matched: this is a header some release wrote, not a torn one.
	if err := json.Unmarshal(h, hdr); err != nil {
		var f struct {
			Format int `json:"format"`
		}
		if json.Unmarshal(h, &f) == nil && f.Format > journalFormat {
			*hdr = journalHeader{Format: f.Format}
			return fmt.Errorf("journal %s has format %d (%w), this release reads up to %d, and %w (%v)", path, f.Format, errNewerJournal, journalFormat, errUndecodedHeader, err)
		}
		return fmt.Errorf("journal %s header: %w", path, err)
	}
	if hdr.Format > journalFormat {
		return fmt.Errorf("journal %s has format %d (%w), this release reads up to %d", path, hdr.Format, errNewerJournal, journalFormat)
	}
	return nil
}

// readJournal reads a journal written by writeJournal (or by an earlier
// release); one that is not whole is errTornJournal.
func readJournal(fs fsx.FS, path string) (journalHeader, []journalEntry, []*conflictRecord, error) {
	var hdr journalHeader
	data, err := fsx.ReadFile(fs, path)
	if err != nil {
		return hdr, nil, nil, err
	}
	h, err := headerFrame(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return hdr, nil, nil, fmt.Errorf("journal %s header: %w", path, err)
	}
	if err := parseJournalHeader(path, h, &hdr); err != nil {
		return hdr, nil, nil, err
	}
	body := data[4+len(h)+4:]
	// An earlier release's journal (format 0) was replaced atomically: it
	// is whole, and a damaged entry below is an error of its own.
	if hdr.Format > 0 && (int64(len(body)) != hdr.Size || crc32.Checksum(body, crcTable) != hdr.CRC) {
		return hdr, nil, nil, fmt.Errorf("journal %s: %w (%d bytes after the header, want %d with CRC %08x)", path, errTornJournal, len(body), hdr.Size, hdr.CRC)
	}
	if hdr.Count < 0 || hdr.Conflicts < 0 {
		return hdr, nil, nil, fmt.Errorf("journal %s: a header of %d changes and %d conflicts", path, hdr.Count, hdr.Conflicts)
	}
	// A change takes at least 24 bytes (its frame, its ids): no more are
	// made room for than the bytes can hold, whatever the count says.
	entries := make([]journalEntry, 0, min(hdr.Count, len(body)/24))
	for i := 0; i < hdr.Count; i++ {
		var p []byte
		p, body, err = nextFrame(body)
		if err == nil && len(p) < 16 {
			err = fmt.Errorf("an entry of %d bytes", len(p))
		}
		if err != nil {
			return hdr, nil, nil, fmt.Errorf("journal %s entry %d: %v", path, i, err)
		}
		entries = append(entries, journalEntry{
			ID: int64(binary.BigEndian.Uint64(p)), Txn: int64(binary.BigEndian.Uint64(p[8:])), Record: p[16:],
		})
	}
	var conflicts []*conflictRecord
	for i := 0; i < hdr.Conflicts; i++ {
		var p []byte
		p, body, err = nextFrame(body)
		rec := &conflictRecord{}
		if err == nil {
			err = json.Unmarshal(p, rec)
		}
		if err != nil {
			return hdr, nil, nil, fmt.Errorf("journal %s conflict %d: %w", path, i, err)
		}
		conflicts = append(conflicts, rec)
	}
	return hdr, entries, conflicts, nil
}
