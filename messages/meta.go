package messages

import "github.com/syncdb/syncdb/internal/walfile"

// MetaVersion is the only -info format version this code reads and writes.
const MetaVersion = "v1"

// Meta is the content of <db>-info: the client's sync state. Field names
// follow Turso's sync engine where the field exists there, so that tools that
// read Turso's metadata understand ours; syncdb's own state sits under
// "syncdb".
type Meta struct {
	Version        string    `json:"version"`
	ClientUniqueID string    `json:"client_unique_id"`
	SyncedRevision *Revision `json:"synced_revision"`
	// RevertSinceWALSalt and RevertSinceWALWatermark locate the synced base
	// in the WAL: frames 1..watermark of the WAL with these salts belong to
	// the base (see Base).
	RevertSinceWALSalt      *[2]uint32 `json:"revert_since_wal_salt"`
	RevertSinceWALWatermark int        `json:"revert_since_wal_watermark"`
	LastPullUnixTime        *int64     `json:"last_pull_unix_time"`
	LastPushUnixTime        *int64     `json:"last_push_unix_time"`
	LastPushedPullGenHint   int64      `json:"last_pushed_pull_gen_hint"`
	LastPushedChangeIDHint  int64      `json:"last_pushed_change_id_hint"`
	// PartialBootstrapServerRevision is set for partial replicas: lazy page
	// loads are pinned to it.
	PartialBootstrapServerRevision *Revision    `json:"partial_bootstrap_server_revision"`
	SavedConfiguration             *SavedConfig `json:"saved_configuration"`

	SyncDB SyncDBState `json:"syncdb"`
}

// Revision is an opaque server revision, as Turso stores it.
type Revision struct {
	Type     string `json:"type"` // always "v1"
	Revision string `json:"revision"`
}

// SavedConfig is configuration that later opens reuse.
type SavedConfig struct {
	RemoteURL              *string `json:"remote_url"`
	PartialSyncPrefetch    *bool   `json:"partial_sync_prefetch"`
	PartialSyncSegmentSize *int    `json:"partial_sync_segment_size"`
}

// SyncDBState is syncdb's own part of the metadata.
type SyncDBState struct {
	// Base locates the synced base: the server's pages at SyncedRevision.
	Base Base `json:"base"`
	// Pull was set by older versions while a pull was being applied; the
	// pending pull is now recorded in the replay journal (see dbactor). A
	// file that has one is still finished or undone at Open.
	Pull *PendingPull `json:"pull,omitempty"`
	// Pulled is PendingPull.Before of the last pull this replica finished:
	// a replay journal that names it is left over, not an interrupted pull.
	Pulled *walfile.Position `json:"pulled,omitempty"`
	// Checkpointing is set while a base-preserving checkpoint runs.
	Checkpointing bool `json:"checkpointing,omitempty"`
	// DBFile fingerprints the database file after syncdb last wrote it
	// (bootstrap or checkpoint); a different file means another program
	// checkpointed into it.
	DBFile *FileStamp `json:"db_file,omitempty"`
	// CleanClose is the WAL end recorded by a clean Close; any other
	// content at the next Open was written by another program.
	CleanClose *walfile.Position `json:"clean_close,omitempty"`
	// LocalWAL is the WAL position after the first local commit of the
	// WAL's current generation (dbactor: recordLocalWAL), written once per
	// generation, once that commit is durable, before the write returns;
	// the checkpoint that copies the generation into the database file
	// clears it. An open that finds the WAL without that commit (missing,
	// another generation, the frame gone) refuses: the local commits the
	// WAL held are not in the database file (dbactor: checkLocalWAL).
	LocalWAL *walfile.Position `json:"local_wal,omitempty"`
	// Partial is the partial replica's presence bookkeeping (pageactor).
	Partial *PartialState `json:"partial,omitempty"`
	// Home is where the replica lives: its database file and machine. A
	// replica opened elsewhere is a copy (or was moved or restored) and
	// takes a new client id.
	Home *Home `json:"home,omitempty"`
	// Database is the remote database's identity, as the server names it
	// (X-Syncdb-Database; "" if it does not): a new URL must serve it.
	Database string `json:"database,omitempty"`
	// Origin is set while a copy that took a new client id has not yet
	// told the server which of the changes it inherited are its own.
	Origin *Origin `json:"origin,omitempty"`
	// Fresh is set by a bootstrap: the database is the server's as
	// downloaded, so any _syncdb_* object in it is the server's, which the
	// first open drops before it creates its own (dbactor), durably before
	// it clears Fresh. A new local database (no URL yet) is Fresh too,
	// for the durable creation: once Fresh is gone, a database without
	// _syncdb_local is one a pull's first transaction made the server's.
	Fresh bool `json:"fresh,omitempty"`
}

