package syncactor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/internal/fsx"
)

// closeCounter is a downloaded file that counts its closes.
type closeCounter struct {
	fsx.File
	closes int
}

func (f *closeCounter) Close() error {
	f.closes++
	return f.File.Close()
}

// The executor refuses a step a plan should not hold, before the steps
// after it: the zero bootStep (it was opTruncate, a file cut to 0 bytes
// the full bootstrap then stamped and moved in), an opRefuse without its
// error (it carried on to the next step) and an unknown op. Each ends the
// bootstrap with errBadStep, the file closed once and left as it was.
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.db-bootstrap")
			if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
				t.Fatal(err)
			}
			of, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := &closeCounter{File: of}
			s := &syncActor{} // the steps refused touch nothing else
			err = s.finishBoot(context.Background(), f, tc.steps, bootFacts{}, 0, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("finishBoot = %v, want %v", err, tc.want)
			}
			if f.closes != 1 {
				t.Errorf("file closed %d times, want 1", f.closes)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != 4096 {
				t.Errorf("file after the refusal: %v, %v; want 4096 bytes, untouched", fi, err)
			}
		})
	}
}
