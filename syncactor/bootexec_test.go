package syncactor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/metaactor"
)

// closeCountFS counts the closes of PATH-bootstrap's descriptors.
type closeCountFS struct {
	fsx.FS
	mu     sync.Mutex
	closes int
}

func (fs *closeCountFS) OpenFile(name string, flag int, perm os.FileMode) (fsx.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, "-bootstrap") {
		return f, err
	}
	return &closeCounter{File: f, fs: fs}, nil
}

func (fs *closeCountFS) count() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.closes
}

type closeCounter struct {
	fsx.File
	fs *closeCountFS
}

func (f *closeCounter) Close() error {
	f.fs.mu.Lock()
	f.fs.closes++
	f.fs.mu.Unlock()
	return f.File.Close()
}

type noGate struct{}

func (noGate) Close() {}
func (noGate) Open()  {}

// The executor refuses a step a plan should not hold, before the steps
// after it: the zero bootStep (it was opTruncate, a file cut to 0 bytes
// the full bootstrap then stamped and moved in), an opRefuse without its
// error (it carried on to the next step), an unknown op, and a file step
// after the download was finished (dbactor's FinishDownload ran). Each
// ends the bootstrap with errBadStep, the file (dbactor's) closed once and
// left as it was.
func TestFinishBootRefusesInvalidSteps(t *testing.T) {
	cause := errors.New("the plan's reason")
	for _, tc := range []struct {
		name  string
		steps []bootStep
		want  error
	}{
		{"zero step", []bootStep{{}, {op: opSyncClose}}, errBadStep},
		{"refuse without err", []bootStep{{op: opRefuse}, {op: opTruncate, size: 0}}, errBadStep},
		{"unknown op", []bootStep{{op: opMove + 1}, {op: opTruncate, size: 0}}, errBadStep},
		{"refuse with err", []bootStep{{op: opRefuse, err: cause}, {op: opTruncate, size: 0}}, cause},
		{"file step after the others", []bootStep{{op: opFailpoint, name: "test.none"}, {op: opTruncate, size: 0}}, errBadStep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.db")
			sys := actors.NewSystem(actors.Options{Name: t.Name(), OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})
			t.Cleanup(sys.Stop)
			meta, err := metaactor.Spawn(sys, fsx.OS, path+"-info")
			if err != nil {
				t.Fatal(err)
			}
			fs := &closeCountFS{FS: fsx.OS}
			db, _, err := dbactor.Spawn(dbactor.Config{Path: path, ClientID: "c1", Sys: sys, Meta: meta, Gate: noGate{}, FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			sink, err := db.BeginBootstrap(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Add(1, make([]byte, dbactor.PageSize)); err != nil {
				t.Fatal(err)
			}
			s := &syncActor{cfg: Config{DB: db}} // the steps refused touch nothing else
			err = s.finishBoot(ctx, sink, tc.steps, bootFacts{}, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("finishBoot = %v, want %v", err, tc.want)
			}
			if n := fs.count(); n != 1 {
				t.Errorf("file closed %d times, want 1", n)
			}
			if fi, err := os.Stat(path + "-bootstrap"); err != nil || fi.Size() != 4096 {
				t.Errorf("file after the refusal: %v, %v; want 4096 bytes, untouched", fi, err)
			}
		})
	}
}
