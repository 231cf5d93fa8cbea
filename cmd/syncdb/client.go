package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/metaactor"
)

const commonHelp = `The first command on a new PATH needs --url: it downloads the database from
the server and saves the URL in PATH-info, so later commands need only PATH.
The auth token is never saved: give --auth-token or set SYNCDB_AUTH_TOKEN.
`

// conflictNote is the part of pull, push and sync's help about conflicts.
const conflictNote = `
A local change that meets another replica's change to the same row (a
conflict) is printed; one the default policy cannot settle waits, and the
command exits 1 until "syncdb conflicts PATH" resolves it ("conflicts" counts
them).

`

const scriptHelp = commonHelp + `
Prints a short summary, or with --json one JSON object on stdout. Exits 0 on
success; on failure prints the error to stderr and exits 1 (2 for a usage
error).
`

const pullHelp = `Applies the changes other replicas pushed to the server since the last pull;
local changes that are not pushed yet stay on top. On a new PATH (with
--url), downloads the database.

--json prints {"changed":BOOL,"bootstrapped":BOOL,"revision":"...",
"pulled_bytes":N,"seconds":S,"conflicts":N}.
` + conflictNote + scriptHelp

const pushHelp = `Sends the local changes the server does not have yet, as one transaction.

--json prints {"pushed_changes":N,"pushed_bytes":N,"revision":"...","seconds":S,
"conflicts":N} (revision is the last pulled revision; push changes it only
when a conflict made it pull first).
` + conflictNote + scriptHelp

const syncHelp = `Pushes the local changes, then pulls the server's.

--json prints {"pushed_changes":N,"changed":BOOL,"revision":"...",
"pushed_bytes":N,"pulled_bytes":N,"seconds":S,"conflicts":N}.
` + conflictNote + scriptHelp

const statsHelp = `Shows the replica's server URL and revision, the times of the last pull and
push, the number of local changes not pushed yet and the WAL sizes. Needs no
network.

--json prints the syncdb.Stats fields: {"path","url","revision",
"cdc_operations" (unpushed changes),"main_wal_size","revert_wal_size" (bytes),
"last_pull_unix_time","last_push_unix_time" (seconds, 0 = never),
"network_sent_bytes","network_received_bytes" (this process only),
"conflicts" (waiting)}.

` + scriptHelp

const checkpointHelp = `Moves the WAL into the database file, keeping what the next pull needs. It
also happens automatically when the WAL grows large. Needs no network.

--json prints {"main_wal_size_before":N,"main_wal_size":N,"revert_wal_size":N,
"seconds":S}.

` + scriptHelp

// scriptOp is the body of a one-shot command: it returns the JSON object
// and the human-readable text to print.
type scriptOp func(ctx context.Context, s *session, start time.Time) (jsonOut any, text string, err error)

func runPull(c *cli, cmd *command, args []string) int {
	return c.runScript(cmd, args, doPull)
}

func runPush(c *cli, cmd *command, args []string) int {
	return c.runScript(cmd, args, doPush)
}

func runSync(c *cli, cmd *command, args []string) int {
	return c.runScript(cmd, args, doSync)
}

func runStats(c *cli, cmd *command, args []string) int {
	return c.runScript(cmd, args, doStats)
}

func runCheckpoint(c *cli, cmd *command, args []string) int {
	return c.runScript(cmd, args, doCheckpoint)
}

