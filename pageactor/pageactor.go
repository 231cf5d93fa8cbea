// Package pageactor is the page actor of a partial replica: it knows which
// pages of the database file are present, fetches missing ones on demand —
// a whole aligned segment at a time, one fetch per segment however many
// readers wait for it — writes them into the file's holes, and records
// their presence durably. With prefetch on, it parses the B-tree interior
// pages it fetched and loads their children too.
//
// Fetches ask for pages as of the bootstrap revision: a page still missing
// from the file has not changed locally nor been written by a checkpoint, so
// every local snapshot that reads it from the file (rather than from the
// WAL, where pulled pages land) must see it as it was at the bootstrap.
//
// The rule that keeps partial replicas correct: a fetch never overwrites a
// page that is present. SQLite writes missing pages itself (a checkpoint
// copying a pulled page, or a reused free page); WillWrite, which the shim
// calls before each of SQLite's writes, marks them present, under the same
// lock that fetches write under. A page is present once the file holds its
// content, and not before: a reader whose snapshot lacks a page's WAL
// frames reads the page from the file, and a hole there must be fetched.
//
// Presence is kept in <db>-present, an append-only log of page ranges, each
// appended only after the pages it names were fsynced into the database
// file, or (a checkpoint's MarkPresent) while the pages' frames are still in
// the WAL, before SQLite copies them. A crash leaves at worst pages written
// but not recorded, which are fetched again, or pages recorded but not yet
// copied, whose frames are in the WAL until a checkpoint copies them: they
// are durable there because the checkpoint made the WAL durable before its
// MarkPresent (dbactor: syncBeforeMark; under SyncNormal SQLite syncs the
// WAL only inside the copy). A fetch holds writeMu until its record is durable, so that
// a checkpoint's MarkPresent of one of its pages, which finds the page
// present and records nothing, returns only once the page is in the log.
// A record is in the log if and only if record returned nil (see record),
// with one residual risk an append-only log cannot close: an append whose
// fsync failed, then a crash before the cut, may leave its entry CRC-valid
// and durable. That is harmless for MarkPresent (the pages' frames were
// made durable first) and for a fetch (it wrote the pages before), but a
// WillWrite refused after such a failure leaves a hole its entry names.
//
// # Not confined to an actor
//
// Pages is the one piece of actor state that other goroutines touch: SQLite
// calls Missing, Fetch and WillWrite from its VFS callbacks, on whichever
// goroutine runs a statement (a reader of the pool or the writer), and the
// database actor calls Present, Ensure, Image, MarkPresent, ZeroFill and
// Repin (messages.LazyPages) from its own. Missing runs on every read of
// the file and answers from an atomic bitmap, without a mailbox round trip;
// WillWrite must shut fetches out before SQLite writes a page, under the
// lock fetches write under. So Pages is a shared object guarded by locks
// (writeMu, logMu, zeroMu) and an atomic bitmap, and the actor inside it
// only de-duplicates segment fetches (Fetch and Ensure wait for it), so
// that readers missing the same segment share one request.
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package pageactor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/btree"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/shimvfs"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// PageSize is the only page size the sync protocol allows.
const PageSize = wire.PageSize

// WriterTag is the syncdb_tag of the writer connection: during a pull's
// page writes it may read pages it is about to overwrite as zeros.
// For syncdb's own packages; no compatibility promise.
const WriterTag = "writer"

// Config configures the page actor.
type Config struct {
	Sys          *actors.System
	Net          netactor.Handle // Open stamps it with the page actor's level
	FS           fsx.FS
	Path         string        // the database file
	Revision     string        // the bootstrap revision every fetch is pinned to
	DBSize       uint32        // pages in the database at the bootstrap: pages beyond were written locally
	SegmentSize  int           // bytes per fetch; default 128 KiB
	Prefetch     bool          // load the children of fetched B-tree interior pages
	FetchTimeout time.Duration // default 30 s
	Logger       *slog.Logger
	// Background runs each prefetch download (default: on a goroutine of
	// its own). The simulator queues them, to run them where it chooses:
	// between operations, or when a fetch waits for one (the failpoint
	// pages.wait).
	Background func(func())
}

// ErrFetch wraps every failure to fetch a page (a retryable query error).
var ErrFetch = errors.New("fetch missing page")

