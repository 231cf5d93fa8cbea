// Package messages holds the typed messages syncdb's actors exchange. Every
// message that expects an answer embeds actors.Request[T]; the receiving
// actor answers exactly once. Callers do not send them by hand: each actor
// package has a Handle (dbactor.Handle, syncactor.Handle, metaactor.Handle,
// netactor.Handle) with one method per message, which builds the message
// and asks the actor with it.
//
// Ownership, by actor:
//
//	metaactor  the <db>-info file             GetMeta, UpdateMeta
//	netactor   the HTTP client and counters   PullUpdates, Pipeline, NetStats
//	dbactor    the writer connection and the  OpenDB, Tx, PendingChanges,
//	           database's files               Download, ApplyPull, Checkpoint, ...
//	syncactor  the sync workflows             Pull, Push, Bootstrap, ...
//	pageactor  a partial replica's pages      no messages: methods of its shared
//	                                          Pages object (LazyPages; see pageactor)
//
// Call order: an actor asks only actors below it in
//
//	facade → syncactor → dbactor → pageactor → netactor, metaactor
//
// (netactor and metaactor ask nobody). Asking upward, for example metaactor
// asking dbactor while dbactor waits on metaactor, would deadlock. Each
// actor has its level (actors.Level) from its Spawn, and stamps the handles
// it is given with it; in a build with the invariants tag an Ask against
// the order panics (actors.CallOrderError). docs/ARCHITECTURE.md §2 lists
// every edge. Local writes (DB.Exec) reach dbactor without a message,
// through dbactor.Writer (actors.Enter).
//
// Closures: a few messages carry a function the receiver runs, where the
// work must run inside the receiver on data it owns but its shape is the
// sender's: Tx.Fn (the caller's transaction, on the writer connection),
// UpdateMeta.Fn (a read-modify-write of the metadata, atomic against every
// other update), and PullUpdates.OnHeader/OnPage (the response streamed
// into the sender's files, never held whole in memory). Each runs only
// while the sender waits in its Ask, so the sender's state it touches has
// one user at a time. docs/ARCHITECTURE.md §7 item 4 says why each stays.
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package messages

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// ---- metaactor

// GetMeta returns a copy of the current metadata (nil if there is none yet).
type GetMeta struct {
	actors.Request[*Meta]
}

// UpdateMeta applies Fn to a copy of the metadata (a fresh Meta if there is
// none), writes the result durably (temp file, fsync, rename, fsync of the
// directory) and makes it current. If Fn fails, nothing changes. The reply
// is a copy of the new metadata.
type UpdateMeta struct {
	actors.Request[*Meta]
	Fn func(*Meta) error
	// Defer makes the update current without writing -info: the caller
	// holds a durable record of it elsewhere (a pull's T2 records the new
	// base in the database) and recovers it from there after a crash. The
	// next update that writes carries it to the file.
	Defer bool
}

// ---- netactor

// PullUpdates sends one POST /pull-updates. A request for a few pages
// names them in Keep and gets them back in the reply (PullInfo.Kept); a
// download that may be as large as the database streams the response
// instead: OnHeader once, then OnPage for each page (pgno is 1-based; data
// is valid only during the call), both on a netactor goroutine while the
// sender waits in its Ask. Idempotent requests are retried on transient
// failures, but only before the header arrived (and OnHeader was called).
type PullUpdates struct {
	actors.Request[PullInfo]
	Req      *syncpb.PullUpdatesReqProtoBody
	OnHeader func(*syncpb.PullUpdatesRespProtoBody) error
	OnPage   func(pgno uint32, data []byte) error
	// Keep names the pages (0-based ids, as selectors do) whose copies
	// the reply carries in PullInfo.Kept; a page it does not name is
	// dropped and reported in PullInfo.Unasked.
	Keep *roaring.Bitmap
	// RetryUntil, if set, ends retries at this time of the actor clock
	// (a workflow's budget), or sooner by the retry policy.
	RetryUntil time.Time
}

