package syncactor

import (
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The bootstrap's decisions, pure: what to ask the server for, what to
// make of its header and pages, when the download is complete, and then
// the steps that make it a replica (in order: every file write, fsync,
// failpoint, metadata write and rename) and the metadata written. The
// executors, bootstrap and bootstrapPartial in syncactor.go, do the I/O
// between them: the network, metaactor, and the file through its owner,
// dbactor (BeginBootstrap's sink, FinishDownload, MoveBootstrap).
// TestBootstrapPlan runs testdata/bootstrap/*.txt through them.

// errNoPage1 refuses a partial bootstrap whose server did not send page 1,
// which every replica must hold (SQLite reads it first).
var errNoPage1 = errors.New("partial bootstrap: the server did not send page 1")

// errBadStep is the executor's refusal of a step a plan should not hold:
// the zero bootStep (opInvalid), an opRefuse without its error, an
// unknown op. The bootstrap ends there, the file closed, nothing moved.
var errBadStep = errors.New("bootstrap: invalid step")

// chunkPages is how many pages a full bootstrap asks for per request, from
// Config.BootstrapChunk (bytes): 0, one request for the whole database,
// when it is not positive; at least one page otherwise.
func chunkPages(chunkBytes int64) uint32 {
	if chunkBytes <= 0 {
		return 0
	}
	return uint32(max(1, chunkBytes/wire.PageSize))
}

// checkPage refuses a page beyond the size the server's header gave.
func checkPage(pgno uint32, dbSize uint64) error {
	if uint64(pgno) > dbSize {
		return fmt.Errorf("server sent page %d of a %d-page database", pgno, dbSize)
	}
	return nil
}

// fullDownload is the state of a full bootstrap's download: the requests,
// in chunks pinned to the first header's revision, and when it is done.
// One value lives across the retried attempts: restart begins an attempt
// (the file is created anew), and only the server's name for the database
// survives it.
type fullDownload struct {
	chunk    uint32                           // pages per request; 0: one request
	start    uint32                           // the next request's first page id (a selector's, 0-based)
	hdr      *syncpb.PullUpdatesRespProtoBody // the attempt's first header: the revision and size
	got      int64                            // pages received in the attempt
	database string                           // the last name a response gave, across attempts
}

func (d *fullDownload) restart() { d.start, d.hdr, d.got = 0, nil, 0 }

// request is the next request: the next chunk (or every page), at the
// revision of the attempt's first header once there is one.
func (d *fullDownload) request() (*syncpb.PullUpdatesReqProtoBody, error) {
	req := &syncpb.PullUpdatesReqProtoBody{}
	if d.chunk > 0 {
		sel, err := wire.EncodeSelector(wire.SelectorRange(d.start, d.start+d.chunk))
		if err != nil {
			return nil, err
		}
		req.ServerPagesSelector = sel
	}
	if d.hdr != nil {
		req.ServerRevision = d.hdr.ServerRevision
	}
	return req, nil
}

// header keeps the attempt's first header; a later chunk's header is
// ignored (its revision is the pinned one: the request named it).
func (d *fullDownload) header(h *syncpb.PullUpdatesRespProtoBody) {
	if d.hdr == nil {
		d.hdr = h
	}
}

// page checks a page against the header's size and returns the progress
// to report: pages received and the total.
func (d *fullDownload) page(pgno uint32) (got, total int64, err error) {
	if err := checkPage(pgno, d.hdr.DbSize); err != nil {
		return 0, 0, err
	}
	d.got++
	return d.got, int64(d.hdr.DbSize), nil
}

// answered takes a response that ended well, its pages written, with the
// server's name for the database (kept if it gave one); it reports
// whether the database is complete, else moves to the next chunk.
func (d *fullDownload) answered(database string) (done bool) {
	if database != "" {
		d.database = database
	}
	if d.chunk == 0 || uint64(d.start+d.chunk) >= d.hdr.DbSize {
		return true
	}
	d.start += d.chunk
	return false
}

// partialRequest is a partial bootstrap's one request: the query
// selector, else the prefix of PrefixBytes (at least one page).
func partialRequest(p *messages.PartialBootstrap) (*syncpb.PullUpdatesReqProtoBody, error) {
	req := &syncpb.PullUpdatesReqProtoBody{}
	if p.Query != "" {
		req.ServerQuerySelector = p.Query
		return req, nil
	}
	n := uint32(max(1, p.PrefixBytes/wire.PageSize))
	sel, err := wire.EncodeSelector(wire.SelectorRange(0, n))
	if err != nil {
		return nil, err
	}
	req.ServerPagesSelector = sel
	return req, nil
}

// partialDownload is the state of a partial bootstrap's download: the
// header, the pages present. restart begins an attempt.
type partialDownload struct {
	hdr      *syncpb.PullUpdatesRespProtoBody
	present  *roaring.Bitmap
	database string // the last attempt's
}

func (d *partialDownload) restart() { d.hdr, d.present = nil, roaring.New() }

// header takes a header (the last one counts) and returns the size the
// file is cut to: the whole database, holes where no page comes.
func (d *partialDownload) header(h *syncpb.PullUpdatesRespProtoBody) (fileSize int64) {
	d.hdr = h
	return int64(h.DbSize) * wire.PageSize
}

// page checks a page against the header's size, records it present and
// returns the progress to report (pages present; the total is unknown).
func (d *partialDownload) page(pgno uint32) (got int64, err error) {
	if err := checkPage(pgno, d.hdr.DbSize); err != nil {
		return 0, err
	}
	d.present.Add(pgno)
	return int64(d.present.GetCardinality()), nil
}

// answered takes the server's name for the database from a response,
// whether it ended well or not (the attempt that succeeds is the last).
func (d *partialDownload) answered(database string) { d.database = database }

// bootOp is one step of finishing a downloaded bootstrap.
type bootOp int

const (
	// opInvalid is the zero value, so that a bootStep{} left in a plan by
	// mistake is refused (errBadStep) instead of truncating the file to 0
	// bytes, which the full bootstrap would then stamp and move in.
	opInvalid   bootOp = iota
	opTruncate         // cut the file to size bytes
	opSync             // fsync the file
	opClose            // close the file
	opSyncClose        // fsync and close the file, both tried
	opRefuse           // fail with err (the file closed first)
	opPresence         // write the presence log (pageactor.Create)
	opFailpoint        // failpoint.Hit(name)
	opStamp            // the file's stamp: from the run writer's hash, or read back
	opMeta             // write the metadata (bootMeta)
	opMove             // dbactor's MoveBootstrap: the rename into PATH, the directory's fsync
)

// bootStep is one step; a step that fails ends the bootstrap with its
// error, closing the file if it is still open. The steps on the file
// (opTruncate to opRefuse, and opStamp) are dbactor's, the owner of the
// file (messages.FinishDownload: downloadSteps in syncactor.go); the
// others run in syncactor.
type bootStep struct {
	op     bootOp
	size   int64  // opTruncate
	name   string // opFailpoint
	hashed bool   // opStamp: the run writer hashed every page
	err    error  // opRefuse
}

func (st bootStep) String() string {
	switch st.op {
	case opTruncate:
		return fmt.Sprintf("truncate to %d bytes", st.size)
	case opSync:
		return "fsync"
	case opClose:
		return "close"
	case opSyncClose:
		return "fsync and close"
	case opRefuse:
		return fmt.Sprintf("close, refuse: %v", st.err) // err nil: an invalid step
	case opPresence:
		return "write the presence log"
	case opFailpoint:
		return "failpoint " + st.name
	case opStamp:
		if st.hashed {
			return "stamp with the runs' hash"
		}
		return "stamp, reading the file back"
	case opMeta:
		return "write the metadata"
	case opMove:
		return "move into place"
	}
	return fmt.Sprintf("bootOp(%d)", int(st.op))
}

// finishFull is how a full bootstrap's download becomes the replica: the
// file cut to the header's size (a chunk may have asked past the end),
// synced and closed before the metadata, so that metadata never names a
// file a power loss can still change; the stamp (none for an empty
// database); the metadata; then the move. A crash before the metadata
// leaves none (the next Open starts over), one after it the move
// (dbactor's MoveBootstrap at Open). The file steps come first, up to the
// stamp (dbactor's FinishDownload runs them); so bootstrap.downloaded
// comes after the stamp, which only reads the file (its size and time,
// and the file back when the runs did not hash it): the files on disk at
// that crash point are the same as before the stamp.
func finishFull(size uint64, hashed bool) []bootStep {
	steps := []bootStep{
		{op: opTruncate, size: int64(size) * wire.PageSize},
		{op: opSync},
		{op: opClose},
	}
	if size > 0 {
		steps = append(steps, bootStep{op: opStamp, hashed: hashed})
	}
	return append(steps,
		bootStep{op: opFailpoint, name: "bootstrap.downloaded"},
		bootStep{op: opMeta},
		bootStep{op: opFailpoint, name: "bootstrap.meta"},
		bootStep{op: opMove})
}

// finishPartial is the same for a partial bootstrap: page 1 must have
// come (unless the database is empty); the file (already full size) is
// synced and closed, then the presence log written before the metadata,
// which makes the replica. No stamp: the file's holes fill as pages are
// read.
func finishPartial(size uint64, page1 bool) []bootStep {
	if size > 0 && !page1 {
		return []bootStep{{op: opRefuse, err: errNoPage1}}
	}
	return []bootStep{
		{op: opSyncClose},
		{op: opPresence},
		{op: opFailpoint, name: "bootstrap.downloaded"},
		{op: opMeta},
		{op: opFailpoint, name: "bootstrap.meta"},
		{op: opMove},
	}
}

// bootFacts is what the metadata of a new replica is made of.
type bootFacts struct {
	clientID string
	saved    messages.SavedConfig
	revision string // the server's, of the download
	size     uint64 // pages
	database string
	stamp    *messages.FileStamp        // a full bootstrap's
	partial  *messages.PartialBootstrap // nil for a full bootstrap
	now      int64                      // Unix seconds: the time of this first pull
}

// bootMeta writes a new replica's metadata into m: the client id, the
// synced revision and base (the download), the saved configuration, and
// Fresh (the server's _syncdb_* objects are still to be dropped at the
// first open); a full replica's stamp, a partial one's bootstrap revision
// and partial state.
func bootMeta(m *messages.Meta, b bootFacts) {
	m.ClientUniqueID = b.clientID
	m.SyncedRevision = &messages.Revision{Type: "v1", Revision: b.revision}
	now := b.now
	m.LastPullUnixTime = &now
	sc := b.saved
	m.SyncDB.Base = messages.Base{DBSize: uint32(b.size)}
	if p := b.partial; p != nil {
		m.PartialBootstrapServerRevision = &messages.Revision{Type: "v1", Revision: b.revision}
		prefetch, seg := p.Prefetch, p.SegmentSize
		sc.PartialSyncPrefetch = &prefetch
		sc.PartialSyncSegmentSize = &seg
		m.SyncDB.Partial = &messages.PartialState{DBSize: uint32(b.size), SegmentSize: p.SegmentSize, Prefetch: p.Prefetch}
	} else {
		m.SyncDB.DBFile = b.stamp
	}
	m.SavedConfiguration = &sc
	m.SyncDB.Database = b.database
	m.SyncDB.Fresh = true
}
