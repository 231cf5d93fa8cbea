package dbactor

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/syncdb/syncdb/messages"
)

// The database file's stamp
//
// Another program that checkpoints into the database file (sqlite3 without
// -readonly checkpoints on close) overwrites the synced base: syncdb must
// notice. Size and time are a cheap first look, but a touch, a copy or a
// backup restored change the time without changing a byte. So the stamp
// also holds a content hash: the XOR of one hash per page (of its number
// and bytes), which a checkpoint updates for the pages it writes without
// reading the others. When size or time differ, the whole file is hashed;
// the same content only refreshes the stamp.

// pageHash is one page's share of the content hash.
func pageHash(pgno uint32, page []byte) uint64 {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint32(nil, pgno))
	h.Write(page)
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// RunHash is the share of the content hash of the pages in run, the first
// of them numbered first: what ContentHash adds up for them.
// For syncdb's own packages; no compatibility promise.
func RunHash(first uint32, run []byte) uint64 {
	var h uint64
	for off := 0; off+PageSize <= len(run); off += PageSize {
		h ^= pageHash(first, run[off:off+PageSize])
		first++
	}
	return h
}

// ContentHash hashes the pages of the database file at path.
func ContentHash(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var h uint64
	buf := make([]byte, 256*PageSize)
	for pg := uint32(1); ; {
		n, err := io.ReadFull(f, buf)
		for off := 0; off+PageSize <= n; off += PageSize {
			h ^= pageHash(pg, buf[off:off+PageSize])
			pg++
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return h, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// pagesHash is the XOR of the hashes of pages (those at most upTo, which
// the file holds).
func pagesHash(f *os.File, pages map[uint32]bool, upTo uint32) (uint64, error) {
	var h uint64
	buf := make([]byte, PageSize)
	for pg := range pages {
		if pg == 0 || pg > upTo {
			continue
		}
		if _, err := f.ReadAt(buf, int64(pg-1)*PageSize); err != nil {
			return 0, fmt.Errorf("read page %d: %w", pg, err)
		}
		h ^= pageHash(pg, buf)
	}
	return h, nil
}

// StampOf stamps the database file at path (its size, time and content).
// For syncdb's own packages; no compatibility promise.
func StampOf(path string) (*messages.FileStamp, error) {
	h, err := ContentHash(path)
	if err != nil {
		return nil, err
	}
	return StampWithHash(path, h)
}

// StampWithHash stamps the database file at path with its content hash
// as the caller computed it, from what it wrote (RunHash).
// For syncdb's own packages; no compatibility promise.
func StampWithHash(path string, hash uint64) (*messages.FileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &messages.FileStamp{Size: st.Size(), MtimeNS: st.ModTime().UnixNano(), Hash: hash}, nil
}

// checkStamp compares the database file with its stamp: nil if it is
// the same content; restamped is the stamp to record when only its time
// changed.
func checkStamp(path string, stamp *messages.FileStamp) (restamped *messages.FileStamp, err error) {
	cur, err := fileStamp(path)
	if err != nil {
		return nil, err
	}
	if cur.Size == stamp.Size && cur.MtimeNS == stamp.MtimeNS {
		return nil, nil
	}
	if stamp.Hash != 0 && cur.Size == stamp.Size {
		h, err := ContentHash(path)
		if err != nil {
			return nil, err
		}
		if h == stamp.Hash {
			cur.Hash = h
			return cur, nil // touched or copied, not changed
		}
	}
	what := "content"
	if cur.Size != stamp.Size {
		what = fmt.Sprintf("size (%d bytes, syncdb left %d) and content", cur.Size, stamp.Size)
	}
	return nil, externalModification("the database file's %s changed since syncdb last wrote it: another program wrote to it "+
		"or checkpointed the WAL into it (sqlite3 without -readonly does when it closes)", what)
}