// PullInfo summarizes a finished pull stream.
type PullInfo struct {
	Header   *syncpb.PullUpdatesRespProtoBody
	Pages    int
	Bytes    int64  // response body bytes
	Database string // the database's identity, if the server names it (syncdb serve does)
	// With PullUpdates.Keep: the kept pages by page number (1-based), and
	// the first page received that Keep does not name (0 if none).
	Kept    map[uint32][]byte
	Unasked uint32
}

// Pipeline sends one POST /v2/pipeline. Only a Retryable request (one that
// has no effect if it runs twice, e.g. a read) is retried on transient
// failures.
type Pipeline struct {
	actors.Request[*hrana.PipelineRespBody]
	Body       hrana.PipelineReqBody
	Retryable  bool
	RetryUntil time.Time // see PullUpdates
}

// NetStats returns the byte counters.
type NetStats struct {
	actors.Request[NetCounters]
}

// NetCounters counts request and response body bytes over all requests.
type NetCounters struct {
	SentBytes, ReceivedBytes int64
}

// ---- dbactor

// OpenDB opens the database (after bootstrap, if any), finishes or undoes an
// interrupted pull or checkpoint, and checks for external modification.
type OpenDB struct {
	actors.Request[struct{}]
	// Pages is the presence state of a partial replica (a
	// *pageactor.Pages; nil for a full replica).
	Pages LazyPages
	VFS   string // the SQLite VFS to open the database with ("" = the configured one)
}

// LazyPages is what the database actor needs of a partial replica's page
// actor.
type LazyPages interface {
	Present(pgno uint32) bool
	Ensure(ctx context.Context, pgno uint32) error
	Image(ctx context.Context, pgno uint32) ([]byte, error)
	MarkPresent(pages []uint32) error
	Repin(rev string)
	ZeroFill(pages *roaring.Bitmap)
	Counts() (present, total int64)
}

// Tx runs Fn inside one local write transaction on the writer connection;
// it commits if Fn returns nil.
type Tx struct {
	actors.Request[struct{}]
	Fn func(WriteConn) error
}

// WriteConn is what a Tx function may do. Each call's ctx bounds that
// statement only.
type WriteConn interface {
	Exec(ctx context.Context, sql string, args ...any) (sql.Result, error)
	Query(ctx context.Context, sql string, args ...any) (*sql.Rows, error)
}

// PendingChanges reads the local changes with change id > After, in order,
// for a push: whole local transactions, stopping at the first transaction
// boundary after Limit changes. With Unpushed, After is ignored: the read
// starts after the last change a push recorded (RecordPush). Changes read
// without Peek are for a push to send: they are made durable first, and
// with RecordSent (the server showed no push chain row) recorded durably
// as sent (see dbactor's pushed.go).
type PendingChanges struct {
	actors.Request[Pending]
	After      int64
	Limit      int  // 0 = all
	Peek       bool // just the first change, to see whether there is any
	Unpushed   bool
	RecordSent bool
}

// RecordPush records that the server has the changes of pull generation
// PullGen up to UpTo (a push batch committed there, or the server's mark
// says so), at unix time Time, and drops those changes from the change log
// so that their space is reused (changes of local-only tables stay: a pull
// replays them). One local transaction does both: it is the push's only
// durable write (-info is not rewritten).
type RecordPush struct {
	actors.Request[struct{}]
	PullGen, UpTo, Time int64
}

// Pending is a slice of the local change log.
type Pending struct {
	PullGen int64 // the local pull generation the changes belong to
	Changes []change.Change
	More    bool // Limit cut the list
	// Recorded (with Unpushed): a push of this pull generation and client
	// id is recorded, so no change after it means nothing to push.
	Recorded bool
}