// runScript parses the common flags, opens PATH, runs op and prints its
// result.
func (c *cli) runScript(cmd *command, args []string, op scriptOp) int {
	fs, f := newFlagSet(cmd, true)
	f.recover = cmd.name == "recover"
	pos, code, ok := c.parseFlags(cmd, fs, args)
	if !ok {
		return code
	}
	path, code, ok := c.onePath(cmd, pos)
	if !ok {
		return code
	}
	ctx, release := c.withInterrupt(context.Background())
	defer release()
	start := time.Now()
	s, err := c.open(ctx, path, f)
	if cmd.name == "stats" && errors.Is(err, syncdb.ErrInUse) {
		return c.statsInUse(ctx, cmd, path, f, err)
	}
	if err != nil {
		return c.fail(ctx, cmd, err)
	}
	s.seeConflicts(ctx)
	out, text, err := op(ctx, s, start)
	if cerr := s.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil && (out == nil || !errors.Is(err, syncdb.ErrConflict)) {
		return c.fail(ctx, cmd, err)
	}
	if f.json {
		enc := json.NewEncoder(c.stdout)
		if jerr := enc.Encode(out); jerr != nil {
			return c.fail(ctx, cmd, jerr)
		}
	} else {
		fmt.Fprint(c.stdout, text)
	}
	if err != nil {
		// Conflicts wait: the result and the conflicts are printed, and the
		// command still fails, so that a script notices.
		return c.fail(ctx, cmd, err)
	}
	return exitOK
}

// fail prints a command's error and returns its exit status.
func (c *cli) fail(ctx context.Context, cmd *command, err error) int {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintf(c.stderr, "syncdb %s: interrupted\n", cmd.name)
		return exitInterrupted
	}
	fmt.Fprintf(c.stderr, "syncdb %s: %s\n", cmd.name, errorText(err))
	return exitFailed
}

func since(start time.Time) float64 {
	return float64(time.Since(start).Microseconds()) / 1e6
}

type pullJSON struct {
	Changed      bool    `json:"changed"`
	Bootstrapped bool    `json:"bootstrapped"`
	Revision     string  `json:"revision"`
	PulledBytes  int64   `json:"pulled_bytes"`
	Seconds      float64 `json:"seconds"`
	Conflicts    int64   `json:"conflicts"` // waiting
}

// pullResult is what a pull did.
type pullResult struct {
	changed      bool
	bootstrapped bool  // the open downloaded the database; no pull was needed
	bytes        int64 // received (by the download, for bootstrapped)
	took         time.Duration
	st           syncdb.Stats // after the pull
}

// pull pulls, unless the open just downloaded the database (then it
// reports the download).
func (s *session) pull(ctx context.Context) (pullResult, error) {
	start := time.Now()
	before, err := s.stats(ctx)
	if err != nil {
		return pullResult{}, err
	}
	if s.bootstrapped {
		s.bootstrapped = false // a later pull in the same session is a real one
		return pullResult{changed: true, bootstrapped: true, bytes: before.NetworkReceivedBytes, took: s.openTime, st: before}, nil
	}
	var changed bool
	err = s.do(ctx, func(ctx context.Context) error {
		var err error
		changed, err = s.db.Pull(ctx)
		return err
	})
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return pullResult{}, err
	}
	after, serr := s.stats(ctx)
	return pullResult{changed: changed, bytes: after.NetworkReceivedBytes - before.NetworkReceivedBytes, took: time.Since(start), st: after}, cmp.Or(serr, err)
}

func (r pullResult) text(s *session) string {
	switch {
	case r.bootstrapped:
		return fmt.Sprintf("downloaded %s from %s (%s in %s), revision %s\n", s.path, s.url, humanBytes(r.bytes), seconds(r.took), r.st.Revision)
	case r.changed:
		return fmt.Sprintf("pulled %s in %s, now at revision %s\n", humanBytes(r.bytes), seconds(r.took), r.st.Revision)
	default:
		return fmt.Sprintf("already up to date at revision %s\n", r.st.Revision)
	}
}

func doPull(ctx context.Context, s *session, start time.Time) (any, string, error) {
	r, err := s.pull(ctx)
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return nil, "", err
	}
	out := pullJSON{Changed: r.changed, Bootstrapped: r.bootstrapped, Revision: r.st.Revision, PulledBytes: r.bytes, Seconds: since(start),
		Conflicts: r.st.Conflicts}
	return s.withConflicts(ctx, out, r.text(s), err)
}

type pushJSON struct {
	PushedChanges int64   `json:"pushed_changes"`
	PushedBytes   int64   `json:"pushed_bytes"`
	Revision      string  `json:"revision"`
	Seconds       float64 `json:"seconds"`
	Conflicts     int64   `json:"conflicts"` // waiting
}

