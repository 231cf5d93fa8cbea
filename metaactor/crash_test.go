package metaactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/messages"
)

const (
	crashDir  = "/db"
	crashPath = "/db/app.db-info"
)

// writeFunc performs one write of the new metadata on fs and returns its
// error; it may fail the test for problems other than the write's outcome.
type writeFunc func(t *testing.T, fs *crashFS, old, new *messages.Meta) error

// crashReport is what crashEveryStep found.
type crashReport struct {
	steps      []string         // the mutating calls of an uninterrupted write
	outcomes   []map[string]int // per crash point (crash before call i; i == len(steps): after the write returned): outcome -> count
	violations []string
}

// crashEveryStep runs write once uninterrupted to learn its steps, then once
// per step with a crash just before that step (and once with a crash right
// after the write returned), and loads the metadata from every file system
// the crash can leave behind. Each must hold the old content (no file if old
// is nil) or the new one, and the new one if the write had been
// acknowledged. After each crash, it also checks that syncdb can restart on
// that file system and write again.
func crashEveryStep(t *testing.T, old, new *messages.Meta, write writeFunc) crashReport {
	t.Helper()
	setup := func() *crashFS {
		fs := newCrashFS(crashDir)
		if old != nil {
			data, err := encode(clone(old))
			if err != nil {
				t.Fatal(err)
			}
			fs.put(crashPath, data)
		}
		return fs
	}

	fs := setup()
	fs.startCounting(-1)
	if err := write(t, fs, old, new); err != nil {
		t.Fatalf("uninterrupted write: %v", err)
	}
	var r crashReport
	r.steps = fs.opLog()

	for at := 0; at <= len(r.steps); at++ {
		point := "after the write returned"
		if at < len(r.steps) {
			point = "before " + r.steps[at]
		}
		fs := setup()
		fs.startCounting(at)
		err := write(t, fs, old, new)
		acked := err == nil
		if at < len(r.steps) && !errors.Is(err, errCrashed) {
			t.Fatalf("crash %s: write returned %v, want the crash", point, err)
		}
		seen := map[string]int{}
		for keep := 0; keep <= fs.pendingDirOps(); keep++ {
			for _, mode := range []dataMode{dataLost, dataKept, dataTorn} {
				img := fs.reboot(keep, mode)
				got, err := Load(img, crashPath)
				var outcome string
				switch {
				case old == nil && errors.Is(err, os.ErrNotExist):
					outcome = "old"
				case err != nil:
					outcome = "error"
				case old != nil && reflect.DeepEqual(got, old):
					outcome = "old"
				case reflect.DeepEqual(got, new):
					outcome = "new"
				default:
					outcome = "other"
				}
				seen[outcome]++
				desc := fmt.Sprintf("crash %s, %d of %d directory changes kept, %v", point, keep, fs.pendingDirOps(), mode)
				if outcome == "error" || outcome == "other" {
					r.violations = append(r.violations, fmt.Sprintf("%s: Load gave %s (%v)\nfiles:\n%v", desc, outcome, err, img))
					continue
				}
				if acked && outcome != "new" {
					r.violations = append(r.violations, desc+": an acknowledged write was lost")
					continue
				}
				restartAndWrite(t, img, desc)
			}
		}
		r.outcomes = append(r.outcomes, seen)
	}
	return r
}

// restartAndWrite checks that the actor starts on a crashed file system and
// can write over whatever the crash left (such as a stale temporary file).
func restartAndWrite(t *testing.T, fs *crashFS, desc string) {
	t.Helper()
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, fs, crashPath)
	if err != nil {
		t.Fatalf("%s: restart: %v", desc, err)
	}
	want := sampleMeta(9)
	if _, err := update(context.Background(), pid, setTo(want)); err != nil {
		t.Fatalf("%s: write after restart: %v", desc, err)
	}
	got, err := Load(fs, crashPath)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: after restart and write: %+v, %v", desc, got, err)
	}
}