// Download opens a pull's download, empty, and hands out the sink its
// response is streamed into. The database actor owns the file behind it
// (<db>-changes): ApplyPull closes, applies and removes it; DropDownload
// (a download that failed) closes and removes it; so do the next Download
// (it replaces an earlier one), the actor's open and its stop. A sink the
// actor closed refuses writes.
type Download struct {
	actors.Request[PageSink]
}

// MoveBootstrap moves a downloaded bootstrap (PATH-bootstrap) into place
// as PATH, and makes the rename durable, if there is one: at the end of a
// bootstrap, once its metadata is written, and at each Open (a crash in
// between). PATH is the database actor's file, so it is the one that
// renames it; it needs no open database.
type MoveBootstrap struct {
	actors.Request[struct{}]
}

// BeginBootstrap creates a bootstrap's download (PATH-bootstrap), empty
// (O_TRUNC), and hands out the sink the response is streamed into. The
// database actor owns the file, as it owns PATH (it is spawned, not yet
// opened, while a bootstrap runs, and an opened one refuses); the syncing
// side only decides. Each attempt of a bootstrap begins again: the sink
// of an earlier one still open is closed first (its file too) and refuses
// writes from then on.
// FinishDownload ends a sink, and so does the actor's stop.
type BeginBootstrap struct {
	actors.Request[BootstrapSink]
	// Partial: pages are written at their offsets into a file Cut to the
	// header's size. Otherwise (a full bootstrap) they come in page order
	// and are written as runs of up to 1 MiB by a goroutine of the sink's
	// own, overlapping the network's reads with the disk's writes, and
	// hashed as they are written (the stamp needs no read back).
	Partial bool
}

// BootstrapSink takes a bootstrap's download. Its methods may run on any
// goroutine (a netactor callback: PullUpdates.OnHeader, OnPage), one at a
// time, while the database actor goes on: no message per page. Once the
// actor closed it (FinishDownload, the next BeginBootstrap, its stop),
// every method but Hashed fails with dbactor.ErrBootstrapClosed and
// touches nothing.
type BootstrapSink interface {
	// Cut cuts the file to size bytes, the pages added before it written
	// first (a partial bootstrap's header: holes where no page comes).
	Cut(size int64) error
	// Add writes page pgno (a full sink: once its run is full, or at Flush).
	Add(pgno uint32, page []byte) error
	// Flush returns once every page added is written, with the first
	// write error.
	Flush() error
	// Hashed reports whether the pages written are exactly pages 1 to
	// pages, each once and in order (a full sink), so that the hash of
	// the runs is the file's: FinishDownload's DownloadStamp may then
	// take it (Hashed) instead of reading the file back.
	Hashed(pages uint64) bool
}

// DownloadOp is one step of FinishDownload on the download's file.
type DownloadOp int

const (
	// DownloadInvalid is the zero value: refused, so that a step left
	// zero by mistake does not cut the file to 0 bytes.
	DownloadInvalid   DownloadOp = iota
	DownloadTruncate             // cut the file to Size bytes
	DownloadSync                 // fsync the file
	DownloadClose                // close the file
	DownloadSyncClose            // fsync and close the file, both tried
	DownloadRefuse               // fail with Err (nil: refused as invalid)
	DownloadStamp                // the file's stamp: the runs' hash if Hashed (and they are the file's pages), else the file read back
)

// DownloadStep is one step of FinishDownload.
type DownloadStep struct {
	Op     DownloadOp
	Size   int64 // DownloadTruncate
	Hashed bool  // DownloadStamp: BootstrapSink.Hashed said so
	Err    error // DownloadRefuse
}

// FinishDownload ends a bootstrap's download (a sink of BeginBootstrap
// still open): the sink refuses writes from then on (the run being
// written is written; pages added since the last Flush are dropped), then
// Steps run on its file in order; the first
// that fails ends them with its error. The file is closed in the end in
// any case, so an empty Steps only closes it (a bootstrap that failed).
// It answers DownloadStamp's stamp (nil without one). The steps after the
// metadata (the rename) are MoveBootstrap's.
type FinishDownload struct {
	actors.Request[*FileStamp]
	Sink  BootstrapSink
	Steps []DownloadStep
}

