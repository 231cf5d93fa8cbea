package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/syncdb/syncdb"
)

const conflictsHelp = `Lists the local changes that wait because they conflict with changes other
replicas made (an insert of a key another replica inserted too, an update of
a row it deleted, a delete of a row it changed, a change the database
refuses), oldest first; or resolves one of them:

  syncdb conflicts PATH                     the conflicts that wait
  syncdb conflicts --all PATH               every recorded conflict, resolved ones too
  syncdb conflicts PATH resolve ID local    keep this replica's changes (over the server's row)
  syncdb conflicts PATH resolve ID remote   keep the server's row (drop the local changes)

Resolving is a local change: the next push sends it. Needs no network. The
README's "Conflicts" section explains the rules. --json prints a JSON array of
{"id","kind","table","key","local","remote","resolved","new_key","error",
"revision","time"}.

Pull, push and sync print the conflicts they meet, and exit 1 while any
waits.
`

// conflictJSON is one conflict for --json.
type conflictJSON struct {
	ID       int64          `json:"id"`
	Kind     string         `json:"kind"`
	Table    string         `json:"table"`
	Key      []any          `json:"key"`
	Local    map[string]any `json:"local"`
	Remote   map[string]any `json:"remote"`
	Resolved string         `json:"resolved"`
	NewKey   []any          `json:"new_key,omitempty"`
	Error    string         `json:"error,omitempty"`
	Revision string         `json:"revision"`
	Time     int64          `json:"time"`
}

func conflictOut(c syncdb.Conflict) conflictJSON {
	return conflictJSON{ID: c.ID, Kind: c.Kind, Table: c.Table, Key: c.Key, Local: c.Local, Remote: c.Remote, Resolved: c.Resolved,
		NewKey: c.NewKey, Error: c.Error, Revision: c.Revision, Time: c.Time.Unix()}
}

func runConflicts(c *cli, cmd *command, args []string) int {
	fs, f := newFlagSet(cmd, true)
	all := fs.Bool("all", false, "list every recorded conflict, resolved ones too")
	pos, code, ok := c.parseFlags(cmd, fs, args)
	if !ok {
		return code
	}
	if f.version {
		return runVersion(c, cmd, nil)
	}
	var id int64
	var keep string
	switch {
	case len(pos) == 4 && pos[1] == "resolve":
		n, err := strconv.ParseInt(pos[2], 10, 64)
		if err != nil {
			return c.usageError(cmd, "conflict ID %q is not a number", pos[2])
		}
		if pos[3] != "local" && pos[3] != "remote" {
			return c.usageError(cmd, "resolve ID local|remote, not %q", pos[3])
		}
		id, keep = n, pos[3]
		pos = pos[:1]
	case len(pos) > 1:
		return c.usageError(cmd, "expected PATH, or PATH resolve ID local|remote, got %q", pos)
	}
	path, code, ok := c.onePath(cmd, pos)
	if !ok {
		return code
	}
	ctx, release := c.withInterrupt(context.Background())
	defer release()
	s, err := c.open(ctx, path, f)
	if err != nil {
		return c.fail(ctx, cmd, err)
	}
	defer s.close()
	if keep != "" {
		if err := s.db.ResolveConflict(ctx, id, keep); err != nil {
			return c.fail(ctx, cmd, err)
		}
		fmt.Fprintf(c.stdout, "resolved conflict %d: kept the %s side; run 'syncdb push %s' to send it\n", id, keep, path)
		return exitOK
	}
	list := s.db.Conflicts
	if *all {
		list = s.db.ConflictHistory
	}
	cs, err := list(ctx)
	if err != nil {
		return c.fail(ctx, cmd, err)
	}
	if f.json {
		out := make([]conflictJSON, len(cs))
		for i, cf := range cs {
			out[i] = conflictOut(cf)
		}
		if err := json.NewEncoder(c.stdout).Encode(out); err != nil {
			return c.fail(ctx, cmd, err)
		}
		return exitOK
	}
	if len(cs) == 0 {
		fmt.Fprintln(c.stdout, "no conflicts wait")
		return exitOK
	}
	for _, cf := range cs {
		fmt.Fprint(c.stdout, conflictText(cf))
	}
	if !*all {
		fmt.Fprintf(c.stdout, "resolve with: syncdb conflicts %s resolve ID local|remote\n", path)
	}
	return exitOK
}

// conflictText describes one conflict in two or three lines.
func conflictText(c syncdb.Conflict) string {
	var b strings.Builder
	what := map[string]string{
		"insert-insert":  "this replica and another inserted the same key",
		"update-deleted": "this replica updated a row another deleted",
		"delete-updated": "this replica deleted a row another changed",
		"constraint":     "the database refuses this replica's change on top of the server's",
	}[c.Kind]
	fmt.Fprintf(&b, "conflict %d, %s on %s %s (%s)", c.ID, c.Kind, c.Table, keyText(c.Key), what)
	switch c.Resolved {
	case "":
		b.WriteString(": waits\n")
	case "rekeyed":
		fmt.Fprintf(&b, ": the local row moved to %s\n", keyText(c.NewKey))
	default:
		fmt.Fprintf(&b, ": resolved, kept %s\n", c.Resolved)
	}
	fmt.Fprintf(&b, "  local:  %s\n  remote: %s\n", rowText(c.Local), rowText(c.Remote))
	if c.Error != "" {
		fmt.Fprintf(&b, "  error:  %s\n", c.Error)
	}
	return b.String()
}

func keyText(key []any) string {
	parts := make([]string, len(key))
	for i, v := range key {
		parts[i] = sqlLiteral(v, true)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func rowText(row map[string]any) string {
	if row == nil {
		return "(no row)"
	}
	cols := slices.Sorted(func(yield func(string) bool) {
		for k := range row {
			if !yield(k) {
				return
			}
		}
	})
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = c + "=" + sqlLiteral(row[c], true)
	}
	return strings.Join(parts, ", ")
}

// seeConflicts remembers which conflicts were recorded before this
// session's operations, so that conflictReport shows only new ones.
func (s *session) seeConflicts(ctx context.Context) {
	if hist, err := s.db.ConflictHistory(ctx); err == nil && len(hist) > 0 {
		s.seenConflict = hist[len(hist)-1].ID
	}
}

// conflictReport describes the conflicts a pull, push or sync recorded
// (those resolved on the spot by the policy, a row moved to a new key,
// too) and the ones that wait.
func (s *session) conflictReport(ctx context.Context) string {
	hist, err := s.db.ConflictHistory(ctx)
	if err != nil {
		return ""
	}
	var b strings.Builder
	waiting := 0
	for _, c := range hist {
		if c.Resolved == "" {
			waiting++
		}
		if c.ID > s.seenConflict || c.Resolved == "" {
			b.WriteString(conflictText(c))
		}
		s.seenConflict = max(s.seenConflict, c.ID)
	}
	switch {
	case waiting == 1:
		fmt.Fprintf(&b, "1 conflict waits: see 'syncdb conflicts %s'\n", s.path)
	case waiting > 1:
		fmt.Fprintf(&b, "%d conflicts wait: see 'syncdb conflicts %s'\n", waiting, s.path)
	}
	return b.String()
}

// withConflicts is the result of a pull, push or sync: the operation's own
// text, then the conflicts it met. An error that only reports waiting
// conflicts keeps the text (the operation did the rest).
func (s *session) withConflicts(ctx context.Context, out any, text string, err error) (any, string, error) {
	if err != nil && !errors.Is(err, syncdb.ErrConflict) {
		return nil, "", err
	}
	return out, text + s.conflictReport(ctx), err
}
