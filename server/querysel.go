package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"modernc.org/sqlite/vfs"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/server/history"
)

// queryPages runs query read-only against the database as of rev and returns
// the pages (1-based) SQLite read to answer it: page 1, the schema pages and
// every B-tree page on the query's paths. A partial client that bootstraps
// with these pages can answer the same query without fetching anything.
//
// The query runs on a private read-only VFS whose only file is the database
// image at rev, assembled from the history page by page; every read of that
// file is recorded. A fresh connection has an empty page cache, so each page
// it needs is read exactly once.
// rd is the pull's own history read view.
func (d *database) queryPages(ctx context.Context, rd history.View, rev history.Revision, query string, timeout time.Duration) (*roaring.Bitmap, error) {
	img := &revisionImage{rd: rd, seq: rev.Seq, size: int64(rev.DBSize) * history.PageSize, read: roaring.New()}
	name, fsys, err := vfs.New(img)
	if err != nil {
		return nil, fmt.Errorf("register query VFS: %w", err)
	}
	defer fsys.Close()
	db, err := sql.Open("sqlite", sqlitex.DSN{Path: imageName, Mode: "ro", Pragmas: []string{"query_only(1)"}, VFS: name}.String())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	err = sqlitex.Raw(ctx, conn, func(c *sqlitex.Conn) error {
		sb, err := newSandbox(c, true, d.opts.maxValueBytes)
		if err != nil {
			return err
		}
		defer c.SetAuthorizer(nil)
		return runSelector(c, sb, query)
	})
	if err != nil {
		return nil, err
	}
	if img.err != nil {
		return nil, img.err
	}
	img.read.Add(1)
	return img.read, nil
}

// ErrSelector reports a query selector that is not exactly one read-only
// SELECT.
var ErrSelector = errors.New("the query selector must be exactly one SELECT statement")

// runSelector runs query, which must be exactly one read-only SELECT, to
// its end, discarding its rows.
func runSelector(c *sqlitex.Conn, sb *sandbox, query string) error {
	sb.refused = ""
	st, tail, err := c.Prepare(query)
	if err != nil {
		return sb.refusal(err)
	}
	if st == nil {
		return fmt.Errorf("%w: it holds no statement", ErrSelector)
	}
	defer st.Close()
	if strings.TrimSpace(tail) != "" {
		more, _, err := c.Prepare(tail)
		if err != nil {
			return fmt.Errorf("%w: after the first statement: %w", ErrSelector, sb.refusal(err))
		}
		if more != nil {
			more.Close()
			return fmt.Errorf("%w: it holds more than one", ErrSelector)
		}
	}
	if !st.Readonly() || sb.selects == 0 {
		return fmt.Errorf("%w: %q is not one", ErrSelector, st.SQL())
	}
	for {
		row, err := st.Step()
		if err != nil {
			return sb.refusal(err)
		}
		if !row {
			return nil
		}
	}
}

const imageName = "db"

// revisionImage is an fs.FS holding one file: the database at one revision.
type revisionImage struct {
	rd   history.View
	seq  int64
	size int64

	mu   sync.Mutex
	read *roaring.Bitmap
	err  error
	page []byte
}

func (im *revisionImage) Open(name string) (fs.File, error) {
	if name != imageName {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &imageFile{im: im}, nil
}

type imageFile struct {
	im  *revisionImage
	off int64
}

func (f *imageFile) Stat() (fs.FileInfo, error) { return imageInfo{size: f.im.size}, nil }
func (f *imageFile) Close() error               { return nil }

func (f *imageFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		f.off = off
	case io.SeekCurrent:
		f.off += off
	case io.SeekEnd:
		f.off = f.im.size + off
	}
	if f.off < 0 {
		return 0, errors.New("negative offset")
	}
	return f.off, nil
}

func (f *imageFile) Read(p []byte) (int, error) {
	im := f.im
	if f.off >= im.size {
		return 0, io.EOF
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	n := 0
	for n < len(p) && f.off < im.size {
		pgno := uint32(f.off/history.PageSize) + 1
		var err error
		im.page, err = im.rd.PageAt(im.page[:0], pgno, im.seq)
		if err != nil {
			im.err = err
			return n, err
		}
		im.read.Add(pgno)
		if pgno == 1 {
			// The served file is WAL-mode; present it as a rollback-journal
			// file so SQLite reads it directly, with no WAL or shm.
			im.page[18], im.page[19] = 1, 1
		}
		c := copy(p[n:], im.page[f.off%history.PageSize:])
		n += c
		f.off += int64(c)
	}
	return n, nil
}

type imageInfo struct{ size int64 }

func (i imageInfo) Name() string       { return imageName }
func (i imageInfo) Size() int64        { return i.size }
func (i imageInfo) Mode() fs.FileMode  { return 0o444 }
func (i imageInfo) ModTime() time.Time { return time.Time{} }
func (i imageInfo) IsDir() bool        { return false }
func (i imageInfo) Sys() any           { return nil }
