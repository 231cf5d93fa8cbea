package dbactor

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// walIndexAfter extends the previous base's index (a pull's new base is a
// later position of the same WAL generation) to exactly the index a scan
// from the start builds; it scans from the start when the previous base is
// of another generation, a later position or copied; and a previous commit
// frame that no longer carries its recorded checksum is an external
// modification, not a shortcut. On a real WAL of two generations.
func TestWALIndexAfter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	exec := func(q string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("PRAGMA journal_mode = WAL")
	exec("PRAGMA wal_autocheckpoint = 0")
	exec("CREATE TABLE t(v)")
	f, err := os.Open(filepath.Join(dir, "x.db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	end := func() walfile.Position {
		t.Helper()
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		p, err := walfile.Scan(f, st.Size(), walfile.Position{}, func([]walfile.Frame) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var ends []walfile.Position
	for i := range 6 {
		exec("INSERT INTO t VALUES(randomblob(3000))")
		if i%2 == 0 {
			exec("UPDATE t SET v = randomblob(100) WHERE rowid = 1") // pages written again
		}
		ends = append(ends, end())
	}
	full := func(w walfile.Position) *walfile.Index {
		t.Helper()
		idx, err := walIndex(f, messages.Base{WAL: w})
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	reader := func(w walfile.Position) *baseReader {
		return &baseReader{base: messages.Base{WAL: w}, wal: f, index: full(w)}
	}
	same := func(what string, got, want *walfile.Index, upTo int) {
		t.Helper()
		if got.Len() != want.Len() || got.Last() != want.Last() {
			t.Fatalf("%s: %d frames up to %d, want %d up to %d", what, got.Len(), got.Last(), want.Len(), want.Last())
		}
		for pg := uint32(1); pg <= 20; pg++ {
			g, gok := got.Lookup(pg, upTo)
			w, wok := want.Lookup(pg, upTo)
			if g != w || gok != wok {
				t.Fatalf("%s: page %d: %+v %v, want %+v %v", what, pg, g, gok, w, wok)
			}
		}
	}
	last := ends[len(ends)-1]
	for i, w := range ends {
		got, err := walIndexAfter(f, messages.Base{WAL: last}, reader(w))
		if err != nil {
			t.Fatalf("from end %d: %v", i, err)
		}
		same("extended", got, full(last), last.Frame)
	}
	// The same position again, with commits after it (a reload of the
	// base: an open's recovery, a checkpoint that copied nothing).
	for i, w := range ends[:len(ends)-1] {
		got, err := walIndexAfter(f, messages.Base{WAL: w}, reader(w))
		if err != nil {
			t.Fatalf("the same position, end %d: %v", i, err)
		}
		same("the same position", got, full(w), w.Frame)
	}
	// A later previous position, a copied one: the scan from the start.
	got, err := walIndexAfter(f, messages.Base{WAL: ends[2]}, reader(last))
	if err != nil {
		t.Fatal(err)
	}
	same("previous base later", got, full(ends[2]), ends[2].Frame)
	copied := reader(ends[1])
	copied.base.Copied = true
	if got, err = walIndexAfter(f, messages.Base{WAL: last}, copied); err != nil {
		t.Fatal(err)
	}
	same("previous base copied", got, full(last), last.Frame)
	// A forged previous commit frame.
	forged := reader(ends[2])
	forged.base.WAL.Cksum1++
	if _, err := walIndexAfter(f, messages.Base{WAL: last}, forged); !errors.Is(err, ErrExternalModification) {
		t.Fatalf("forged previous position: %v, want ErrExternalModification", err)
	}

	// Another generation: the previous base's salts are not the WAL's.
	// It is made longer than the previous one, so that only the salts tell.
	exec("PRAGMA wal_checkpoint(RESTART)")
	now := end()
	for now.Frame <= last.Frame {
		exec("INSERT INTO t VALUES(randomblob(3000))")
		now = end()
	}
	if now.Salt1 == last.Salt1 {
		t.Fatalf("the WAL did not restart: %+v after %+v", now, last)
	}
	old := &baseReader{base: messages.Base{WAL: last}, wal: f, index: walfile.BuildIndex(nil)}
	for range last.Frame {
		old.index.Add(walfile.Frame{Index: old.index.Last() + 1, Pgno: 1})
	}
	if got, err = walIndexAfter(f, messages.Base{WAL: now}, old); err != nil {
		t.Fatal(err)
	}
	same("another generation", got, full(now), now.Frame)
}

// Pinned: walIndexAfter trusts the frames up to the previous base's
// commit frame, checked when that base was loaded. A change to one of
// them afterwards that leaves the commit frame's header alone (bit rot, a
// tool editing a page in the WAL) is not seen by a pull's reload; the scan
// from the start (a checkpoint's checkBaseFrames, an open, a recovery)
// still reports it. This test pins
// that narrower window (docs/ARCHITECTURE.md §5): if walIndexAfter starts
// catching it, update the docs and this test.
func TestWALIndexAfterTrustsEarlierFrames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"PRAGMA journal_mode = WAL", "PRAGMA wal_autocheckpoint = 0", "CREATE TABLE t(v)",
		"INSERT INTO t VALUES(randomblob(3000))",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	walPath := filepath.Join(dir, "x.db-wal")
	f, err := os.Open(walPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	end := func() walfile.Position {
		t.Helper()
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		p, err := walfile.Scan(f, st.Size(), walfile.Position{}, func([]walfile.Frame) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	prevPos := end()
	idx, err := walIndex(f, messages.Base{WAL: prevPos})
	if err != nil {
		t.Fatal(err)
	}
	prev := &baseReader{base: messages.Base{WAL: prevPos}, wal: f, index: idx}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES(randomblob(3000))"); err != nil {
		t.Fatal(err)
	}
	next := end()
	if prevPos.Frame < 2 || next.Frame <= prevPos.Frame {
		t.Fatalf("positions %+v then %+v: want frame 1 before the previous commit frame", prevPos, next)
	}

	// Flip one byte of frame 1's page (header 32 bytes, frame header 24).
	w, err := os.OpenFile(walPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	const off = walfile.HeaderSize + walfile.FrameHeaderSize + 100
	if _, err := w.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := w.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := walIndex(f, messages.Base{WAL: next}); !errors.Is(err, ErrExternalModification) {
		t.Fatalf("walIndex (from the start): %v, want ErrExternalModification", err)
	}
	if got, err := walIndexAfter(f, messages.Base{WAL: next}, prev); err != nil || got == nil || got.Last() != next.Frame {
		t.Fatalf("walIndexAfter (extended): %v, %v; pinned: no error, the index up to frame %d", got, err, next.Frame)
	}
}
