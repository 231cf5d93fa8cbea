package dbactor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// The recovery of an interrupted pull, as scenarios: testdata/recover/*.txt
// give what is on disk (the facts planPending and planRecover decide on)
// and the output is each fact the decision read, in order, and what it
// decided, a refusal as the sentinels its error matches. The facts are
// read through decide, the loop the executor runs: a case must give
// every fact its decision reads (else the test fails), and one it gives
// but that is never read is reported in the output. go test ./dbactor -run
// TestRecoverPlan -rewrite rewrites them.
//
// Commands:
//
//	pending             which pull is pending (planPending, as pendingPull at open)
//	recover [pull=PULL] how to finish PULL (none: no pull pending) (planRecover, as after T1 or at a retry)
//	open                pending, then recover what it found pending (as Open)
//
// PULL is REV@G:F [size=N] [from=REV] [page1] [next-revert=N]: the pull
// to revision REV whose Before is frame F of WAL generation G (its salts),
// of the server's new size N (4 if not given), started from the synced
// revision from, with page 1's true header in the journal (page1), or an
// older version's -revert.next of N bytes.
//
// Input lines, the facts (one line each):
//
//	info [fresh] [created] [no-writer] [detached] [checkpointing] [stamped] [no-server]
//	     [pulled=G:F] [synced=REV] [base=G:F]        what -info and the actor know (default: a writer, a server)
//	info-pull PULL                                    -info records a pending pull (older versions)
//	journal missing|torn|undecoded                    the journal's header as read
//	journal whole|newer [PULL]                        ... whole, or a newer format's, recording PULL (or no pull)
//	body whole|torn                                   the journal after its header
//	progress none|t1=G:F [t2]                         the pull's T1 in the WAL (ending at G:F), and T2 after it
//	local-tables yes|no                               the database has _syncdb_local
//	records-pull yes|no                               T2's record in the database names the pull
//	base-in-wal yes|lost                              the WAL holds the synced base's frames
//	wal-end G:F                                       the end of the WAL's valid log
func TestRecoverPlan(t *testing.T) {
	datadriven.Walk(t, "testdata/recover", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, c *datadriven.TestData) string {
			return runRecoverCase(t, c)
		})
	})
}

func runRecoverCase(t *testing.T, c *datadriven.TestData) string {
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s", c.Pos, fmt.Sprintf(format, args...))
	}
	base := recoveryFacts{Writer: true, Server: true}
	given := map[need][]string{}
	for _, line := range strings.Split(c.Input, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "info":
			for _, w := range f[1:] {
				k, v, _ := strings.Cut(w, "=")
				switch k {
				case "fresh":
					base.Fresh = true
				case "created":
					base.Created = true
				case "no-writer":
					base.Writer = false
				case "detached":
					base.Detached = true
				case "checkpointing":
					base.Checkpointing = true
				case "stamped":
					base.Stamped = true
				case "no-server":
					base.Server = false
				case "pulled":
					p := parsePos(t, c, v)
					base.Pulled = &p
				case "synced":
					base.SyncedFrom = v
				case "base":
					base.BaseWAL = parsePos(t, c, v)
				default:
					fail("unknown info %q", w)
				}
			}
		case "info-pull":
			base.InfoPull = parsePull(t, c, f[1:])
		default:
			n, ok := map[string]need{
				"journal": needJournal, "body": needBody, "progress": needProgress, "local-tables": needLocalTables,
				"records-pull": needRecordsPull, "base-in-wal": needBaseInWAL, "wal-end": needWALEnd,
			}[f[0]]
			if !ok || len(f) < 2 {
				fail("unknown input %q", line)
			}
			given[n] = f[1:]
		}
	}
	var out strings.Builder
	read := need(0)
	learn := func(f *recoveryFacts, s recoveryStep) error {
		v, ok := given[s.Need]
		if !ok {
			fail("the decision reads the %v, which the case does not give", s.Need)
		}
		read |= s.Need
		fmt.Fprintf(&out, "read %v", s.Need)
		if s.Need == needProgress || s.Need == needRecordsPull {
			fmt.Fprintf(&out, " (the pull before %s)", showPos(s.Before))
		}
		out.WriteString("\n")
		learnGiven(t, c, f, s.Need, v)
		return nil
	}
	run := func(plan func(*recoveryFacts) recoveryStep) recoveryStep {
		f := base // each decision reads afresh, as the executor's do
		s, err := decide(&f, plan, learn)
		if err != nil {
			fail("%v", err)
		}
		out.WriteString(showStep(s, &f) + "\n")
		return s
	}
	switch c.Cmd {
	case "pending":
		run(planPending)
	case "recover":
		var args []string
		for _, a := range c.CmdArgs {
			args = append(args, strings.TrimPrefix(a.String(), "pull="))
		}
		var p *messages.PendingPull // none pending
		if len(args) > 0 {
			p = parsePull(t, c, args)
		}
		run(func(f *recoveryFacts) recoveryStep { return planRecover(f, p) })
	case "open":
		if s := run(planPending); s.Action == actPending {
			run(func(f *recoveryFacts) recoveryStep { return planRecover(f, s.Pull) })
		}
	default:
		fail("unknown command %q", c.Cmd)
	}
	var unread []string
	for _, n := range []need{needJournal, needBody, needProgress, needLocalTables, needRecordsPull, needBaseInWAL, needWALEnd} {
		if _, ok := given[n]; ok && read&n == 0 {
			unread = append(unread, n.String())
		}
	}
	if len(unread) > 0 {
		fmt.Fprintf(&out, "given but not read: %s\n", strings.Join(unread, ", "))
	}
	return strings.TrimSuffix(out.String(), "\n")
}