// pushResult is what a push did.
type pushResult struct {
	changes, bytes int64
	took           time.Duration
	st             syncdb.Stats // after the push
}

// push pushes and reports how many changes went.
func (s *session) push(ctx context.Context) (pushResult, error) {
	start := time.Now()
	before, err := s.stats(ctx)
	if err != nil {
		return pushResult{}, err
	}
	err = s.do(ctx, s.db.Push)
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return pushResult{}, err
	}
	after, serr := s.stats(ctx)
	return pushResult{changes: after.PushedChanges - before.PushedChanges,
		bytes: after.NetworkSentBytes - before.NetworkSentBytes, took: time.Since(start), st: after}, cmp.Or(serr, err)
}

func (r pushResult) text() string {
	if r.changes == 0 {
		return "nothing to push\n"
	}
	return fmt.Sprintf("pushed %s (%s) in %s\n", plural(r.changes, "change"), humanBytes(r.bytes), seconds(r.took))
}

func doPush(ctx context.Context, s *session, start time.Time) (any, string, error) {
	r, err := s.push(ctx)
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return nil, "", err
	}
	out := pushJSON{PushedChanges: r.changes, PushedBytes: r.bytes, Revision: r.st.Revision, Seconds: since(start), Conflicts: r.st.Conflicts}
	return s.withConflicts(ctx, out, r.text(), err)
}

type syncJSON struct {
	PushedChanges int64   `json:"pushed_changes"`
	Changed       bool    `json:"changed"`
	Revision      string  `json:"revision"`
	PushedBytes   int64   `json:"pushed_bytes"`
	PulledBytes   int64   `json:"pulled_bytes"`
	Seconds       float64 `json:"seconds"`
	Conflicts     int64   `json:"conflicts"` // waiting
}

// sync pushes, then pulls (also right after a download: the push may have
// changed the server).
func (s *session) sync(ctx context.Context) (pushResult, pullResult, error) {
	boot := s.bootstrapped
	s.bootstrapped = false
	push, err := s.push(ctx)
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return push, pullResult{}, err
	}
	pull, err := s.pull(ctx)
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return push, pull, fmt.Errorf("pushed %s, then pull: %w", plural(push.changes, "change"), err)
	}
	if boot {
		pull.changed, pull.bootstrapped = true, true
		pull.bytes = pull.st.NetworkReceivedBytes
		pull.took += s.openTime
	}
	return push, pull, err
}

func doSync(ctx context.Context, s *session, start time.Time) (any, string, error) {
	push, pull, err := s.sync(ctx)
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return nil, "", err
	}
	out := syncJSON{PushedChanges: push.changes, Changed: pull.changed, Revision: pull.st.Revision,
		PushedBytes: push.bytes, PulledBytes: pull.bytes, Seconds: since(start), Conflicts: pull.st.Conflicts}
	return s.withConflicts(ctx, out, push.text()+pull.text(s), err)
}

type statsJSON struct {
	Path                 string `json:"path"`
	URL                  string `json:"url"`
	Revision             string `json:"revision"`
	CDCOperations        int64  `json:"cdc_operations"`
	MainWALSize          int64  `json:"main_wal_size"`
	RevertWALSize        int64  `json:"revert_wal_size"`
	LastPullUnixTime     int64  `json:"last_pull_unix_time"`
	LastPushUnixTime     int64  `json:"last_push_unix_time"`
	NetworkSentBytes     int64  `json:"network_sent_bytes"`
	NetworkReceivedBytes int64  `json:"network_received_bytes"`
	Conflicts            int64  `json:"conflicts"`
}

func doStats(ctx context.Context, s *session, _ time.Time) (any, string, error) {
	st, err := s.stats(ctx)
	if err != nil {
		return nil, "", err
	}
	return doStatsOf(s, st)
}

