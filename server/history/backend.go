package history

import (
	"context"
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
)

// Backend is the page history of one database, as the server uses it. Store
// (a SQLite file next to the database) implements it for a single node;
// server/pgstore implements it over PostgreSQL, shared by every node.
//
// Latest, Horizon, ID, Initialized and Cursor answer from memory. A shared
// backend may lag behind the store until it learns of a newer revision;
// Check of a newer revision than Latest re-reads the store before it answers
// ErrFuture, so a revision one node handed out is valid on every node.
type Backend interface {
	// Initialized reports whether the base revision has been recorded.
	Initialized() bool
	// ID is the history's identity; revisions are "ID-seq".
	ID() string
	Latest() Revision
	Horizon() int64
	// Cursor is the WAL position recorded with the latest revision by this
	// node (node-local for a shared backend).
	Cursor() Cursor
	// Check validates that seq can be served and returns its revision.
	Check(ctx context.Context, seq int64) (Revision, error)
	// Refresh brings Latest up to date with a shared store, so that a
	// revision recorded on any node before the call is seen (a file
	// history is always up to date).
	Refresh(ctx context.Context) error

	// Init records the base revision (seq 1).
	Init(ctx context.Context, id string, base Commit, cur Cursor, unixMS int64) error
	// Append records commits as the next revisions after Latest, in one
	// atomic step, if f is still the current fence (ErrFenced otherwise).
	Append(ctx context.Context, f Fence, commits []Commit, cur Cursor, unixMS int64) (Revision, error)
	// Sync makes every appended revision durable.
	Sync(ctx context.Context) error

	// Reader opens a consistent read view. Close it when done.
	Reader(ctx context.Context) (View, error)

	// Compact moves the horizon to h and deletes what no revision >= h needs.
	Compact(ctx context.Context, h int64) (deleted int64, err error)
	// SeqAtOrBefore returns the newest revision committed at or before
	// unixMS, or 0.
	SeqAtOrBefore(ctx context.Context, unixMS int64) (int64, error)

	Close() error
}

// View reads pages of any retained revision.
type View interface {
	// PageAt appends the image of pgno as of seq to dst (zeros for a page
	// never written).
	PageAt(dst []byte, pgno uint32, seq int64) ([]byte, error)
	// StoredPageAt appends the image as stored: a zstd frame (compressed
	// true) or the raw page.
	StoredPageAt(dst []byte, pgno uint32, seq int64) ([]byte, bool, error)
	// ChangedBetween returns the pages written by revisions in (from, to].
	ChangedBetween(ctx context.Context, from, to int64) (*roaring.Bitmap, error)
	// ScanPages calls fn, in increasing page order, with the image of every
	// page in pages as of seq, as stored: a zstd frame (compressed true) or
	// the raw page; zeros for a page never written. It reads many pages per
	// round trip to the store. data is only valid during fn, and fn must
	// not use the view.
	ScanPages(ctx context.Context, seq int64, pages *roaring.Bitmap, fn func(pgno uint32, data []byte, compressed bool) error) error
	Close() error
}

// AllPages is the set of pages 1..size.
func AllPages(size uint32) *roaring.Bitmap {
	bm := roaring.New()
	bm.AddRange(1, uint64(size)+1)
	return bm
}

var decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))

// DecodePage appends the page image a stored zstd frame holds to dst.
func DecodePage(dst, frame []byte) ([]byte, error) {
	out, err := decoder.DecodeAll(frame, dst)
	if err != nil {
		return dst, fmt.Errorf("decode page: %w", err)
	}
	if len(out)-len(dst) != PageSize {
		return dst, fmt.Errorf("a stored page decodes to %d bytes", len(out)-len(dst))
	}
	return out, nil
}

// Fence is the writer's fencing token: a shared backend records an append
// only while Epoch is the database's current writer epoch. The zero Fence is
// a single node's, which a file backend ignores.
type Fence struct {
	Epoch int64
}

// ErrFenced reports an append refused because another writer took over the
// database: nothing was recorded.
var ErrFenced = errors.New("history: fenced: another node is the writer now")

// ErrExists reports an Init of a shared history that another node created
// first; the backend now holds that history.
var ErrExists = errors.New("history: created by another node meanwhile")

var (
	_ Backend = (*Store)(nil)
	_ View    = (*Reader)(nil)
)
