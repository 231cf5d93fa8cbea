package server

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// snapshotCache keeps the whole pull response of one database's latest
// revision (a bootstrap) as a file, one per encoding (snapshotKind), written
// while the second bootstrap at that revision in that encoding streams (the
// first one only notes the revision, so that a database bootstrapped once
// per revision never pays for the copy). Later bootstraps of the same
// revision in the same encoding are a copy of that file to the socket,
// which the kernel does (sendfile), at the cost of copying a file. A
// revision's pages never change, so a file keyed by revision stays right
// until a newer revision makes it stale; maintenance then deletes it. The
// files are a cache, never synced: every one is deleted when the database
// opens and closes.
type snapshotCache struct {
	dir      string
	minBytes int64 // cache only databases at least this big; < 0: never

	mu    sync.Mutex
	kinds [snapshotKinds]snapshotEntry
}

// snapshotKind is the encoding of a cached response.
type snapshotKind int

const (
	snapshotRaw       snapshotKind = iota // raw pages
	snapshotZstd                          // raw pages in a zstd stream (Content-Encoding: zstd)
	snapshotZstdPages                     // zstd pages (history frames as stored)
	snapshotKinds
)

// suffix names the files of a kind.
func (k snapshotKind) suffix() string { return [...]string{"", ".zst", ".zpages"}[k] }

type snapshotEntry struct {
	seq  int64 // revision of the cached file; -1: none
	path string
	seen int64 // revision of the last bootstrap not cached
}

const (
	snapshotPrefix = "snapshot-"
	snapshotTemp   = ".tmp"
)

func newSnapshotCache(dir string, minBytes int64) *snapshotCache {
	c := &snapshotCache{dir: dir, minBytes: minBytes}
	for k := range c.kinds {
		c.kinds[k] = snapshotEntry{seq: -1, seen: -1}
	}
	c.removeAll()
	return c
}

// open returns the cached response of revision seq in encoding k and its
// size, or nil.
func (c *snapshotCache) open(seq int64, k snapshotKind) (*os.File, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.kinds[k]
	if e.seq != seq {
		return nil, 0
	}
	// The file may be deleted right after this: the open descriptor keeps
	// its bytes readable.
	f, err := os.Open(e.path)
	if err != nil {
		return nil, 0
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0
	}
	return f, st.Size()
}

// create starts a cache file for revision seq in encoding k of a database
// of dbBytes, or returns nil: for the first bootstrap of a revision in that
// encoding, when the database is too small to be worth it, or when the file
// cannot be made (the pull then goes on without it).
func (c *snapshotCache) create(seq, dbBytes int64, k snapshotKind) *snapshotWriter {
	if c.minBytes < 0 || dbBytes < c.minBytes {
		return nil
	}
	c.mu.Lock()
	e := &c.kinds[k]
	first := e.seen != seq
	e.seen = seq
	c.mu.Unlock()
	if first {
		return nil
	}
	f, err := os.CreateTemp(c.dir, snapshotPrefix+"*"+snapshotTemp)
	if err != nil {
		return nil
	}
	return &snapshotWriter{c: c, f: f, seq: seq, kind: k}
}

// drop deletes the cached files that are not of revision latest.
func (c *snapshotCache) drop(latest int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.kinds {
		if e := &c.kinds[k]; e.seq >= 0 && e.seq != latest {
			os.Remove(e.path)
			e.seq, e.path = -1, ""
		}
	}
}

// removeAll deletes every snapshot file in the directory, finished or not.
func (c *snapshotCache) removeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	names, _ := filepath.Glob(filepath.Join(c.dir, snapshotPrefix+"*"))
	for _, n := range names {
		os.Remove(n)
	}
	for k := range c.kinds {
		c.kinds[k].seq, c.kinds[k].path = -1, ""
	}
}

// snapshotWriter receives a copy of the response as it streams.
type snapshotWriter struct {
	c    *snapshotCache
	f    *os.File
	seq  int64
	kind snapshotKind
}

var _ io.Writer = (*snapshotWriter)(nil)

func (w *snapshotWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// abort deletes the unfinished file.
func (w *snapshotWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// commit makes the file the cached response of its revision, unless a
// newer revision's is cached already; it replaces an older one.
func (w *snapshotWriter) commit() error {
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("snapshot cache: %w", err)
	}
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.kinds[w.kind]
	if e.seq >= w.seq {
		os.Remove(w.f.Name())
		return nil
	}
	path := filepath.Join(c.dir, snapshotPrefix+strconv.FormatInt(w.seq, 10)+w.kind.suffix())
	if err := os.Rename(w.f.Name(), path); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("snapshot cache: %w", err)
	}
	if e.seq >= 0 {
		os.Remove(e.path)
	}
	e.seq, e.path = w.seq, path
	return nil
}
