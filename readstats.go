package syncdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/pageactor"
)

// ReadStats reports the Stats of the replica at path without opening it,
// so it works while another process (or DB) has the replica open: it
// reads the sync metadata and, on a read-only connection that never
// checkpoints, the change log. The figures are those of the last commit
// the owner made; the network counters are 0.
func ReadStats(ctx context.Context, path string) (Stats, error) {
	var s Stats
	files := layout.For(path)
	m, err := metaactor.Load(fsx.OS, files.Info)
	if err != nil {
		return s, fmt.Errorf("read stats of %s: %w", path, err)
	}
	s.fromMeta(m)
	if st, err := os.Stat(files.WAL); err == nil {
		s.MainWALSize = st.Size()
	}
	if st, err := os.Stat(files.Revert); err == nil {
		s.RevertWALSize = st.Size()
	}
	if p := m.SyncDB.Partial; p != nil {
		present, err := pageactor.LoadPresence(fsx.OS, path, p.DBSize)
		if err != nil {
			return s, err
		}
		s.PagesPresent, s.PagesTotal = int64(present.GetCardinality()), int64(p.DBSize)
	}
	db, err := sql.Open("sqlite", dbactor.ReaderDSN(path, "")+"&mode=ro")
	if err != nil {
		return s, err
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		return s, err
	}
	defer c.Close()
	// The owner may be gone by the time this connection closes: closing
	// must not checkpoint the WAL, which holds the synced base.
	if err := sqlitex.Raw(ctx, c, func(rc *sqlitex.Conn) error { return rc.SetNoCheckpointOnClose(true) }); err != nil {
		return s, err
	}
	var lastPush int64
	if s.CDCOperations, lastPush, err = dbactor.UnpushedChanges(ctx, c, m); err != nil {
		return s, errors.Join(fmt.Errorf("read the change log of %s", path), err)
	}
	s.LastPushUnixTime = max(s.LastPushUnixTime, lastPush)
	return s, nil
}