// Pages is the presence state of a partial replica and the shim's view of
// it (see "Not confined to an actor").
type Pages struct {
	cfg     Config
	actor   actors.Ref // the fetch actor, as the Pages methods' callers ask it (dbactor's level at the lowest)
	segment uint32     // pages per segment

	present []atomic.Uint64 // bit per page 1..DBSize
	count   atomic.Int64    // pages present

	writeMu sync.Mutex    // fetch writes and WillWrite exclude each other
	file    *shimvfs.File // our own descriptor of the database file (recorded with SQLite's under a shimvfs.Recorder); open until Close
	// logged are the pages MarkPresent recorded that the file does not hold
	// yet: SQLite is to copy them (WillWrite then makes them present
	// without a record), a fetch may fill them before. Under writeMu.
	logged  *roaring.Bitmap
	logMu   sync.Mutex
	log     fsx.File
	logSize int64
	// logCut says that the log beyond logSize may hold the entry of a
	// failed append, to cut before the next append (record). Under logMu.
	logCut bool
	claim  string // the log's absolute path while this Pages is its writer (claimLog); under logMu

	zeroMu sync.RWMutex
	zero   *roaring.Bitmap // pages the writer may read as zeros (a pull's T1)

	fetches atomic.Int64           // segment requests sent (for tests and stats)
	pin     atomic.Pointer[string] // the revision fetches ask for (see Repin)
}

var (
	_ messages.LazyPages = (*Pages)(nil)
	_ shimvfs.Pages      = (*Pages)(nil)
	_ shimvfs.WillWriter = (*Pages)(nil)
)

func (p *Pages) revision() string {
	if r := p.pin.Load(); r != nil {
		return *r
	}
	return p.cfg.Revision
}

// Repin makes later fetches ask for pages as of rev. The caller
// guarantees that every page still missing from the file is the same at
// rev as at the revision fetches asked for so far: right after a
// checkpoint emptied the WAL, having copied every page it held into the
// file (WillWrite made each present), the synced revision of that moment
// qualifies (a missing page has not changed since the bootstrap, or a
// pull would have put it in the WAL).
// This is what lets a replica outlive its bootstrap revision.
func (p *Pages) Repin(rev string) { p.pin.Store(&rev) }

// Defaults of Config.
const (
	DefaultSegmentSize  = 128 << 10
	DefaultFetchTimeout = 30 * time.Second
)

// withDefaults fills the zero fields that have a default: SegmentSize
// DefaultSegmentSize, FetchTimeout DefaultFetchTimeout, a discarding
// Logger, FS fsx.OS.
func (cfg Config) withDefaults() Config {
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = DefaultSegmentSize
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FS == nil {
		cfg.FS = fsx.OS
	}
	return cfg
}

// Open loads the presence log and starts the actor. Close it after every
// connection on the database is closed.
func Open(cfg Config) (_ *Pages, err error) {
	cfg = cfg.withDefaults()
	cfg.Net = cfg.Net.From(actors.LevelPages)
	if cfg.SegmentSize%PageSize != 0 {
		return nil, fmt.Errorf("segment size %d is not a multiple of %d", cfg.SegmentSize, PageSize)
	}
	p := &Pages{cfg: cfg, segment: uint32(cfg.SegmentSize / PageSize), present: make([]atomic.Uint64, cfg.DBSize/64+1), logged: roaring.New()}
	abs, err := claimLog(layout.For(cfg.Path).Present)
	if err != nil {
		return nil, err
	}
	p.claim = abs
	defer func() {
		if err != nil {
			p.Close() // the files opened so far, and the claim
		}
	}()
	if p.file, err = shimvfs.OpenFile(cfg.Path); err != nil {
		return nil, err
	}
	if err = p.loadLog(); err != nil {
		return nil, err
	}
	a := &pageActor{p: p, inflight: map[uint32][]*fetchPage{}}
	ref, err := cfg.Sys.Spawn("pages", actors.LevelPages, a.receive, nil)
	if err != nil {
		return nil, err
	}
	// Pages' methods run on their callers' goroutines: dbactor's (its
	// handlers, and SQLite's VFS calls on its writer connection), the
	// read pool's, the facade's. dbactor is the lowest of them.
	p.actor = ref.From(actors.LevelDB)
	return p, nil
}

