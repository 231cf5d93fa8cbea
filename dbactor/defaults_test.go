package dbactor

import (
	"testing"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
)

// A zero Config gets the documented defaults; set fields stay.
func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.FS != fsx.OS || c.Clock != (actors.RealClock{}) || c.Logger == nil || c.AutoCheckpointFrames != 4096 {
		t.Fatalf("zero Config: %+v", c)
	}
	if c := (Config{AutoCheckpointFrames: -1}).withDefaults(); c.AutoCheckpointFrames != -1 {
		t.Fatalf("negative AutoCheckpointFrames (never) became %d", c.AutoCheckpointFrames)
	}
}