// learnGiven fills in the fact n from the case's words v, as learner reads
// it from the files.
func learnGiven(t *testing.T, c *datadriven.TestData, f *recoveryFacts, n need, v []string) {
	bad := func() { t.Fatalf("%s: %v: %q", c.Pos, n, strings.Join(v, " ")) }
	yes := func() bool {
		switch v[0] {
		case "yes":
			return true
		case "no":
			return false
		}
		bad()
		return false
	}
	switch n {
	case needJournal:
		switch v[0] {
		case "missing":
			f.Journal = journalMissing
		case "torn":
			f.Journal, f.tornErr = journalTorn, fmt.Errorf("journal header: %w", errTornJournal)
		case "undecoded":
			f.Journal, f.newerErr = journalUndecoded, fmt.Errorf("format 9 (%w) and %w", errNewerJournal, errUndecodedHeader)
		case "newer":
			f.Journal, f.newerErr = journalNewer, fmt.Errorf("format 9 (%w)", errNewerJournal)
		case "whole":
			f.Journal = journalWhole
		default:
			bad()
		}
		if len(v) > 1 {
			f.JournalPull = parsePull(t, c, v[1:])
		}
	case needBody:
		switch v[0] {
		case "torn":
			f.BodyTorn, f.tornErr = true, fmt.Errorf("journal body: %w", errTornJournal)
		case "whole":
		default:
			bad()
		}
	case needProgress:
		if v[0] != "none" {
			s, ok := strings.CutPrefix(v[0], "t1=")
			if !ok {
				bad()
			}
			p := parsePos(t, c, s)
			f.T1 = &p
			f.T2 = len(v) > 1 && v[1] == "t2"
		}
	case needLocalTables:
		f.LocalTables = yes()
	case needRecordsPull:
		f.RecordsPull = yes()
	case needBaseInWAL:
		switch v[0] {
		case "lost":
			f.BaseLost, f.baseErr = true, externalModification("the WAL holding the synced base is missing")
		case "yes":
		default:
			bad()
		}
	case needWALEnd:
		f.WALEnd = parsePos(t, c, v[0])
	}
}

// parsePos reads G:F: frame F of the WAL generation G (whose salts are
// both G; frame 0 with no salts is the empty WAL).
func parsePos(t *testing.T, c *datadriven.TestData, s string) walfile.Position {
	g, f, ok := strings.Cut(s, ":")
	gen, err1 := strconv.ParseUint(g, 10, 32)
	frame, err2 := strconv.Atoi(f)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("%s: position %q: want G:F", c.Pos, s)
	}
	return walfile.Position{Salt1: uint32(gen), Salt2: uint32(gen), Frame: frame}
}

func showPos(p walfile.Position) string { return fmt.Sprintf("%d:%d", p.Salt1, p.Frame) }

func parsePull(t *testing.T, c *datadriven.TestData, f []string) *messages.PendingPull {
	if len(f) == 0 {
		t.Fatalf("%s: a pull needs REV@G:F", c.Pos)
	}
	rev, pos, ok := strings.Cut(f[0], "@")
	if !ok {
		t.Fatalf("%s: pull %q: want REV@G:F", c.Pos, f[0])
	}
	p := &messages.PendingPull{Revision: rev, Before: parsePos(t, c, pos), DBSize: 4}
	for _, w := range f[1:] {
		k, v, _ := strings.Cut(w, "=")
		n, _ := strconv.Atoi(v)
		switch k {
		case "size":
			p.DBSize = uint32(n)
		case "from":
			p.From = v
		case "page1":
			p.Page1 = &messages.Page1Header{Header: []byte("SQLite format 3\x00"), CRC: 1}
		case "next-revert":
			p.NextRevertLen = int64(n)
		default:
			t.Fatalf("%s: pull %q: unknown %q", c.Pos, strings.Join(f, " "), w)
		}
	}
	return p
}

