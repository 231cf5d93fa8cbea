package dbactor

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/messages"
)

// Copies
//
// A replica's changes are pushed exactly once under its client id. A copy
// of the files (cp -a, a backup restored, a disk moved to another machine)
// shares that id and its change ids: both copies would push under it, and
// each would take the other's pushes for its own. So a replica records
// where it lives (Home: its database file's device and inode, and the
// machine) and, opened anywhere else, takes a new client id (fork). The
// changes it had not pushed may have been made before the copy: the other
// copy may push them too. They are sorted out with the server before the
// first push under the new id (syncactor's settleFork): those the old id
// already has are skipped, the others are claimed (the old id's mark moves
// past them, so that the other copy skips them) and pushed under the new
// id. A copy the home cannot reveal (a cloned machine, a snapshot restored
// in place) is caught by the push chain instead (chain.go).
//
// Mistaking a replica for a copy is harmless (it takes a new id; nothing
// is pushed twice or lost); the other way round is not, so anything that
// changes the file's identity counts.

// machineID identifies this machine: its machine-id if it has one, else
// its host name.
func machineID() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b))
		}
	}
	h, _ := os.Hostname()
	return "host:" + h
}

func (a *dbActor) home() messages.Home {
	h := messages.Home{Machine: a.cfg.Machine}
	if h.Machine == "" {
		h.Machine = machineID()
	}
	h.Dev, h.Inode = fileID(a.cfg.Path)
	return h
}

// checkHome records where a replica lives, or forks a replica opened
// somewhere else.
func (a *dbActor) checkHome(ctx context.Context) error {
	cur := a.home()
	old := a.meta.SyncDB.Home
	switch {
	case old == nil:
		return a.updateMeta(ctx, func(m *messages.Meta) error { m.SyncDB.Home = &cur; return nil })
	case *old == cur:
		return nil
	}
	why := "its files were copied, restored from a backup or moved"
	if old.Machine != cur.Machine {
		why = "it was moved or copied to another machine"
	}
	_, err := a.fork(ctx, why, true)
	return err
}

// fork gives the replica a new client id (see Copies).
func (a *dbActor) fork(ctx context.Context, why string, inherit bool) (string, error) {
	gen, err := a.localPullGen(ctx)
	if err != nil {
		return "", err
	}
	last := int64(0)
	if inherit {
		// Everything in the log (and trimmed, pushed) may predate the copy.
		row, err := a.rawRow(ctx, `SELECT max(coalesce((SELECT max(change_id) FROM _syncdb_changes), 0),
			coalesce((SELECT value FROM _syncdb_local WHERE key = 'trimmed'), 0))`)
		if err != nil {
			return "", err
		}
		last, _ = row[0].(int64)
	} else {
		// Only what this replica knows it pushed.
		st, err := a.storedChain(ctx)
		if err != nil {
			return "", err
		}
		pushed, err := lastPushed(ctx, a.own(), &a.meta)
		if err != nil {
			return "", err
		}
		last = max(st.ID, pushed.After)
	}
	old := a.meta.ClientUniqueID
	id := a.cfg.NewClientID()
	home := a.home()
	if err := a.updateMeta(ctx, func(m *messages.Meta) error {
		if m.SyncDB.Origin == nil || m.SyncDB.Origin.PullGen != gen {
			m.SyncDB.Origin = &messages.Origin{ClientID: old, PullGen: gen, Last: last}
		}
		// An earlier fork not settled yet keeps its origin: the changes are
		// still the first id's to sort out.
		m.ClientUniqueID = id
		m.SyncDB.Home = &home
		m.LastPushedPullGenHint, m.LastPushedChangeIDHint = gen, 0
		return nil
	}); err != nil {
		return "", err
	}
	failpoint.Hit("fork.meta", a.cfg.Path)
	// Durably, whatever SyncNormal says: a copy flag that a pull recorded
	// (in its durable T2) and a power loss brought back would refuse the
	// replica under its new id.
	if err := a.durable(ctx, func() error {
		_, err := a.conn.ExecContext(ctx, "DELETE FROM _syncdb_local WHERE key = 'cloned'")
		return err
	}); err != nil {
		return id, fmt.Errorf("forget the copy flag: %w", err)
	}
	a.noteWAL()
	a.cfg.Logger.Warn("this replica takes a new client id", "why", why, "old", old, "new", id)
	return id, nil
}