// Close closes the files. Call it after the database's connections closed.
func (p *Pages) Close() error {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	var errs []error
	if p.log != nil {
		errs = append(errs, p.cutLog(), p.log.Close())
		p.log = nil
	}
	if p.file != nil {
		errs = append(errs, p.file.Close())
		p.file = nil
	}
	if p.claim != "" {
		releaseLog(p.claim)
		p.claim = ""
	}
	return errors.Join(errs...)
}

func (p *Pages) has(pgno uint32) bool {
	if pgno == 0 || pgno > p.cfg.DBSize {
		return true
	}
	return p.present[pgno/64].Load()&(1<<(pgno%64)) != 0
}

func (p *Pages) set(pgno uint32) bool {
	if pgno == 0 || pgno > p.cfg.DBSize {
		return false
	}
	w, bit := &p.present[pgno/64], uint64(1)<<(pgno%64)
	for {
		old := w.Load()
		if old&bit != 0 {
			return false
		}
		if w.CompareAndSwap(old, old|bit) {
			p.count.Add(1)
			return true
		}
	}
}

// clear unsets pgno's bit (a fetch that failed to make it durable). Under
// writeMu, so that no set races it.
func (p *Pages) clear(pgno uint32) {
	if pgno == 0 || pgno > p.cfg.DBSize {
		return
	}
	w, bit := &p.present[pgno/64], uint64(1)<<(pgno%64)
	for {
		old := w.Load()
		if old&bit == 0 {
			return
		}
		if w.CompareAndSwap(old, old&^bit) {
			p.count.Add(-1)
			return
		}
	}
}

// Missing implements shimvfs.Pages.
func (p *Pages) Missing(pgno uint32) bool { return !p.has(pgno) }

// Present reports whether pgno is in the database file.
func (p *Pages) Present(pgno uint32) bool { return p.has(pgno) }

// Counts returns the pages present and the pages of the bootstrap.
func (p *Pages) Counts() (present, total int64) { return p.count.Load(), int64(p.cfg.DBSize) }

// Fetches is the number of segment requests sent so far.
func (p *Pages) Fetches() int64 { return p.fetches.Load() }

// Fetch implements shimvfs.Pages: it blocks until pgno is present.
func (p *Pages) Fetch(pgno uint32, tag string) error {
	if tag == WriterTag {
		p.zeroMu.RLock()
		zero := p.zero != nil && p.zero.Contains(pgno)
		p.zeroMu.RUnlock()
		if zero {
			return shimvfs.ErrZeroFill
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.FetchTimeout)
	defer cancel()
	_, err := actors.Ask(ctx, p.actor, &fetchPage{pgno: pgno})
	if err != nil {
		return fmt.Errorf("%w %d: %w", ErrFetch, pgno, err)
	}
	return nil
}

// Ensure makes pgno present (for syncdb's own reads of the file).
func (p *Pages) Ensure(ctx context.Context, pgno uint32) error {
	if p.has(pgno) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.FetchTimeout)
	defer cancel()
	_, err := actors.Ask(ctx, p.actor, &fetchPage{pgno: pgno})
	if err != nil {
		return fmt.Errorf("%w %d: %w", ErrFetch, pgno, err)
	}
	return nil
}

// Image fetches the bootstrap revision's image of pgno without writing it
// anywhere: the base image of a page the file no longer holds as the base
// had it (a checkpoint wrote local content into its hole).
func (p *Pages) Image(ctx context.Context, pgno uint32) ([]byte, error) {
	sel, err := wire.EncodeSelector(roaring.BitmapOf(pgno - 1))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.FetchTimeout)
	defer cancel()
	p.fetches.Add(1)
	info, err := p.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
		Req:  &syncpb.PullUpdatesReqProtoBody{ServerRevision: p.revision(), ServerPagesSelector: sel},
		Keep: roaring.BitmapOf(pgno - 1),
	})
	img := info.Kept[pgno]
	if err == nil && img == nil {
		err = fmt.Errorf("the server did not send page %d", pgno)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %d: %w", ErrFetch, pgno, err)
	}
	return img, nil
}

// ZeroFill lets the writer connection read pages as zeros (they are about
// to be overwritten); nil ends it.
func (p *Pages) ZeroFill(pages *roaring.Bitmap) {
	p.zeroMu.Lock()
	p.zero = pages
	p.zeroMu.Unlock()
}

// ErrWillWrite wraps WillWrite's failure to record pages SQLite is about
// to write: the shim then fails SQLite's write (SQLITE_IOERR_WRITE).
var ErrWillWrite = errors.New("record pages SQLite is about to write")

