package syncdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
)

// A replacement interrupted at any rename finishes at the next Open
// (finishSwap), and finishing twice changes nothing.
func TestFinishSwapAfterACrash(t *testing.T) {
	for crashAfter := 0; crashAfter <= 5; crashAfter++ {
		dir := t.TempDir()
		path := filepath.Join(dir, "a.db")
		fresh := filepath.Join(dir, "a.db.recover", "a.db")
		backup := filepath.Join(dir, "a.db.before-recover-x")
		os.Mkdir(filepath.Dir(fresh), 0o755)
		for _, s := range []string{"", "-wal", "-info", "-revert"} {
			os.WriteFile(path+s, []byte("old"+s), 0o644)
			os.WriteFile(fresh+s, []byte("new"+s), 0o644)
		}
		if err := os.WriteFile(layout.For(path).Recovering, []byte(`{"fresh":"`+fresh+`","backup":"`+backup+`","files":["","-wal","-revert"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		// The renames finishSwap makes, in its order, up to the crash.
		os.MkdirAll(backup, 0o755)
		steps := [][2]string{{path + "-info", backup + "/a.db-info"}, {path, backup + "/a.db"}, {fresh, path},
			{path + "-wal", backup + "/a.db-wal"}, {fresh + "-wal", path + "-wal"}}
		for _, s := range steps[:crashAfter] {
			os.Rename(s[0], s[1])
		}
		for i := 0; i < 2; i++ {
			if err := finishSwap(fsx.OS, path); err != nil {
				t.Fatalf("crash after %d renames: %v", crashAfter, err)
			}
		}
		for _, s := range []string{"", "-wal", "-info", "-revert"} {
			if b, _ := os.ReadFile(path + s); string(b) != "new"+s {
				t.Errorf("crash after %d: %s holds %q", crashAfter, path+s, b)
			}
			if b, _ := os.ReadFile(filepath.Join(backup, "a.db"+s)); string(b) != "old"+s {
				t.Errorf("crash after %d: the backup of %s holds %q", crashAfter, s, b)
			}
		}
		if _, err := os.Stat(layout.For(path).Recovering); err == nil {
			t.Errorf("crash after %d: the marker is left", crashAfter)
		}
	}
}

// A replacement survives a power loss: once finishSwap returns, the old
// files stay in the backup directory, the new ones at PATH and the marker
// gone (each directory it renamed into, and the marker's removal, are
// fsynced); a power loss after any number of its renames leaves what the
// next finishSwap completes. fsx.CrashFS records a rename under its
// destination's directory only and has no Mkdir, so no test here shows
// the fsyncs of the fresh replica's directory (the renames' sources) and
// of the backup directory's parent (its creation).
func TestFinishSwapPowerLoss(t *testing.T) {
	const renames = 8 // out -info, PATH; in PATH; out, in -wal; out, in -revert; in -info
	errCrash := errors.New("crash")
	for crashAt := 0; crashAt <= renames; crashAt++ {
		dir := t.TempDir()
		path := filepath.Join(dir, "a.db")
		fresh := filepath.Join(dir, "a.db.recover", "a.db")
		backup := filepath.Join(dir, "a.db.before-recover-x")
		os.Mkdir(filepath.Dir(fresh), 0o755)
		suffixes := []string{"", "-wal", "-info", "-revert"}
		for _, s := range suffixes {
			os.WriteFile(path+s, []byte("old"+s), 0o644)
			os.WriteFile(fresh+s, []byte("new"+s), 0o644)
		}
		if err := os.WriteFile(layout.For(path).Recovering, []byte(`{"fresh":"`+fresh+`","backup":"`+backup+`","files":["","-wal","-revert"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		c := fsx.NewCrashFS()
		n := 0
		c.SetFault(func(op, from string) error {
			if _, err := os.Stat(from); op != "rename" || err != nil {
				return nil
			}
			if n++; n > crashAt {
				return errCrash
			}
			return nil
		})
		err := finishSwap(c, path)
		if crashAt < renames && !errors.Is(err, errCrash) || crashAt == renames && err != nil {
			t.Fatalf("crash at rename %d: finishSwap: %v", crashAt, err)
		}
		if err := c.PowerLoss(); err != nil {
			t.Fatal(err)
		}
		check := func(when string) {
			for _, s := range suffixes {
				if b, _ := os.ReadFile(path + s); string(b) != "new"+s {
					t.Errorf("%s: %s holds %q", when, filepath.Base(path+s), b)
				}
				if b, _ := os.ReadFile(filepath.Join(backup, "a.db"+s)); string(b) != "old"+s {
					t.Errorf("%s: the backup of %s holds %q", when, "a.db"+s, b)
				}
			}
			if _, err := os.Stat(layout.For(path).Recovering); err == nil {
				t.Errorf("%s: the marker is left", when)
			}
		}
		if crashAt == renames {
			check("a power loss after finishSwap")
		}
		if err := finishSwap(fsx.OS, path); err != nil {
			t.Fatalf("crash at rename %d: the next finishSwap: %v", crashAt, err)
		}
		check(fmt.Sprintf("a power loss at rename %d, then finishSwap", crashAt))
	}
}

// syncDirStop is a CrashFS whose SyncDirs after the first at fail (the
// process dies there), so that a power loss follows each prefix of them.
type syncDirStop struct {
	*fsx.CrashFS
	n, at int
}

var errSyncDirStop = errors.New("stopped before this SyncDir")

func (s *syncDirStop) SyncDir(dir string) error {
	if s.n++; s.n > s.at {
		return errSyncDirStop
	}
	return s.CrashFS.SyncDir(dir)
}

// The order of finishSwap's directory fsyncs: a power loss after any
// prefix of them leaves what the next finishSwap completes. The backup
// directory goes before PATH's: with PATH's first, a loss in between
// keeps the new files' moves to PATH but undoes the old ones' moves into
// the backup, which bring the old files back at PATH, over the new ones;
// the rerun finds no fresh file left to move: the rebuilt replica is lost.
// TestFinishSwapPowerLoss cuts at renames only, so it does not see this.
func TestFinishSwapPowerLossAfterEachSyncDir(t *testing.T) {
	const syncDirs = 5 // the backup's parent, the backup, PATH's, the fresh replica's, the marker's
	for at := 0; at <= syncDirs; at++ {
		dir := t.TempDir()
		path := filepath.Join(dir, "a.db")
		fresh := filepath.Join(dir, "a.db.recover", "a.db")
		backup := filepath.Join(dir, "a.db.before-recover-x")
		os.Mkdir(filepath.Dir(fresh), 0o755)
		suffixes := []string{"", "-wal", "-info", "-revert"}
		for _, s := range suffixes {
			os.WriteFile(path+s, []byte("old"+s), 0o644)
			os.WriteFile(fresh+s, []byte("new"+s), 0o644)
		}
		if err := os.WriteFile(layout.For(path).Recovering, []byte(`{"fresh":"`+fresh+`","backup":"`+backup+`","files":["","-wal","-revert"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		c := &syncDirStop{CrashFS: fsx.NewCrashFS(), at: at}
		err := finishSwap(c, path)
		if at < syncDirs && !errors.Is(err, errSyncDirStop) || at == syncDirs && err != nil {
			t.Fatalf("power loss after %d SyncDirs: finishSwap: %v", at, err)
		}
		if c.n != min(at+1, syncDirs) {
			t.Fatalf("power loss after %d SyncDirs: finishSwap made %d", at, c.n)
		}
		if err := c.PowerLoss(); err != nil {
			t.Fatal(err)
		}
		if err := finishSwap(fsx.OS, path); err != nil {
			t.Fatalf("power loss after %d SyncDirs: the next finishSwap: %v", at, err)
		}
		when := fmt.Sprintf("power loss after %d SyncDirs, then finishSwap", at)
		for _, s := range suffixes {
			if b, _ := os.ReadFile(path + s); string(b) != "new"+s {
				t.Errorf("%s: %s holds %q", when, filepath.Base(path+s), b)
			}
			if b, _ := os.ReadFile(filepath.Join(backup, "a.db"+s)); string(b) != "old"+s {
				t.Errorf("%s: the backup of %s holds %q", when, "a.db"+s, b)
			}
		}
		if _, err := os.Stat(layout.For(path).Recovering); err == nil {
			t.Errorf("%s: the marker is left", when)
		}
	}
}

// A power loss after finishSwap's fsync of PATH's directory and before the
// fresh directory's may undo the removal of the renames' sources only: each
// new file is then both at PATH and at its source, one file under two
// names (made here with os.Link: fsx.CrashFS records a rename in its
// destination's directory only). The next finishSwap drops the sources
// rather than moving the new files over the old ones' backups.
func TestFinishSwapSourceCameBack(t *testing.T) {
	for _, allBack := range []bool{true, false} {
		dir := t.TempDir()
		path := filepath.Join(dir, "a.db")
		fresh := filepath.Join(dir, "a.db.recover", "a.db")
		backup := filepath.Join(dir, "a.db.before-recover-x")
		os.Mkdir(filepath.Dir(fresh), 0o755)
		os.Mkdir(backup, 0o755)
		suffixes := []string{"", "-wal", "-info", "-revert"}
		for _, s := range suffixes {
			os.WriteFile(filepath.Join(backup, "a.db"+s), []byte("old"+s), 0o644)
			os.WriteFile(path+s, []byte("new"+s), 0o644)
			if allBack || s == "" {
				if err := os.Link(path+s, fresh+s); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.WriteFile(layout.For(path).Recovering, []byte(`{"fresh":"`+fresh+`","backup":"`+backup+`","files":["","-wal","-revert"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := finishSwap(fsx.OS, path); err != nil {
			t.Fatal(err)
		}
		when := map[bool]string{true: "every source back", false: "the database's source back"}[allBack]
		for _, s := range suffixes {
			if b, _ := os.ReadFile(path + s); string(b) != "new"+s {
				t.Errorf("%s: %s holds %q", when, filepath.Base(path+s), b)
			}
			if b, _ := os.ReadFile(filepath.Join(backup, "a.db"+s)); string(b) != "old"+s {
				t.Errorf("%s: the backup of %s holds %q", when, "a.db"+s, b)
			}
			if _, err := os.Lstat(fresh + s); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: the source of %s: %v, want it gone", when, "a.db"+s, err)
			}
		}
		if _, err := os.Stat(layout.For(path).Recovering); err == nil {
			t.Errorf("%s: the marker is left", when)
		}
	}
}