func doStatsOf(s *session, st syncdb.Stats) (any, string, error) {
	out := statsJSON{Path: s.path, URL: s.url, Revision: st.Revision, CDCOperations: st.CDCOperations,
		MainWALSize: st.MainWALSize, RevertWALSize: st.RevertWALSize,
		LastPullUnixTime: st.LastPullUnixTime, LastPushUnixTime: st.LastPushUnixTime,
		NetworkSentBytes: st.NetworkSentBytes, NetworkReceivedBytes: st.NetworkReceivedBytes, Conflicts: st.Conflicts}
	return out, statsText(s, st, time.Now()), nil
}

// stats is the replica's Stats.
func (s *session) stats(ctx context.Context) (syncdb.Stats, error) {
	return s.db.Stats(ctx)
}

// statsInUse is "syncdb stats" on a replica another process has open: the
// figures come from its files, read without opening it.
func (c *cli) statsInUse(ctx context.Context, cmd *command, path string, f *clientFlags, inUse error) int {
	st, err := syncdb.ReadStats(ctx, path)
	if err != nil {
		return c.fail(ctx, cmd, errors.Join(inUse, err))
	}
	s := &session{path: path, url: f.url}
	if m, err := metaactor.Load(fsx.OS, layout.For(path).Info); err == nil && s.url == "" && m.SavedConfiguration != nil && m.SavedConfiguration.RemoteURL != nil {
		s.url = *m.SavedConfiguration.RemoteURL
	}
	out, text, _ := doStatsOf(s, st)
	if f.json {
		if err := json.NewEncoder(c.stdout).Encode(out); err != nil {
			return c.fail(ctx, cmd, err)
		}
		return exitOK
	}
	fmt.Fprintf(c.stdout, "%s(another process has the replica open: read from its files)\n", text)
	return exitOK
}

// statsText is the human-readable form of Stats.
func statsText(s *session, st syncdb.Stats, now time.Time) string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-17s %s\n", k+":", v) }
	url := s.url
	if url == "" {
		url = "(none: give --url to pull or push)"
	}
	rev := st.Revision
	if rev == "" {
		rev = "(never pulled)"
	}
	row("database", s.path)
	row("server", url)
	row("revision", rev)
	row("last pull", humanTime(st.LastPullUnixTime, now))
	row("last push", humanTime(st.LastPushUnixTime, now))
	row("unpushed changes", fmt.Sprint(st.CDCOperations))
	if st.Conflicts > 0 {
		row("conflicts", fmt.Sprintf("%d waiting (syncdb conflicts %s)", st.Conflicts, s.path))
	}
	row("WAL", humanBytes(st.MainWALSize))
	row("revert WAL", humanBytes(st.RevertWALSize))
	if st.NetworkSentBytes > 0 || st.NetworkReceivedBytes > 0 {
		row("network", fmt.Sprintf("sent %s, received %s (this session)", humanBytes(st.NetworkSentBytes), humanBytes(st.NetworkReceivedBytes)))
	}
	return b.String()
}

type checkpointJSON struct {
	MainWALSizeBefore int64   `json:"main_wal_size_before"`
	MainWALSize       int64   `json:"main_wal_size"`
	RevertWALSize     int64   `json:"revert_wal_size"`
	Seconds           float64 `json:"seconds"`
}

// checkpoint checkpoints and returns the WAL sizes before and after.
func (s *session) checkpoint(ctx context.Context) (before, after syncdb.Stats, err error) {
	if before, err = s.stats(ctx); err != nil {
		return
	}
	if err = s.db.Checkpoint(ctx); err != nil {
		return
	}
	after, err = s.stats(ctx)
	return
}

func checkpointText(path string, before, after syncdb.Stats) string {
	return fmt.Sprintf("checkpointed %s: WAL %s -> %s\n", path, humanBytes(before.MainWALSize), humanBytes(after.MainWALSize))
}

func doCheckpoint(ctx context.Context, s *session, start time.Time) (any, string, error) {
	before, after, err := s.checkpoint(ctx)
	if err != nil {
		return nil, "", err
	}
	return checkpointJSON{MainWALSizeBefore: before.MainWALSize, MainWALSize: after.MainWALSize,
		RevertWALSize: after.RevertWALSize, Seconds: since(start)}, checkpointText(s.path, before, after), nil
}
