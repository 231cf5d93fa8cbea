package pageactor

import (
	"testing"
	"time"

	"github.com/syncdb/syncdb/internal/fsx"
)

// A zero Config gets the documented defaults; set fields stay.
func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.SegmentSize != 128<<10 || c.FetchTimeout != 30*time.Second || c.Logger == nil || c.FS != fsx.OS {
		t.Fatalf("zero Config: %+v", c)
	}
	if c := (Config{SegmentSize: 8192, FetchTimeout: time.Second}).withDefaults(); c.SegmentSize != 8192 || c.FetchTimeout != time.Second {
		t.Fatalf("set fields changed: %+v", c)
	}
}