// PageSink takes a streamed download page by page. Its methods may run on
// any goroutine (a netactor callback, PullUpdates.OnPage), one at a time,
// while the database actor goes on with other messages: the sink shares
// none of the actor's state.
//
// A sink takes one response: each attempt of a pull (syncactor's retry)
// asks for a Download of its own, and netactor retries a request only
// before its header, that is before any page; so there is no reset.
type PageSink interface {
	Add(pgno uint32, page []byte) error
	Pages() int // distinct pages so far
}

// DropDownload closes and removes a download that will not be applied (its
// request failed); a sink already applied or replaced is left alone.
type DropDownload struct {
	actors.Request[struct{}]
	Download PageSink
}

// ApplyPull applies a downloaded pull (the pages in Download, a sink the
// same actor handed out) on top of the synced base and rebases the local
// changes over it, atomically for readers and crash-safely.
type ApplyPull struct {
	actors.Request[PullResult]
	Revision string
	DBSize   uint32
	Download PageSink
	Tables   bool // report the changed tables
}

// Checkpoint moves the WAL into the database file, keeping the synced base
// reconstructible.
type Checkpoint struct {
	actors.Request[struct{}]
	// Closing: the replica is closing; nothing to do if the WAL is empty.
	Closing bool
}

// DBStats returns local statistics.
type DBStats struct {
	actors.Request[LocalStats]
}

// LocalStats are the database side of syncdb.Stats.
type LocalStats struct {
	CDCOperations int64
	MainWALSize   int64
	RevertWALSize int64
	PagesPresent  int64 // partial replicas
	PagesTotal    int64
	Conflicts     int64  // unresolved
	Detached      string // modified outside syncdb: what the error says ("" if not)
	// LastPushUnixTime is the last push's time as the database records it
	// (0: none recorded there; -info's may be later or earlier).
	LastPushUnixTime int64
}

// ---- syncactor

// Bootstrap downloads the remote database into a new local replica and
// writes its first metadata.
type Bootstrap struct {
	actors.Request[struct{}]
	Partial *PartialBootstrap // nil: the whole database
}

// PartialBootstrap asks for part of the database: the first PrefixBytes
// (at least page 1), or the pages a query reads on the server.
type PartialBootstrap struct {
	PrefixBytes int64
	Query       string
	SegmentSize int
	Prefetch    bool
}

// Pull fetches and applies the server's changes; the reply says whether
// anything changed.
type Pull struct {
	actors.Request[PullResult]
	// LongPoll, if positive, replaces the configured long poll.
	LongPoll time.Duration
	// Wake, if set, ends a pull still waiting for the server's answer (a
	// long poll): a value received from it makes the pull fail at once
	// with ErrWoken, having applied nothing. Once the answer has begun the
	// pull goes on, and the value is put back. Give it a capacity of 1.
	Wake chan struct{}
	// Tables asks for the tables the pull changed.
	Tables bool
}

// PullResult is what a pull did.
type PullResult struct {
	Changed  bool     // the database changed
	Revision string   // the server revision the replica is at now
	Tables   []string // with Pull.Tables: the tables whose rows or schema changed, sorted
}

// ErrWoken ends a pull that Pull.Wake interrupted.
var ErrWoken = errors.New("pull interrupted before the server answered")

// Push sends the local changes.
type Push struct {
	actors.Request[PushResult]
	// Tables asks for the tables a pull changed (see Pull and PushResult).
	Tables bool
}

// PushResult is what a push did.
type PushResult struct {
	Pushed int        // changes the server took
	Pulled PullResult // the pull a conflict made the push run first, if any
}

// ---- conflicts (dbactor)