// actorWrite writes through the actor and checks that the actor's state
// follows the outcome: new if acknowledged, unchanged otherwise.
func actorWrite(t *testing.T, fs *crashFS, old, new *messages.Meta) error {
	t.Helper()
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, fs, crashPath)
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	if got := get(t, pid); !reflect.DeepEqual(got, old) {
		t.Fatalf("before the write: %+v, want %+v", got, old)
	}
	reply, werr := update(context.Background(), pid, setTo(new))
	want := old
	if werr == nil {
		want = new
		if !reflect.DeepEqual(reply, new) {
			t.Fatalf("reply %+v, want %+v", reply, new)
		}
	}
	if got := get(t, pid); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the write (err %v): actor has %+v, want %+v", werr, got, want)
	}
	return werr
}

func TestCrashAtEveryStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  *messages.Meta
	}{
		{"replace", sampleMeta(1)},
		{"first write", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := crashEveryStep(t, tc.old, sampleMeta(2), actorWrite)
			for _, v := range r.violations {
				t.Error(v)
			}
			// The steps the brief names are all crash points: after the
			// write, after the fsync, after the rename (= before the
			// directory sync).
			want := []string{"open app.db-info.tmp", "write app.db-info.tmp", "sync app.db-info.tmp",
				"close app.db-info.tmp", "rename app.db-info.tmp app.db-info", "syncdir"}
			if !slices.Equal(r.steps, want) {
				t.Fatalf("steps %q, want %q", r.steps, want)
			}
			for i, o := range r.outcomes {
				point := "after the write returned"
				if i < len(r.steps) {
					point = "before " + r.steps[i]
				}
				t.Logf("crash %-40s -> %v", point, o)
			}
			// Not vacuous: a crash between the rename and the directory
			// sync can go either way.
			between := r.outcomes[slices.Index(r.steps, "syncdir")]
			if between["old"] == 0 || between["new"] == 0 {
				t.Errorf("crash before syncdir: outcomes %v, want both old and new", between)
			}
			// Before the rename, only old; after the acknowledgement, only new.
			for i, o := range r.outcomes {
				if i <= slices.Index(r.steps, "rename app.db-info.tmp app.db-info") && o["new"] != 0 {
					t.Errorf("crash before step %d: outcomes %v, want only old", i, o)
				}
			}
			if last := r.outcomes[len(r.steps)]; last["old"] != 0 {
				t.Errorf("crash after the acknowledgement: outcomes %v", last)
			}
		})
	}
}

// TestCrashCheckerCatchesUnsafeWrites is the negative control: writes that
// are not crash-safe must be caught by the same check.
func TestCrashCheckerCatchesUnsafeWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(fs fsx.FS, data []byte) error
		want  string
	}{
		{"in place", func(fs fsx.FS, data []byte) error {
			f, err := fs.OpenFile(crashPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			return f.Close()
		}, "Load gave error"},
		{"no fsync before rename", func(fs fsx.FS, data []byte) error {
			f, err := fs.OpenFile(crashPath+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := fs.Rename(crashPath+".tmp", crashPath); err != nil {
				return err
			}
			return fs.SyncDir(crashDir)
		}, "Load gave error"},
		{"no directory sync", func(fs fsx.FS, data []byte) error {
			f, err := fs.OpenFile(crashPath+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return fs.Rename(crashPath+".tmp", crashPath)
		}, "an acknowledged write was lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := crashEveryStep(t, sampleMeta(1), sampleMeta(2), func(t *testing.T, fs *crashFS, _, new *messages.Meta) error {
				data, err := encode(clone(new))
				if err != nil {
					t.Fatal(err)
				}
				return tc.write(fs, data)
			})
			found := false
			for _, v := range r.violations {
				found = found || strings.Contains(v, tc.want)
			}
			if !found {
				t.Fatalf("the crash check did not catch it (want %q); violations: %q", tc.want, r.violations)
			}
		})
	}
}