// WillWrite implements shimvfs.WillWriter: SQLite is about to write these
// pages, so no fetch may write them any more.
//
// Pages it finds missing become present: from now on they are SQLite's.
// A checkpoint's pages were recorded by its MarkPresent; any other is
// recorded here, before SQLite writes it. If that record fails, the bits
// are cleared and the error fails SQLite's write, which then never
// happens: a page SQLite wrote but the log lacks would, after a reopen, be
// fetched over with the bootstrap image.
func (p *Pages) WillWrite(first, last uint32) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	var added, unlogged []uint32
	for pg := first; pg <= last && pg <= p.cfg.DBSize; pg++ {
		if p.set(pg) {
			added = append(added, pg)
			if !p.logged.Contains(pg) {
				unlogged = append(unlogged, pg)
			}
		}
	}
	if err := p.record(unlogged); err != nil {
		for _, pg := range added {
			p.clear(pg)
		}
		err = fmt.Errorf("%w %d-%d: %w", ErrWillWrite, first, last, err)
		p.cfg.Logger.Error("SQLite's write of pages missing from a partial replica fails: they cannot be recorded present", "err", err)
		return err
	}
	for _, pg := range added {
		p.logged.Remove(pg)
	}
	return nil
}

// Wrote implements shimvfs.Pages.
func (p *Pages) Wrote(first, last uint32) {}

// MarkPresent records in the presence log, durably and in one append,
// the missing pages among those SQLite is about to copy into the file (a
// checkpoint: the pages of the WAL), so that a crash during the copy
// cannot leave a copied page looking missing, and so that WillWrite need
// not record them one write at a time.
//
// It does not make them present: the file holds their holes until SQLite
// writes them, and WillWrite makes each present then. A checkpoint held
// back by a reader copies only the frames that reader's snapshot has; a
// page whose frames it left behind stays missing, and that reader, which
// reads it from the file, fetches it (the image it had before those
// frames) instead of reading the hole as data. A page still missing when
// the log names it is present after a reopen, which is safe only because
// the caller made the WAL durable first (dbactor: syncBeforeMark): its
// frames are then in the WAL until a checkpoint copies them. Without that
// a power loss could take the frames and leave the log naming a hole.
//
// If the record fails nothing changes (the checkpoint fails, and the next
// one records the pages); had it set their bits, the next MarkPresent
// would record nothing and the copy would leave pages the log lacks.
func (p *Pages) MarkPresent(pages []uint32) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	var add []uint32
	for _, pg := range pages {
		if !p.has(pg) && !p.logged.Contains(pg) {
			add = append(add, pg)
		}
	}
	if err := p.record(add); err != nil {
		return err
	}
	p.logged.AddMany(add)
	return nil
}

// --- the presence log: records of [u32 first][u32 count][u32 crc32c], big-endian.

const recordSize = 12

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrLogInUse reports a presence log that a Pages of this process has
// open, which Create would replace or a second Open would append to: the
// log has one writer, the Pages that opened it (its appends go to the file
// it opened, at the size it knows).
var ErrLogInUse = errors.New("the presence log is open")

// openLogs are the presence logs this process's Pages have open, by
// absolute path with symlinks resolved (shimvfs.CleanAbs): two spellings
// of one file, through a symlinked directory, are one claim.
var openLogs = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// claimLog makes path's log this caller's until releaseLog.
func claimLog(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if abs, err = shimvfs.CleanAbs(abs); err != nil {
		return "", err
	}
	openLogs.Lock()
	defer openLogs.Unlock()
	if openLogs.m[abs] {
		return "", fmt.Errorf("%s: %w", path, ErrLogInUse)
	}
	openLogs.m[abs] = true
	return abs, nil
}

func releaseLog(abs string) {
	openLogs.Lock()
	defer openLogs.Unlock()
	delete(openLogs.m, abs)
}

// Create writes the presence log of a new partial replica, present being
// the pages its bootstrap wrote into the file (which must be durable
// already): the one way the log comes to be, besides Open's empty one.
// It fails with ErrLogInUse while a Pages has the log open.
// For syncdb's own packages; no compatibility promise.
func Create(fs fsx.FS, files layout.Files, present *roaring.Bitmap) error {
	abs, err := claimLog(files.Present)
	if err != nil {
		return err
	}
	defer releaseLog(abs)
	var buf []byte
	appendRuns(&buf, present.ToArray())
	return fsx.WriteFileAtomic(fs, files.Present, buf)
}