// Conflict is a recorded conflict: a local change that met a remote change
// it never saw (see dbactor's package documentation).
type Conflict struct {
	ID            int64
	Kind          string // "insert-insert", "update-deleted", "delete-updated", "constraint"
	Table         string
	Key           []any          // the row's primary key, as the local change named it
	Local, Remote map[string]any // the row as the local changes leave it and as the server has it (nil: no row)
	Resolved      string         // "" (waiting), "local", "remote" or "rekeyed"
	NewKey        []any          // rekeyed: the key the local row moved to
	Error         string         // constraint: SQLite's message
	Revision      string         // the server revision it was seen at
	Base          string         // the replica's synced revision before that
	Time          int64          // when it was recorded (unix seconds)
	Changes       int            // local changes it holds (the conflicting one and those that depended on it)
}

// ListConflicts returns the recorded conflicts, oldest first: the
// unresolved ones, or with All every one.
type ListConflicts struct {
	actors.Request[[]Conflict]
	All bool
}

// ResolveConflict resolves an unresolved conflict by keeping the local
// ("local") or the remote ("remote") side, in one local transaction whose
// changes the next push sends.
type ResolveConflict struct {
	actors.Request[struct{}]
	ID   int64
	Keep string
}

// ---- copies (dbactor)

// Chain returns the push chain value of the current pull generation up
// to change id UpTo (see dbactor's chain.go).
type Chain struct {
	actors.Request[ChainInfo]
	UpTo int64
}

// ChainInfo is a push chain value; OK is false if the replica cannot
// compute it (it does not hold every change up to there).
type ChainInfo struct {
	OK    bool
	Value int64
}

// MarkCloned records durably that the replica is a copy of another one
// using its client id, and why.
type MarkCloned struct {
	actors.Request[struct{}]
	Why string
}

// ReplicaStatus returns what stops or qualifies a sync: the conflicts
// that wait, and why the replica is a copy, if it is.
type ReplicaStatus struct {
	actors.Request[Status]
}

// Status is the answer to ReplicaStatus.
type Status struct {
	Conflicts []Conflict // waiting
	Cloned    string     // why the replica is a copy of another one ("" if not)
}

// Mark is a row of turso_sync_last_change_id: a pull generation and a
// change id (or, for a push chain row, the chain value).
type Mark struct{ Gen, ID int64 }

// CheckMarks says whether the server's mark for this client, and its push
// chain value (nil if absent), can be this replica's own; the answer is
// why not, or "".
type CheckMarks struct {
	actors.Request[string]
	Mark  Mark
	Chain *Mark
}

// Fork gives the replica a new client id (see dbactor's home.go): with
// Inherit, the changes it has not pushed yet may have been made before a
// copy and are sorted out with the old id first; without, every change
// after the last one known to be pushed is the replica's own.
type Fork struct {
	actors.Request[string] // the new client id
	Why                    string
	Inherit                bool
}

// SaveLocal saves the replica's local state (its change log, conflicts,
// push chain and generation) as a replay journal at Path, also when the
// replica was modified outside syncdb: what a rebuild carries over.
type SaveLocal struct {
	actors.Request[int] // the number of changes saved
	Path                string
}

// ImportLocal replays the journal at Path (written by SaveLocal on the
// old replica) on top of this freshly downloaded one, as a pull's replay
// does: the changes the server has are dropped, the others applied and
// captured, conflicts checked and recorded, in one transaction.
type ImportLocal struct {
	actors.Request[struct{}]
	Path string
}

// RevisionKept asks the server whether it still serves the replica's
// synced revision (a replica whose revision is gone must be rebuilt).
type RevisionKept struct {
	actors.Request[bool]
}

// CheckRemote checks that the configured URL serves the database the
// replica came from (before Open saves a new URL): its identity if both
// sides know it, else its serving the replica's revision with the same
// page 1. Old is the URL the replica came from, for the error.
type CheckRemote struct {
	actors.Request[struct{}]
	Old string
}

// BasePage returns page Pgno of the synced base.
type BasePage struct {
	actors.Request[[]byte]
	Pgno uint32
}
