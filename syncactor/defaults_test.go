package syncactor

import (
	"testing"
	"time"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
)

// A zero Config gets the documented defaults; set fields stay.
func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.FS != fsx.OS || c.Clock != (actors.RealClock{}) || c.Logger == nil || c.Attempts != 3 || c.MaxRetryTime != 30*time.Second {
		t.Fatalf("zero Config: %+v", c)
	}
	if c := (Config{MaxRetryTime: -1, Attempts: 1}).withDefaults(); c.MaxRetryTime != -1 || c.Attempts != 1 {
		t.Fatalf("set fields changed: %+v", c)
	}
}