func appendRuns(buf *[]byte, pages []uint32) {
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j] == pages[j-1]+1 {
			j++
		}
		start := len(*buf)
		*buf = binary.BigEndian.AppendUint32(*buf, pages[i])
		*buf = binary.BigEndian.AppendUint32(*buf, uint32(j-i))
		*buf = binary.BigEndian.AppendUint32(*buf, crc32.Checksum((*buf)[start:], crcTable))
		i = j
	}
}

// LoadPresence reads the presence log of a partial replica (for checks
// and tools; ReadStats reads one another process may have open). It only
// reads: a torn tail is left for the log's writer to cut, and a missing
// log is no pages.
func LoadPresence(fs fsx.FS, dbPath string, dbSize uint32) (*roaring.Bitmap, error) {
	p := &Pages{cfg: Config{FS: fs, Path: dbPath, DBSize: dbSize}, present: make([]atomic.Uint64, dbSize/64+1)}
	f, err := fs.OpenFile(layout.For(dbPath).Present, os.O_RDONLY, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return roaring.New(), nil
	case err != nil:
		return nil, err
	}
	_, err = p.readLog(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	bm := roaring.New()
	for pg := uint32(1); pg <= dbSize; pg++ {
		if p.has(pg) {
			bm.Add(pg)
		}
	}
	return bm, nil
}

// loadLog opens the presence log for Pages' appends (creating it empty if
// there is none) and loads it; it cuts a torn tail.
func (p *Pages) loadLog() error {
	f, err := p.cfg.FS.OpenFile(layout.For(p.cfg.Path).Present, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	valid, err := p.readLog(f)
	if err != nil {
		f.Close()
		return err
	}
	if st, err := f.Stat(); err != nil || st.Size() > valid {
		if err == nil {
			err = f.Truncate(valid)
		}
		if err != nil {
			f.Close()
			return err
		}
	}
	p.log, p.logSize = f, valid
	return nil
}

// readLog sets the pages f's records name and returns the length of its
// whole records.
func (p *Pages) readLog(f fsx.File) (int64, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil {
		return 0, err
	}
	valid := 0
	for ; valid+recordSize <= len(data); valid += recordSize {
		r := data[valid : valid+recordSize]
		if crc32.Checksum(r[:8], crcTable) != binary.BigEndian.Uint32(r[8:]) {
			break // a torn append: everything after it is lost, and refetched
		}
		first, n := binary.BigEndian.Uint32(r), binary.BigEndian.Uint32(r[4:])
		for pg := first; pg < first+n; pg++ {
			p.set(pg)
		}
	}
	return int64(valid), nil
}

// errLogTail reports a failed append's entry that could not be cut off the
// presence log: no record is made until it is (record).
var errLogTail = errors.New("cut the presence log's failed append")

// record appends pages to the presence log and syncs it. The pages' data
// must be durable already (or, MarkPresent, in the WAL).
//
// The pages are in the log if and only if record returns nil. An append
// whose write or sync failed may still have left its entry in the file,
// whole, and even durable (a failed fsync says nothing of what reached the
// disk), while its caller treats the pages as unrecorded (their bits
// cleared, SQLite's write refused): the next append's fsync would make the
// stale entry durable, and the next open would take pages for present
// whose content the file does not hold. So the entry is cut (truncated
// to the old size, synced) before record returns, or, if that fails too,
// before the next append, and every record is refused until the cut
// succeeds. No earlier entry is at risk from a failed fsync: each append
// was synced before its record returned.
func (p *Pages) record(pages []uint32) error {
	if len(pages) == 0 {
		return nil
	}
	var buf []byte
	appendRuns(&buf, slices.Compact(slices.Sorted(slices.Values(pages))))
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if p.log == nil {
		return errors.New("presence log closed")
	}
	if err := p.cutLog(); err != nil {
		return err
	}
	if err := p.appendLog(buf); err != nil {
		p.logCut = true
		if cerr := p.cutLog(); cerr != nil {
			p.cfg.Logger.Error("the presence log's failed append cannot be cut: records are refused until it is", "err", cerr)
		}
		return err
	}
	p.logSize += int64(len(buf))
	return nil
}

// appendLog writes buf at the log's end and syncs it. Under logMu.
func (p *Pages) appendLog(buf []byte) error {
	if _, err := p.log.WriteAt(buf, p.logSize); err != nil {
		return err
	}
	return p.log.Sync()
}

// cutLog truncates the log back to logSize, durably, if a failed append
// may have left bytes beyond it. Under logMu.
func (p *Pages) cutLog() error {
	if !p.logCut {
		return nil
	}
	if err := p.log.Truncate(p.logSize); err != nil {
		return fmt.Errorf("%w: %w", errLogTail, err)
	}
	if err := p.log.Sync(); err != nil {
		return fmt.Errorf("%w: %w", errLogTail, err)
	}
	p.logCut = false
	return nil
}

// --- the actor

type fetchPage struct {
	actors.Request[struct{}]
	pgno uint32
}

// fetched is a download, sent back by the goroutine that ran it: a
// segment's missing pages, or (prefetch) the children of interior pages.
type fetched struct {
	segs     []uint32 // the in-flight keys it answers
	pages    map[uint32][]byte
	err      error
	prefetch bool
}

type pageActor struct {
	p        *Pages
	inflight map[uint32][]*fetchPage // segment -> waiters
}

func (a *pageActor) receive(msg any) {
	switch m := msg.(type) {
	case *fetchPage:
		if a.p.has(m.pgno) {
			m.Respond(struct{}{}, nil)
			return
		}
		seg := (m.pgno - 1) / a.p.segment
		if _, busy := a.inflight[seg]; busy {
			failpoint.Hit("pages.wait", a.p.cfg.Path)
		}
		a.start(seg)
		a.inflight[seg] = append(a.inflight[seg], m)
	case *fetched:
		a.done(m)
	}
}

// start begins fetching a segment unless it is in flight already.
func (a *pageActor) start(seg uint32) {
	if _, busy := a.inflight[seg]; busy {
		return
	}
	first := seg*a.p.segment + 1
	want := roaring.New()
	for pg := first; pg < first+a.p.segment && pg <= a.p.cfg.DBSize; pg++ {
		if !a.p.has(pg) {
			want.Add(pg - 1) // selectors are 0-based
		}
	}
	if want.IsEmpty() {
		return
	}
	a.inflight[seg] = nil
	a.request(want, []uint32{seg}, false)
}

// request downloads the pages of want (0-based ids) in one request and
// sends the result back to the actor.
func (a *pageActor) request(want *roaring.Bitmap, segs []uint32, prefetch bool) {
	a.p.fetches.Add(1)
	// The revision is the one of the moment the pages were found missing:
	// a Repin after that may name a revision where they changed.
	rev := a.p.revision()
	run := func() {
		res := &fetched{segs: segs, pages: map[uint32][]byte{}, prefetch: prefetch}
		sel, err := wire.EncodeSelector(want)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), a.p.cfg.FetchTimeout)
			var info messages.PullInfo
			info, err = a.p.cfg.Net.PullUpdates(ctx, &messages.PullUpdates{
				Req:  &syncpb.PullUpdatesReqProtoBody{ServerRevision: rev, ServerPagesSelector: sel},
				Keep: want,
			})
			cancel()
			if err == nil && info.Unasked != 0 {
				err = fmt.Errorf("server sent page %d, which was not asked for", info.Unasked)
			}
			if info.Kept != nil {
				res.pages = info.Kept
			}
		}
		res.err = err
		a.p.actor.Send(res)
	}
	if prefetch && a.p.cfg.Background != nil {
		a.p.cfg.Background(run)
		return
	}
	go run()
}

