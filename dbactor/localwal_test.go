package dbactor

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// checkLocalWAL judges the WAL the open finds against the record of its
// generation's first local commit: the WAL of that generation, reaching
// the record with its checksums, passes; a WAL of another generation is
// refused even when it holds as many frames or more (swapped for an older
// one); a record a checkpoint's copy covers (the base's W of its
// generation, Copied, at or after it: the commits are in the database
// file) passes whatever the WAL holds.
func TestCheckLocalWAL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	db, err := sql.Open("sqlite", path)
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
	files := layout.For(path)
	end := func() walfile.Position {
		t.Helper()
		f, err := os.Open(files.WAL)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
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
	exec("PRAGMA journal_mode = WAL")
	exec("PRAGMA wal_autocheckpoint = 0")
	exec("CREATE TABLE t(v)")
	for range 6 {
		exec("INSERT INTO t VALUES(randomblob(3000))")
	}
	older := end() // the older generation's end
	olderWAL, err := os.ReadFile(files.WAL)
	if err != nil {
		t.Fatal(err)
	}
	exec("PRAGMA wal_checkpoint(RESTART)")
	exec("INSERT INTO t VALUES(1)")
	first := end() // the current generation's first commit
	exec("INSERT INTO t VALUES(2)")
	cur := end()
	curWAL, err := os.ReadFile(files.WAL)
	if err != nil {
		t.Fatal(err)
	}
	if first.Salt1 == older.Salt1 && first.Salt2 == older.Salt2 || older.Frame < cur.Frame {
		t.Fatalf("the test's premise: the older generation %+v, the current one's first commit %+v, end %+v", older, first, cur)
	}
	beyond := first
	beyond.Frame++
	for _, tc := range []struct {
		name   string
		wal    []byte
		record walfile.Position
		base   messages.Base
		refuse string // "" for none
	}{
		{"the record's generation", curWAL, first, messages.Base{}, ""},
		{"the record's generation, at its end", curWAL, cur, messages.Base{}, ""},
		{"an older generation with more frames", olderWAL, first, messages.Base{}, "of another generation"},
		{"an older generation, the record at its end", olderWAL, cur, messages.Base{}, "of another generation"},
		{"the WAL cut before the record", curWAL[:walfile.HeaderSize+first.Frame*(walfile.FrameHeaderSize+PageSize)], cur, messages.Base{}, "no longer holds that commit"},
		{"no WAL", nil, first, messages.Base{}, "is missing"},
		{"the copied base covers the record, a later generation", curWAL, older, messages.Base{WAL: older, Copied: true}, ""},
		{"the copied base covers the record, no WAL", nil, older, messages.Base{WAL: older, Copied: true}, ""},
		{"the base not copied", curWAL, older, messages.Base{WAL: older}, "of another generation"},
		{"the copied base before the record", olderWAL, beyond, messages.Base{WAL: first, Copied: true}, "of another generation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			a := &dbActor{files: layout.For(filepath.Join(d, "x.db"))}
			if tc.wal != nil {
				if err := os.WriteFile(a.files.WAL, tc.wal, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				if a.walFile != nil {
					a.walFile.Close()
				}
			}()
			r := tc.record
			a.meta.SyncDB.LocalWAL = &r
			a.meta.SyncDB.Base = tc.base
			a.meta.SyncedRevision = &messages.Revision{Type: "v1", Revision: "x-1"}
			err := a.checkLocalWAL(true)
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refuse != "" && (!errors.Is(err, errWALLost) || !errors.Is(err, ErrExternalModification) || !strings.Contains(err.Error(), tc.refuse)):
				t.Fatalf("%v, want errWALLost saying %q", err, tc.refuse)
			}
		})
	}
}
