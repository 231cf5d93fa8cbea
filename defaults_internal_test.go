package syncdb

import (
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/syncactor"
)

// A zero Config gets the defaults its fields' comments and the README
// state, and withDefaults changes nothing the caller holds.
func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.ClientName != DefaultClientName || c.Logger == nil || c.ReadConns != max(4, runtime.GOMAXPROCS(0)) || c.Partial != nil {
		t.Fatalf("zero Config: ClientName %q, Logger %v, ReadConns %d, Partial %v", c.ClientName, c.Logger, c.ReadConns, c.Partial)
	}
	mine := &PartialSync{PrefixBytes: 4096}
	c = Config{Partial: mine}.withDefaults()
	if c.Partial.SegmentSize != DefaultSegmentSize || mine.SegmentSize != 0 {
		t.Fatalf("Partial: defaulted %d, the caller's now %d", c.Partial.SegmentSize, mine.SegmentSize)
	}
	set := Config{ClientName: "x", ReadConns: 1, Partial: &PartialSync{SegmentSize: 8192}}.withDefaults()
	if set.ClientName != "x" || set.ReadConns != 1 || set.Partial.SegmentSize != 8192 {
		t.Fatalf("set fields changed: %+v", set)
	}
	if again := c.withDefaults(); again.ClientName != c.ClientName || again.ReadConns != c.ReadConns || *again.Partial != *c.Partial {
		t.Fatal("withDefaults is not idempotent")
	}
	l := LiveSync{}.withDefaults()
	if l.PushDelay != 100*time.Millisecond || l.PollTimeout != 30*time.Second || l.MaxBackoff != 30*time.Second {
		t.Fatalf("zero LiveSync: %+v", l)
	}

	// The documented values are these.
	src := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(string(b)), " ") // comments rewrap
	}
	docs := map[string]string{"syncdb.go": src("syncdb.go"), "live.go": src("live.go"), "README.md": src("README.md")}
	for _, c := range []struct{ file, pattern string }{
		{"syncdb.go", `ClientName .*// client id = ClientName \+ "-" \+ uuid v4, .* default "` + DefaultClientName + `"`},
		{"syncdb.go", `ReadConns .*// read-only connection pool size \(0 = max\(4, GOMAXPROCS\)\)`},
		{"syncdb.go", fmt.Sprintf(`on demand, SegmentSize bytes at a time \(default %d KiB\)`, DefaultSegmentSize>>10)},
		{"README.md", fmt.Sprintf(`%d KiB segment \(.SegmentSize.\)`, DefaultSegmentSize>>10)},
		{"live.go", fmt.Sprintf(`PushDelay batches local writes into one push \(default %d ms\)`, l.PushDelay.Milliseconds())},
		{"live.go", fmt.Sprintf(`at the server for a change // \(default %d s\)`, int(l.PollTimeout.Seconds()))},
		{"live.go", fmt.Sprintf(`MaxBackoff caps the wait between attempts while offline \(default %d s\)`, int(l.MaxBackoff.Seconds()))},
		{"README.md", fmt.Sprintf(`.PushDelay. \(default %d ms\)`, l.PushDelay.Milliseconds())},
		{"README.md", fmt.Sprintf(`.MaxBackoff., default %d s`, int(l.MaxBackoff.Seconds()))},
		{"syncdb.go", fmt.Sprintf(`MaxRetryTime bounds .* all their requests together \(0 = %d s;`, int(syncactor.DefaultMaxRetryTime.Seconds()))},
		{"README.md", fmt.Sprintf(`.Config.MaxRetryTime. \(%d s by default\)`, int(syncactor.DefaultMaxRetryTime.Seconds()))},
		{"syncdb.go", fmt.Sprintf(`frames than this not yet checkpointed \(0 = %d, about %d MiB;`, dbactor.DefaultAutoCheckpointFrames, dbactor.DefaultAutoCheckpointFrames*4096>>20)},
	} {
		if !regexp.MustCompile(c.pattern).MatchString(docs[c.file]) {
			t.Errorf("%s does not say %q", c.file, c.pattern)
		}
	}
}