func showPull(p *messages.PendingPull) string {
	return fmt.Sprintf("the pull to %s before %s", p.Revision, showPos(p.Before))
}

// showStep says what a decision decided; a refusal as the error the
// executor makes of it (refusal), by the sentinels it matches.
func showStep(s recoveryStep, f *recoveryFacts) string {
	switch s.Action {
	case actNone:
		return "nothing pending: " + s.Why
	case actPending:
		return fmt.Sprintf("pending: %s (%s)", showPull(s.Pull), s.Why)
	case actAbandon:
		return fmt.Sprintf("abandon %s: %s", showPull(s.Pull), s.Why)
	case actRefuse:
		a := &dbActor{files: layout.For("/r/db"), detached: externalModification("another program checkpointed the WAL")}
		err := a.refusal(s.Refusal, f)
		var is []string
		for _, e := range []struct {
			name string
			err  error
		}{
			{"ErrCorruptJournal", ErrCorruptJournal}, {"ErrNewerJournal", ErrNewerJournal},
			{"ErrNoWriter", ErrNoWriter}, {"ErrExternalModification", ErrExternalModification},
			{"errTornJournal", errTornJournal},
		} {
			if errors.Is(err, e.err) {
				is = append(is, e.name)
			}
		}
		return fmt.Sprintf("refuse (%v): %s", s.Refusal, strings.Join(is, ", "))
	case actFinish:
		var b strings.Builder
		fmt.Fprintf(&b, "finish %s:\n", showPull(s.Pull))
		if s.TakeRevertNext {
			b.WriteString("  -revert.next becomes the revert store\n")
		}
		if s.Replay {
			fmt.Fprintf(&b, "  T2: replay the local changes (from revision %q)\n", s.From)
		} else {
			b.WriteString("  T2 is in the WAL: no replay\n")
		}
		r := s.Record
		page1 := "none (page 1 is the file's or the revert store's)"
		if r.Base.Page1 != nil {
			page1 = "the journal's"
		}
		fmt.Fprintf(&b, "  new base: revision %s, %d pages, W %s, revert store %d bytes, page 1's true header %s; Pulled %s\n",
			r.Revision, r.Base.DBSize, showPos(r.Base.WAL), r.Base.RevertLen, page1, showPos(r.Pulled))
		if s.Deferred {
			b.WriteString("  -info's write deferred (T2 recorded the base)")
		} else {
			b.WriteString("  -info written now")
		}
		return b.String()
	}
	return fmt.Sprintf("unknown action %d", s.Action)
}

// The executors do only what their plan decides: any other action is an
// error, not "nothing pending" (pendingOf: the next pull would rewrite a
// journal that may hold the only copy of the unpushed changes) nor a
// finish (execRecover: it would record a zero base). Neither gets as far
// as the files: the actor here has none.
func TestRecoverExecutorsRefuseUnexpectedActions(t *testing.T) {
	p := &messages.PendingPull{Revision: "r2"}
	a := &dbActor{files: layout.For("/r/db"), pull: p, pending: true}
	f := &recoveryFacts{}
	if got, err := a.pendingOf(recoveryStep{Action: actNone}, f); got != nil || err != nil {
		t.Errorf("pendingOf(none) = %v, %v; want nil, nil", got, err)
	}
	if got, err := a.pendingOf(recoveryStep{Action: actPending, Pull: p}, f); got != p || err != nil {
		t.Errorf("pendingOf(pending) = %v, %v; want the pull, nil", got, err)
	}
	for _, act := range []recoveryAction{actAsk, actAbandon, actFinish, actFinish + 1} {
		s := recoveryStep{Action: act, Pull: p}
		if got, err := a.pendingOf(s, f); got != nil || err == nil {
			t.Errorf("pendingOf(%v) = %v, %v; want nil and an error", act, got, err)
		}
	}
	for _, act := range []recoveryAction{actAsk, actPending, actFinish + 1} {
		s := recoveryStep{Action: act, Pull: p}
		if err := a.execRecover(context.Background(), s, f); err == nil {
			t.Errorf("execRecover(%v) = nil; want an error", act)
		}
		if a.pull != p || !a.pending {
			t.Fatalf("execRecover(%v) forgot the pending pull", act)
		}
	}
}