// Home identifies where a replica lives.
type Home struct {
	Dev     uint64 `json:"dev"`
	Inode   uint64 `json:"inode"`
	Machine string `json:"machine"`
}

// Origin is the client id a copy inherited its changes from: the changes
// of pull generation PullGen up to change id Last were made before the
// copy, under ClientID (see syncactor's settleFork).
type Origin struct {
	ClientID string `json:"client_id"`
	PullGen  int64  `json:"pull_gen"`
	Last     int64  `json:"last"`
}

// Base says where the synced base is: the database file, overlaid by the
// WAL frames up to WAL (frames 1..WAL.Frame of the WAL generation with
// WAL's salts), overlaid by the first RevertLen bytes of <db>-revert. The
// base has DBSize pages.
type Base struct {
	DBSize    uint32           `json:"db_size"`
	WAL       walfile.Position `json:"wal"`
	RevertLen int64            `json:"revert_len"`
	// Copied says that a checkpoint copied every frame up to WAL into the
	// database file: the base reads none of them (SQLite may since have
	// restarted the WAL from its start, over them). WAL still names the
	// end of that generation, so that its frames, left in the file until
	// the next write restarts it, are not taken for later local commits.
	Copied bool `json:"wal_copied,omitempty"`
	// Page1 is set when the local page 1 (up to WAL) differs from the
	// base's in its database header only: a pull's first transaction
	// writes it with a bumped schema cookie, and SQLite stamps its own
	// fields there at commit. The base image is then the local page with
	// this header put back (dbactor's baseReader).
	Page1 *Page1Header `json:"page1,omitempty"`
}

// Page1Header is the true database header (the first 100 bytes of page 1)
// of a synced base, and the CRC-32C (Castagnoli) of the whole true page, to
// check the patched image.
type Page1Header struct {
	Header []byte `json:"header"`
	CRC    uint32 `json:"crc"`
}

// PendingPull is the durable record of a pull being applied (in the
// replay journal's header).
type PendingPull struct {
	Revision string `json:"revision"`
	DBSize   uint32 `json:"db_size"`
	// Before is the WAL end before the pull's first transaction: a commit
	// after it means that transaction committed.
	Before walfile.Position `json:"before"`
	// NextRevertLen is the length of <db>-revert.next, the revert store of
	// the new base, in pulls of older versions (which saved page 1 there).
	NextRevertLen int64 `json:"next_revert_len"`
	// Page1 is the new base's Base.Page1: the true header of page 1 when
	// the pull's first transaction writes that page, else the current
	// base's. It is in the journal, fsynced with it before that
	// transaction, so that recovery needs nothing of -info's base (which
	// may be older: -info is written deferred after a pull).
	Page1 *Page1Header `json:"page1,omitempty"`
	// From is the synced revision the pull started from.
	From string `json:"from,omitempty"`
}

// FileStamp identifies a database file's content: size and time for a
// cheap look, and a content hash (see dbactor's stamp.go; 0: none).
type FileStamp struct {
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	Hash    uint64 `json:"hash,omitempty"`
}

// PartialState is a partial replica's state (see pageactor).
type PartialState struct {
	// DBSize is the database's size in pages at the bootstrap: pages up to
	// it may be missing from the file, later ones were written locally.
	DBSize      uint32 `json:"db_size"`
	SegmentSize int    `json:"segment_size"`
	Prefetch    bool   `json:"prefetch"`
	// FetchRevision is the revision missing pages are fetched at, once a
	// checkpoint re-pinned them ("": the bootstrap revision).
	FetchRevision string `json:"fetch_revision,omitempty"`
}
