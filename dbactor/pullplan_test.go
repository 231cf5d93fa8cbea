package dbactor

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// T1 of a pull, as scenarios: testdata/pull/*.txt give the pages of the
// pull (the base's size, the local database's, the server's new one, the
// dirty pages of the local layer and the pages the server sent) and the
// output is the plan writeBase carries out: the pages a partial replica
// reads as zeros, each page written and from where, page 1, truncation.
// go test ./dbactor -run TestPlanPull -rewrite rewrites them
// (cockroachdb/datadriven's format: a command, its input, "----", the
// output).
//
// The case's command:
//
//	plan base=N cur=N size=N
//
// base is the synced base's size in pages, cur the local database's, size
// the server's new one. Input lines: "dirty PG ..." (pages written after
// W, in the revert store, or beyond cur up to base) and "changed PG ..."
// (the pages the server sent).
func TestPlanPull(t *testing.T) {
	datadriven.Walk(t, "testdata/pull", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, c *datadriven.TestData) string {
			if c.Cmd != "plan" {
				t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
			}
			num := func(key string) uint32 {
				var s string
				c.ScanArgs(t, key, &s)
				n, err := strconv.ParseUint(s, 10, 32)
				if err != nil {
					t.Fatalf("%s: %s: %v", c.Pos, key, err)
				}
				return uint32(n)
			}
			dirty := map[uint32]bool{}
			var changed []uint32
			for _, line := range strings.Split(c.Input, "\n") {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				var pages []uint32
				for _, s := range f[1:] {
					n, err := strconv.ParseUint(s, 10, 32)
					if err != nil {
						t.Fatalf("%s: %q: %v", c.Pos, line, err)
					}
					pages = append(pages, uint32(n))
				}
				switch f[0] {
				case "dirty":
					for _, pg := range pages {
						dirty[pg] = true
					}
				case "changed": // as the page store lists them: sorted
					changed = append(changed, pages...)
				default:
					t.Fatalf("%s: unknown input %q", c.Pos, line)
				}
			}
			p, err := planPull(num("base"), dirty, changed, num("cur"), num("size"))
			if err != nil {
				return "error: " + err.Error()
			}
			return showPlan(p)
		})
	})
}

func showPlan(p pullPlan) string {
	var b strings.Builder
	if len(p.Zero) > 0 {
		fmt.Fprintf(&b, "zero-fill %s\n", pageList(p.Zero))
	}
	for _, w := range p.Writes {
		fmt.Fprintf(&b, "write %d from the %s\n", w.Pgno, w.From)
	}
	switch {
	case p.WritePage1 && p.Truncate:
		fmt.Fprintf(&b, "write 1 from the %s, last, cookie bumped, header size 0, with the truncation\n", p.Page1)
	case p.WritePage1:
		fmt.Fprintf(&b, "write 1 from the %s, last, cookie bumped\n", p.Page1)
	case p.Page1 != fromNone:
		fmt.Fprintf(&b, "page 1 from the %s is the new base's, not written\n", p.Page1)
	default:
		b.WriteString("page 1 not written: the base keeps its header\n")
	}
	if p.Truncate {
		fmt.Fprintf(&b, "truncate to %d pages\n", p.DBSize)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func pageList(pages []uint32) string {
	s := make([]string, len(pages))
	for i, pg := range pages {
		s[i] = strconv.FormatUint(uint64(pg), 10)
	}
	return strings.Join(s, " ")
}