// done writes a download into the file's holes and answers its waiters.
func (a *pageActor) done(m *fetched) {
	if m.prefetch {
		defer failpoint.Hit("pages.prefetched", a.p.cfg.Path)
	}
	var waiters []*fetchPage
	for _, seg := range m.segs {
		waiters = append(waiters, a.inflight[seg]...)
		delete(a.inflight, seg)
	}
	err := m.err
	var written []uint32
	if err == nil {
		written, err = a.p.write(m.pages)
	}
	switch {
	case errors.Is(err, netactor.ErrRevisionGone):
		// Before the waiters hear of it, so that the log explains the
		// "disk I/O error" of their query. The server answers a fetch as
		// of a revision it no longer keeps for the pages no later
		// revision wrote; this one changed since, and the replica's next
		// pull brings it.
		a.p.cfg.Logger.Warn("page fetch failed: a missing page changed on the server after the revision this replica fetches at, "+
			"which the server no longer keeps; reads of it fail until the next pull", "revision", a.p.revision(), "err", err)
	case err != nil:
		a.p.cfg.Logger.Warn("page fetch failed", "prefetch", m.prefetch, "err", err)
	}
	// The prefetch starts before the waiters go on, so that what they read
	// next finds the children's segments in flight.
	if err == nil && a.p.cfg.Prefetch && !m.prefetch {
		a.prefetch(written, m.pages)
	}
	for _, w := range waiters {
		switch {
		case err != nil && !m.prefetch:
			w.Respond(struct{}{}, err)
		case a.p.has(w.pgno):
			w.Respond(struct{}{}, nil)
		case m.prefetch:
			// A prefetch brings chosen pages, not whole segments: fetch
			// this one's segment now.
			seg := (w.pgno - 1) / a.p.segment
			a.start(seg)
			a.inflight[seg] = append(a.inflight[seg], w)
		default:
			w.Fail(fmt.Errorf("the server did not send page %d", w.pgno))
		}
	}
}

