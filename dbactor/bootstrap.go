package dbactor

import (
	"fmt"
	"path/filepath"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
)

// moveBootstrap carries out planMove's decision (messages.MoveBootstrap):
// the rename of PATH-bootstrap to PATH, then the directory's fsync, so
// that the metadata, written before, never outlives the rename on disk.
func moveBootstrap(fs fsx.FS, f layout.Files) error {
	_, err := fs.Stat(f.Bootstrap)
	download := err == nil
	db := false
	if download {
		_, err := fs.Stat(f.DB)
		db = err == nil
	}
	if move, err := planMove(f, download, db); !move {
		return err
	}
	if err := fs.Rename(f.Bootstrap, f.DB); err != nil {
		return err
	}
	return fs.SyncDir(filepath.Dir(f.DB))
}

// planMove decides the move from whether PATH-bootstrap and PATH exist:
// nothing without a download, a refusal when both exist (neither is known
// to be the replica's), else the rename.
func planMove(f layout.Files, download, db bool) (move bool, err error) {
	switch {
	case !download:
		return false, nil
	case db:
		return false, fmt.Errorf("both %s and %s exist", f.DB, f.Bootstrap)
	}
	return true, nil
}
