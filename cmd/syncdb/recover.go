package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/metaactor"
)

const recoverHelp = `Repairs a replica that cannot sync as it is, keeping the local changes
made through syncdb that the server does not have yet:

  - one that is a copy of another replica sharing its client id (a cloned
    machine, a file-system snapshot restored in place: "is a copy of
    another one"): it takes a client id of its own;
  - one that another program modified ("modified outside syncdb"), or whose
    revision the server no longer keeps ("no longer has this replica's
    revision"): it is downloaded again, and its local changes are replayed on
    top, as a pull replays them (conflicts are recorded). The old files are
    kept in PATH.before-recover-TIME; writes other programs made are not
    carried over.

A replica that needs none of this is left as it is. Needs the server.

--json prints {"recovered":"rebuilt"|"new client id"|"nothing to do",
"backup":"...","unpushed_changes":N,"seconds":S}.

` + scriptHelp

type recoverJSON struct {
	Recovered string  `json:"recovered"`
	Backup    string  `json:"backup,omitempty"`
	Unpushed  int64   `json:"unpushed_changes"`
	Seconds   float64 `json:"seconds"`
}

func runRecover(c *cli, cmd *command, args []string) int {
	return c.runScript(cmd, args, doRecover)
}

// doRecover runs after the open, which did the repair (Config.Recover):
// what changed on disk tells what it did.
func doRecover(ctx context.Context, s *session, start time.Time) (any, string, error) {
	st, err := s.stats(ctx)
	if err != nil {
		return nil, "", err
	}
	out := recoverJSON{Recovered: "nothing to do", Unpushed: st.CDCOperations, Seconds: since(start)}
	text := fmt.Sprintf("%s needed no repair\n", s.path)
	after, _ := filepath.Glob(layout.For(s.path).BeforeRecoverGlob())
	m, _ := metaactor.Load(fsx.OS, layout.For(s.path).Info)
	switch {
	case len(after) > len(s.backups):
		for _, b := range after {
			if !slices.Contains(s.backups, b) {
				out.Backup = b
			}
		}
		out.Recovered = "rebuilt"
		text = fmt.Sprintf("rebuilt %s from the server at revision %s, keeping %s (the old files are in %s)\n",
			s.path, st.Revision, plural(st.CDCOperations, "unpushed change"), out.Backup)
	case m != nil && m.ClientUniqueID != s.clientID:
		out.Recovered = "new client id"
		text = fmt.Sprintf("%s now has a client id of its own (%s), keeping %s; push to send them\n",
			s.path, m.ClientUniqueID, plural(st.CDCOperations, "unpushed change"))
	}
	return out, text, nil
}
