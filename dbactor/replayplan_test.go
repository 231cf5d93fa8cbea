package dbactor

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/syncdb/syncdb/internal/change"
)

// T2 of a pull apart from the conflict rules, as scenarios:
// testdata/replay/*.txt give the journal (its header and changes), the
// server's marks for this client in the pulled pages and the local-only
// tables; the output is planReplay's plan: the floor (and why the
// replica is a copy, if it is), each journaled change replayed or left to
// the pulled pages, and the rows T2 sets in _syncdb_local. go test
// ./dbactor -run TestReplayPlan -rewrite rewrites them.
//
// The case's command:
//
//	replay gen=N [chain=N] [pushed=N] [sent=N] [push-time=N] [cloned=WHY] [import]
//
// gen is the journal's pull generation, chain the last change id the push
// chain value in the header covers (trimmed changes), pushed and sent the
// last change the replica knows the server has and knows it sent,
// push-time the last push's time, cloned a copy's mark the journal
// carries; import: a rebuild's import (no new base), else a pull to r2.
// Input lines:
//
//	change ID TXN TABLE [undecodable]   a journaled change (an insert into TABLE)
//	ignored TABLE                       a local-only table
//	mark GEN:ID                         the server's mark for this client
//	chain GEN:own|GEN:N                 its push chain value: this replica's own over the changes up to the mark, or N
func TestReplayPlan(t *testing.T) {
	datadriven.Walk(t, "testdata/replay", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, c *datadriven.TestData) string {
			if c.Cmd != "replay" {
				t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
			}
			num := func(s string) int64 {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					t.Fatalf("%s: %q: %v", c.Pos, s, err)
				}
				return n
			}
			var hdr journalHeader
			var rec *syncedBase = &syncedBase{Revision: "r2"}
			for _, a := range c.CmdArgs {
				v := ""
				if len(a.Vals) > 0 {
					v = a.Vals[0]
				}
				switch a.Key {
				case "gen":
					hdr.PullGen = num(v)
				case "chain":
					// The trimmed changes' chain: any hash stands for it.
					hdr.Chain = chainState{ID: num(v), Hash: chainStep(nil, num(v), []byte("trimmed"))}
				case "pushed":
					hdr.Pushed = num(v)
				case "sent":
					hdr.Sent = num(v)
				case "push-time":
					hdr.PushTime = num(v)
				case "cloned":
					hdr.Cloned = v
				case "import":
					rec = nil
				default:
					t.Fatalf("%s: unknown argument %q", c.Pos, a.Key)
				}
			}
			var entries []journalEntry
			ignored := map[string]bool{}
			var marks *serverMarks
			var chainArg string
			genID := func(s string) (int64, string) {
				g, v, ok := strings.Cut(s, ":")
				if !ok {
					t.Fatalf("%s: %q: want GEN:ID", c.Pos, s)
				}
				return num(g), v
			}
			for _, line := range strings.Split(c.Input, "\n") {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				switch {
				case f[0] == "change" && (len(f) == 4 || len(f) == 5 && f[4] == "undecodable"):
					ch := change.Change{Op: change.Insert, Table: f[3], Columns: []string{"x"}, After: []any{int64(1)}}
					b, err := ch.Encode()
					if err != nil {
						t.Fatal(err)
					}
					if len(f) == 5 {
						b = []byte{0xff}
					}
					entries = append(entries, journalEntry{ID: num(f[1]), Txn: num(f[2]), Record: b})
				case f[0] == "ignored" && len(f) == 2:
					ignored[f[1]] = true
				case f[0] == "mark" && len(f) == 2:
					g, id := genID(f[1])
					marks = &serverMarks{Mark: mark{Gen: g, ID: num(id)}}
				case f[0] == "chain" && len(f) == 2:
					chainArg = f[1]
				default:
					t.Fatalf("%s: unknown input %q", c.Pos, line)
				}
			}
			if chainArg != "" {
				if marks == nil {
					t.Fatalf("%s: a chain without a mark", c.Pos)
				}
				g, v := genID(chainArg)
				if v == "own" {
					// The value this replica's own pushes left: its chain
					// folded over its changes up to the mark.
					st, ok := fold(hdr.Chain, entries, marks.Mark.ID)
					if !ok {
						t.Fatalf("%s: the journal does not hold every change up to the mark", c.Pos)
					}
					marks.Chain = &mark{Gen: g, ID: ChainValue(st.Hash)}
				} else {
					marks.Chain = &mark{Gen: g, ID: num(v)}
				}
			}
			p, err := planReplay(hdr, entries, marks, ignored, "r2", rec)
			if err != nil {
				return "error: " + err.Error()
			}
			var b strings.Builder
			fmt.Fprintf(&b, "floor %d\n", p.Floor)
			if p.Cloned != "" {
				fmt.Fprintf(&b, "a copy: %s\n", p.Cloned)
			}
			replayed := map[int64]bool{}
			for _, ch := range p.Changes {
				replayed[ch.ID] = true
			}
			for _, e := range entries {
				ch, _ := change.Decode(e.Record)
				if replayed[e.ID] {
					fmt.Fprintf(&b, "replay %d (txn %d) %s\n", e.ID, e.Txn, ch.Table)
				} else {
					fmt.Fprintf(&b, "in the pulled pages: %d %s\n", e.ID, ch.Table)
				}
			}
			for i, ch := range p.Changes {
				if i > 0 && ch.ID <= p.Changes[i-1].ID {
					fmt.Fprintf(&b, "out of journal order: %d after %d\n", ch.ID, p.Changes[i-1].ID)
				}
			}
			for _, r := range p.Local {
				if r.Key == "synced_base" {
					b.WriteString("set synced_base (the new base, for reconcileBase)\n")
					continue
				}
				fmt.Fprintf(&b, "set %s = %v\n", r.Key, r.Value)
			}
			return strings.TrimSuffix(b.String(), "\n")
		})
	})
}
