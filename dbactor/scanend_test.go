package dbactor

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/internal/walfile"
)

// scanEnd starts at a.walPos only when the scanner can check it there; a
// hint that does not check out (a forged checksum, another generation, a
// frame past the end, before W) is not believed: the end is the scan's
// from W, as without a hint.
func TestScanEndHint(t *testing.T) {
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
	wal := filepath.Join(dir, "x.db-wal")
	end := func(from walfile.Position) walfile.Position {
		t.Helper()
		f, err := os.Open(wal)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		p, err := walfile.Scan(f, st.Size(), from, func([]walfile.Frame) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for range 5 {
		exec("INSERT INTO t VALUES(randomblob(3000))")
	}
	old := end(walfile.Position{}) // W: the end of the first generation
	exec("PRAGMA wal_checkpoint(RESTART)")
	exec("INSERT INTO t VALUES(1)")
	first := end(old) // after the restarted generation's first commit
	exec("INSERT INTO t VALUES(2)")
	exec("INSERT INTO t VALUES(3)")
	want := end(old)
	if first.Salt1 == old.Salt1 || first.Frame == 0 || want.Frame <= first.Frame {
		t.Fatalf("generations: W %+v, first %+v, end %+v", old, first, want)
	}
	forged := first
	forged.Cksum1++
	other := first
	other.Salt2++
	past := want
	past.Frame += 100
	f, err := os.Open(wal)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		from, pos walfile.Position
		want      walfile.Position
		maxRead   int // bytes, 0 for any
	}{
		{"a later commit of the current generation", old, first, want, 0},
		{"the end itself", old, want, want, walfile.HeaderSize + 2*(walfile.FrameHeaderSize+PageSize)},
		{"a forged checksum", old, forged, want, 0},
		{"another generation", old, other, want, 0},
		{"past the end", old, past, want, 0},
		{"unreadable (-1)", old, walfile.Position{Frame: -1}, want, 0},
		{"before W in W's generation", want, first, want, 0},
		{"W in the current generation, a later hint", first, want, want, walfile.HeaderSize + 2*(walfile.FrameHeaderSize+PageSize)},
	} {
		var reads int
		a := &dbActor{walFile: f, walPos: tc.pos}
		a.cfg.OnWALRead = func(n int) { reads += n }
		got, err := a.scanEnd(st.Size(), tc.from)
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
		if tc.maxRead > 0 && reads > tc.maxRead {
			t.Errorf("%s: %d bytes read, want at most %d", tc.name, reads, tc.maxRead)
		}
	}
}