// write puts fetched pages into the holes of the file (never over a
// present page), syncs the file, then records them as present.
//
// writeMu is held until the record is durable: a MarkPresent or WillWrite
// of one of these pages finds its bit set and records nothing itself, so it
// must not return (and SQLite must not write the page) before the fetch's
// record is durable, or a crash leaves the page out of the log and the
// next open's fetch writes the bootstrap image over SQLite's. On a failure
// the bits are cleared: the pages are missing again, and a later
// MarkPresent or fetch records them.
func (p *Pages) write(pages map[uint32][]byte) ([]uint32, error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	var added []uint32 // the bits this write set
	written, err := p.writeLocked(pages, &added)
	if err != nil {
		for _, pg := range added {
			p.clear(pg)
		}
		return nil, err
	}
	return written, nil
}

// writeLocked is write's work under writeMu; it appends the pages whose
// bits it sets to added.
func (p *Pages) writeLocked(pages map[uint32][]byte, added *[]uint32) (written []uint32, err error) {
	for pg, data := range pages {
		if p.has(pg) && !mutationFetchOverPresent {
			continue
		}
		if len(data) != PageSize {
			return written, fmt.Errorf("page %d has %d bytes", pg, len(data))
		}
		if _, err := p.file.WriteAt(data, int64(pg-1)*PageSize); err != nil {
			return written, err
		}
		written = append(written, pg)
		if p.set(pg) {
			*added = append(*added, pg)
		}
	}
	if len(written) == 0 {
		return nil, nil
	}
	if err := p.file.Sync(); err != nil {
		return written, err
	}
	// A page MarkPresent recorded is in the log already.
	var unlogged []uint32
	for _, pg := range written {
		if !p.logged.Contains(pg) {
			unlogged = append(unlogged, pg)
		}
	}
	if err := p.record(unlogged); err != nil {
		return written, err
	}
	for _, pg := range written {
		p.logged.Remove(pg)
	}
	return written, nil
}

// maxPrefetch bounds one prefetch: the children of the interior pages a
// demand fetch brought, at most this many pages, in one request.
const maxPrefetch = 64

// prefetch loads, in one request, the children of fetched B-tree interior
// pages (one level deep): a search that just read an interior page will
// read one of them next. Children in a segment already in flight are left
// to that fetch.
func (a *pageActor) prefetch(written []uint32, pages map[uint32][]byte) {
	want := roaring.New()
	segs := map[uint32]bool{}
	for _, pg := range written {
		for _, child := range btree.Children(pg, pages[pg]) {
			if want.GetCardinality() >= maxPrefetch {
				break
			}
			if child == 0 || child > a.p.cfg.DBSize || a.p.has(child) {
				continue
			}
			seg := (child - 1) / a.p.segment
			if _, busy := a.inflight[seg]; busy && !segs[seg] {
				continue
			}
			want.Add(child - 1)
			segs[seg] = true
		}
	}
	if want.IsEmpty() {
		return
	}
	keys := make([]uint32, 0, len(segs))
	for seg := range segs {
		a.inflight[seg] = nil
		keys = append(keys, seg)
	}
	a.request(want, keys, true)
}
