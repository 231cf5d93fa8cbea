package dbactor_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
)

// closeCountFS counts the opens and closes of PATH-bootstrap.
type closeCountFS struct {
	fsx.FS
	mu            sync.Mutex
	opens, closes int
}

func (fs *closeCountFS) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, "-bootstrap") {
		return f, err
	}
	fs.mu.Lock()
	fs.opens++
	fs.mu.Unlock()
	return &countedFile{File: f, fs: fs}, nil
}

func (fs *closeCountFS) counts() (opens, closes int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.opens, fs.closes
}

type countedFile struct {
	fsx.File
	fs *closeCountFS
}

func (f *countedFile) Close() error {
	f.fs.mu.Lock()
	f.fs.closes++
	f.fs.mu.Unlock()
	return f.File.Close()
}

// spawnUnopened is a database actor as the facade has it while syncactor
// bootstraps: spawned, not opened, its files on fs.
func spawnUnopened(t *testing.T, path string, fs fsx.FS) (dbactor.Handle, *actors.System) {
	t.Helper()
	sys := actors.NewSystem(actors.Options{Name: filepath.Base(path), OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})
	t.Cleanup(sys.Stop)
	meta, err := metaactor.Spawn(sys, fsx.OS, path+"-info")
	if err != nil {
		t.Fatal(err)
	}
	db, _, err := dbactor.Spawn(dbactor.Config{Path: path, ClientID: "c1", Sys: sys, Meta: meta, Gate: noReaders{}, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return db, sys
}

// A bootstrap's download (PATH-bootstrap) has one writer, the database
// actor: BeginBootstrap creates it empty, and once the actor has closed a
// sink (replaced by the next attempt, finished, dropped after a failed
// bootstrap, or at the actor's stop) nothing written through it reaches
// the disk; a sink it no longer has open cannot be finished. Every file
// it opened is closed exactly once, and a closed download's file stays
// (the facade removes it after a failed Open).
func TestBootstrapDownloadOwner(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a.db")
	fs := &closeCountFS{FS: fsx.OS}
	db, sys := spawnUnopened(t, path, fs)
	boot := layout.For(path).Bootstrap
	pg := func(b byte) []byte { return bytes.Repeat([]byte{b}, dbactor.PageSize) }
	file := func() []byte {
		t.Helper()
		b, err := os.ReadFile(boot)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	closed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, dbactor.ErrBootstrapClosed) {
			t.Errorf("%s: %v, want ErrBootstrapClosed", what, err)
		}
	}

	// A full download: written in runs, at Flush.
	first, err := db.BeginBootstrap(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Add(1, pg(1)); err != nil {
		t.Fatal(err)
	}
	if err := first.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := file(); !bytes.Equal(got, pg(1)) {
		t.Fatalf("after one page and a flush: %d bytes, want page 1", len(got))
	}

	// The next attempt replaces it: the file starts empty, and the first
	// sink refuses everything and changes nothing.
	second, err := db.BeginBootstrap(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := file(); len(got) != 0 {
		t.Fatalf("a new attempt's file has %d bytes, want 0 (O_TRUNC)", len(got))
	}
	closed("Add through a replaced sink", first.Add(2, pg(2)))
	closed("Flush of a replaced sink", first.Flush())
	closed("Cut of a replaced sink", first.Cut(8*dbactor.PageSize))
	if got := file(); len(got) != 0 {
		t.Fatalf("the replaced sink changed the new attempt's file: %d bytes", len(got))
	}
	if _, err := db.FinishDownload(ctx, first, []messages.DownloadStep{{Op: messages.DownloadTruncate, Size: 0}}); !errors.Is(err, dbactor.ErrNotBootstrap) {
		t.Errorf("FinishDownload of a replaced sink: %v, want ErrNotBootstrap", err)
	}

	// Finished: the file steps run in order and the stamp is the file's,
	// from the runs' hash (each page once, in order).
	for p := uint32(1); p <= 3; p++ {
		if err := second.Add(p, pg(byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	if err := second.Flush(); err != nil {
		t.Fatal(err)
	}
	if !second.Hashed(3) || second.Hashed(2) {
		t.Errorf("Hashed(3) %v, Hashed(2) %v; want true, false", second.Hashed(3), second.Hashed(2))
	}
	stamp, err := db.FinishDownload(ctx, second, []messages.DownloadStep{
		{Op: messages.DownloadTruncate, Size: 2 * dbactor.PageSize}, // a cut the runs no longer hash
		{Op: messages.DownloadSync}, {Op: messages.DownloadClose}, {Op: messages.DownloadStamp, Hashed: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := dbactor.ContentHash(boot)
	if err != nil {
		t.Fatal(err)
	}
	if stamp == nil || stamp.Size != 2*dbactor.PageSize || stamp.Hash != want {
		t.Fatalf("stamp %+v, want 8192 bytes, hash %x (the file read back)", stamp, want)
	}
	closed("Add through a finished sink", second.Add(3, pg(9)))
	if _, err := db.FinishDownload(ctx, second, nil); !errors.Is(err, dbactor.ErrNotBootstrap) {
		t.Errorf("FinishDownload of a finished sink: %v, want ErrNotBootstrap", err)
	}
	if got := file(); !bytes.Equal(got, append(pg(1), pg(2)...)) {
		t.Fatalf("the finished file: %d bytes, want pages 1-2", len(got))
	}

	// A partial download, cut at its header, written at offsets, then
	// dropped (a failed bootstrap: no steps): closed, the file left.
	third, err := db.BeginBootstrap(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.Cut(4 * dbactor.PageSize); err != nil {
		t.Fatal(err)
	}
	if err := third.Add(3, pg(3)); err != nil {
		t.Fatal(err)
	}
	if third.Hashed(4) {
		t.Error("a partial sink's Hashed: true")
	}
	if stamp, err := db.FinishDownload(ctx, third, nil); err != nil || stamp != nil {
		t.Fatalf("FinishDownload without steps: %v, %v; want no stamp, no error", stamp, err)
	}
	closed("Add through a dropped sink", third.Add(1, pg(1)))
	closed("Cut of a dropped sink", third.Cut(0))
	if got := file(); len(got) != 4*dbactor.PageSize || !bytes.Equal(got[2*dbactor.PageSize:3*dbactor.PageSize], pg(3)) {
		t.Fatalf("the dropped partial file: %d bytes, want 16384 with page 3", len(got))
	}

	// A refusal closes the file and runs nothing after it; so does an
	// invalid step.
	for _, steps := range [][]messages.DownloadStep{
		{{Op: messages.DownloadRefuse, Err: os.ErrInvalid}, {Op: messages.DownloadTruncate, Size: 0}},
		{{Op: messages.DownloadRefuse}, {Op: messages.DownloadTruncate, Size: 0}},
		{{}, {Op: messages.DownloadTruncate, Size: 0}},
		{{Op: messages.DownloadStamp + 1}, {Op: messages.DownloadTruncate, Size: 0}},
	} {
		s, err := db.BeginBootstrap(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Add(1, pg(7)); err != nil {
			t.Fatal(err)
		}
		wantErr := errors.Is
		_, err = db.FinishDownload(ctx, s, steps)
		if steps[0].Err != nil && !wantErr(err, os.ErrInvalid) || steps[0].Err == nil && !wantErr(err, dbactor.ErrBadDownloadStep) {
			t.Errorf("FinishDownload(%+v): %v", steps[0], err)
		}
		if got := file(); !bytes.Equal(got, pg(7)) {
			t.Errorf("after a refused step %+v the file has %d bytes, want page 1 untouched", steps[0], len(got))
		}
	}

	// Stopped with a download open: closed, the file left.
	fourth, err := db.BeginBootstrap(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := fourth.Add(1, pg(4)); err != nil {
		t.Fatal(err)
	}
	if err := fourth.Flush(); err != nil {
		t.Fatal(err)
	}
	sys.Stop()
	closed("Add through the sink of a stopped actor", fourth.Add(2, pg(5)))
	if got := file(); !bytes.Equal(got, pg(4)) {
		t.Errorf("after the stop the file has %d bytes, want page 1", len(got))
	}
	if opens, closes := fs.counts(); opens != 8 || closes != opens {
		t.Errorf("PATH-bootstrap opened %d times, closed %d; want 8 and 8", opens, closes)
	}
}

// The sink's lock: netactor's goroutine may still be writing through a
// sink (its attempt's Ask ended early) while the actor closes it, by the
// next BeginBootstrap or FinishDownload. Each write is either in the
// attempt's file or refused (ErrBootstrapClosed, and so is every later
// one); a late write never panics (the run writer's channel is closed)
// nor reaches the next attempt's file. Run it with -race.
func TestBootstrapSinkRace(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "a.db")
	db, _ := spawnUnopened(t, path, nil)
	page := make([]byte, dbactor.PageSize)
	for round := range 100 {
		sink, err := db.BeginBootstrap(ctx, round%2 == 1)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		done := make(chan error)
		go func() {
			close(started)
			// Pages 1 to 64 over and over: the file stays small, and a
			// sink that never refuses ends the loop, not the disk.
			for i := range 1 << 17 {
				if err := sink.Add(uint32(i%64+1), page); err != nil {
					done <- err
					return
				}
			}
			done <- errors.New("131072 writes, none refused")
		}()
		<-started
		if round%3 == 0 {
			_, err = db.FinishDownload(ctx, sink, nil)
		} else {
			_, err = db.BeginBootstrap(ctx, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, dbactor.ErrBootstrapClosed) {
			t.Fatalf("round %d: the writer stopped with %v, want ErrBootstrapClosed", round, err)
		}
		if round%3 != 0 {
			// The replacing attempt's file is empty: no late write got in.
			if st, err := os.Stat(layout.For(path).Bootstrap); err != nil || st.Size() != 0 {
				t.Fatalf("round %d: the new attempt's file: %v, %v; want 0 bytes", round, st, err)
			}
		}
	}
}

// writeFaultFS fails every write to PATH-bootstrap with errWriteFault.
type writeFaultFS struct{ fsx.FS }

var errWriteFault = errors.New("injected write fault")

func (fs writeFaultFS) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, "-bootstrap") {
		return f, err
	}
	return writeFaultFile{f}, nil
}

type writeFaultFile struct{ fsx.File }

func (writeFaultFile) WriteAt([]byte, int64) (int, error) { return 0, errWriteFault }

// A stamp asked for with Hashed (the runs' hash, no read back) is still
// the file's when the runs do not hold its pages: pages added but never
// flushed (finishing ends the run writer, which drops them), or a run
// whose write failed. The file is then what the stamp must describe (a
// zero page, after the cut), and it is read back. Finishing does not
// fail: the stamp only describes the file, and whether its content is the
// server's is the syncing side's to know (it flushes, and checks the
// errors, before it finishes), while a stamp that does not match the file
// makes a later touch or copy of it look like another program's write
// (checkStamp: ErrExternalModification).
func TestBootstrapStampUnwritten(t *testing.T) {
	ctx := t.Context()
	pg := bytes.Repeat([]byte{1}, dbactor.PageSize)
	steps := []messages.DownloadStep{
		{Op: messages.DownloadTruncate, Size: dbactor.PageSize},
		{Op: messages.DownloadClose}, {Op: messages.DownloadStamp, Hashed: true},
	}
	for _, c := range []struct {
		name  string
		fs    fsx.FS
		flush error // Flush's error; the no-flush case does not call it
	}{
		{name: "not flushed"},
		{name: "write failed", fs: writeFaultFS{fsx.OS}, flush: errWriteFault},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.db")
			db, _ := spawnUnopened(t, path, c.fs)
			sink, err := db.BeginBootstrap(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Add(1, pg); err != nil {
				t.Fatal(err)
			}
			if c.flush != nil {
				if err := sink.Flush(); !errors.Is(err, c.flush) {
					t.Fatalf("Flush: %v, want %v", err, c.flush)
				}
			}
			stamp, err := db.FinishDownload(ctx, sink, steps)
			if err != nil {
				t.Fatal(err)
			}
			want, err := dbactor.ContentHash(layout.For(path).Bootstrap)
			if err != nil {
				t.Fatal(err)
			}
			if stamp == nil || stamp.Size != dbactor.PageSize || stamp.Hash != want {
				t.Fatalf("stamp %+v, want 4096 bytes, hash %x (the file's: a zero page)", stamp, want)
			}
		})
	}
}

// A bootstrap's download replaces the database: an opened actor refuses
// to begin one (which would truncate PATH-bootstrap under the replica
// that opened, or start a second life of it) and leaves the file alone.
func TestBeginBootstrapOpened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	l := openLocal(t, path)
	boot := layout.For(path).Bootstrap
	if err := os.WriteFile(boot, []byte("left by someone"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, partial := range []bool{false, true} {
		sink, err := l.db.BeginBootstrap(t.Context(), partial)
		if !errors.Is(err, dbactor.ErrBootstrapOpened) || sink != nil {
			t.Errorf("BeginBootstrap(partial %v) on an opened actor: %v, %v; want ErrBootstrapOpened", partial, sink, err)
		}
	}
	if b, err := os.ReadFile(boot); err != nil || string(b) != "left by someone" {
		t.Errorf("PATH-bootstrap after the refusals: %q, %v; want it untouched", b, err)
	}
	if err := l.exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY)"); err != nil {
		t.Errorf("the replica after the refusals: %v", err)
	}
}
