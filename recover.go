package syncdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/syncdb/syncdb/internal/flock"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/testhooks"
)

// Recovery (Config.Recover, syncdb recover PATH)
//
// A replica that cannot sync as it is gets repaired:
//   - a copy of another replica that shares its client id (ErrClientCloned)
//     takes an id of its own (a fork, as copies do by themselves when Open
//     can tell);
//   - a replica modified outside syncdb (ErrExternalModification), or one
//     whose revision the server no longer keeps (ErrRebootstrap), is
//     rebuilt: its local state (the changes made through syncdb, the
//     conflicts) is saved as a replay journal, a fresh replica is
//     downloaded beside it under the same client id, the journal is
//     replayed on it as a pull replays local changes (those the server
//     has are dropped, the others applied, conflicts recorded), and the
//     fresh files replace the old ones, which are kept in
//     PATH.before-recover-TIME. Writes other programs made are not kept:
//     syncdb never saw them.
//
// The replacement is several renames; a marker file (PATH-recovering)
// says which, so that an Open after a crash in the middle finishes it.

// recoverReplica repairs the open replica d if it needs it. rebuilt tells
// that d was closed and replaced: open the path again.
func (d *DB) recoverReplica(ctx context.Context) (rebuilt bool, err error) {
	ls, err := closed(d.db.Stats(ctx))
	if err != nil {
		return false, err
	}
	if ls.Detached == "" {
		st, err := closed(d.db.ReplicaStatus(ctx))
		if err != nil {
			return false, err
		}
		if st.Cloned != "" {
			_, err = closed(d.db.Fork(ctx, "Config.Recover of a copy ("+st.Cloned+")", false))
			return false, err
		}
		kept, err := closed(d.sync.RevisionKept(ctx))
		if err != nil {
			// Nothing is wrong locally; whether the server still has the
			// revision can be known only once it answers.
			d.cfg.Logger.Warn("Config.Recover: cannot ask the server whether it keeps this replica's revision", "err", err)
			return false, nil
		}
		if kept {
			return false, nil
		}
	}
	return true, d.rebuild(ctx)
}

// rebuild replaces the replica by a fresh download carrying its local
// state over (see Recovery). d is closed in any case.
func (d *DB) rebuild(ctx context.Context) error {
	cfg := d.cfg
	m, err := closed(d.meta.Get(ctx))
	if err != nil {
		d.Close()
		return err
	}
	url := cfg.URL
	if url == "" && m.SavedConfiguration != nil && m.SavedConfiguration.RemoteURL != nil {
		url = *m.SavedConfiguration.RemoteURL
	}
	if url == "" {
		d.Close()
		return fmt.Errorf("%w: the replica has no server URL to download it again from", ErrNoURL)
	}
	files := layout.For(cfg.Path)
	work := files.RecoverDir
	os.RemoveAll(work) // an earlier attempt's
	if err := os.Mkdir(work, 0o755); err != nil {
		d.Close()
		return err
	}
	journal := files.RecoverLocal()
	n, err := closed(d.db.SaveLocal(ctx, journal))
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("save the local changes: %w", err)
	}

	fresh := cfg
	fresh.Path = files.RecoverFresh()
	fresh.URL, fresh.Recover, fresh.clientID = url, false, m.ClientUniqueID
	if m.SyncDB.Partial != nil {
		fresh.Partial = &PartialSync{PrefixBytes: int64(max(m.SyncDB.Partial.SegmentSize, 4096)), SegmentSize: m.SyncDB.Partial.SegmentSize, Prefetch: m.SyncDB.Partial.Prefetch}
	}
	nd, err := Open(testhooks.With(ctx, d.hooks), fresh)
	if err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("download a fresh replica: %w", err)
	}
	err = closedErr(nd.db.ImportLocal(ctx, journal))
	if cerr := nd.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("replay the %d local changes on the fresh replica: %w", n, err)
	}
	unlock, _, err := flock.Lock(files.Lock)
	if err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("lock %s again: %w", cfg.Path, err)
	}
	defer func() {
		unlock()
		if d.hooks.AfterUnlock != nil {
			d.hooks.AfterUnlock()
		}
	}()
	backup := files.BeforeRecover(time.Now())
	if err := swapReplica(d.hooks.FS, cfg.Path, fresh.Path, backup); err != nil {
		// Once the marker exists, the fresh replica in work is what it
		// points to, and the next Open's finishSwap completes the
		// replacement: removing work would leave that Open no new files
		// (neither PATH nor -info: a new bootstrap, the local changes in
		// the backup only).
		if _, serr := os.Stat(files.Recovering); serr == nil {
			return fmt.Errorf("replace the replica by the rebuilt one: %w; the next Open finishes the replacement (the rebuilt replica is in %s)", err, work)
		}
		os.RemoveAll(work)
		return fmt.Errorf("replace the replica by the rebuilt one: %w", err)
	}
	// Under the lock: once it is released, another Open{Recover} may be
	// rebuilding in work again.
	os.RemoveAll(work)
	cfg.Logger.Warn("the replica was rebuilt from the server", "path", cfg.Path, "local changes replayed", n, "old files", backup)
	return nil
}

// swapMarker records a replacement in progress.
type swapMarker struct {
	Fresh  string   `json:"fresh"`  // the new replica's database file
	Backup string   `json:"backup"` // the directory the old files go to
	Files  []string `json:"files"`  // the suffixes of the new replica's files ("" is the database)
}

// swapReplica moves the replica at path into backup and the one at fresh
// into its place, crash-safely (finishSwap completes it).
func swapReplica(fs fsx.FS, path, fresh, backup string) error {
	m := swapMarker{Fresh: fresh, Backup: backup}
	for _, f := range replicaPaths(fresh) {
		if _, err := fs.Stat(f); err == nil {
			m.Files = append(m.Files, strings.TrimPrefix(f, fresh))
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := fsx.WriteFileAtomic(fs, layout.For(path).Recovering, b); err != nil {
		return err
	}
	return finishSwap(fs, path)
}

// finishSwap completes a replacement that a marker records (none: nothing
// to do). The old -info goes first and the new one last, so that no
// moment leaves a replica of mixed files; every step can be made again.
// The marker goes only once every move is durable: the backup directory
// (where the old files went) before PATH's (where the new ones came: the
// other order lets a power loss in between bring the old files back over
// the new ones, TestFinishSwapPowerLossAfterEachSyncDir), then the fresh
// replica's (which they left). Its removal is made durable too: a marker
// that came back would move the files the new replica created since into
// the backup.
//
// No order of fsyncs keeps a rename's source from coming back: a power
// loss after PATH's fsync and before the fresh directory's can leave a
// new file both at PATH and at its source, one file under two names. The
// next finishSwap would move that PATH file over the old one's backup, so
// it checks (os.SameFile) and then drops the source instead
// (TestFinishSwapSourceCameBack; fsx.CrashFS cannot model that loss: it
// records a rename in its destination's directory only).
//
// The backup directory's own creation is fsynced (its parent) but no test
// shows it: fsx.FS has no Mkdir, so fsx.CrashFS cannot undo one.
// TestFinishSwapPowerLoss shows the renames' durability.
func finishSwap(fs fsx.FS, path string) error {
	marker := layout.For(path).Recovering
	b, err := fsx.ReadFile(fs, marker)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m swapMarker
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", marker, err)
	}
	if err := os.MkdirAll(m.Backup, 0o755); err != nil {
		return err
	}
	if err := fs.SyncDir(filepath.Dir(m.Backup)); err != nil {
		return err
	}
	moveIfThere := func(from, to string) error {
		err := fs.Rename(from, to)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	out := func(f string) error { return moveIfThere(f, filepath.Join(m.Backup, filepath.Base(f))) }
	// movedIn tells whether the fresh file from is already at to, its
	// source having come back after a power loss (see above); it then
	// drops the source.
	movedIn := func(from, to string) (bool, error) {
		a, err := fs.Stat(from)
		if err != nil {
			return false, nil
		}
		if b, err := fs.Stat(to); err != nil || !os.SameFile(a, b) {
			return false, nil
		}
		return true, fs.Remove(from)
	}
	files, fresh := layout.For(path), layout.For(m.Fresh)
	infoIn, err := movedIn(fresh.Info, files.Info)
	if err != nil {
		return err
	}
	_, freshInfo := fs.Stat(fresh.Info)
	if infoIn {
		freshInfo = os.ErrNotExist // moved in already
	}
	if freshInfo == nil {
		if err := out(files.Info); err != nil {
			return err
		}
	}
	for _, f := range replicaPaths(path) {
		suffix := strings.TrimPrefix(f, path)
		if !slices.Contains(m.Files, suffix) {
			if err := out(f); err != nil { // the old replica's only
				return err
			}
			continue
		}
		if in, err := movedIn(m.Fresh+suffix, f); err != nil {
			return err
		} else if in {
			continue
		}
		if _, err := fs.Stat(m.Fresh + suffix); err != nil {
			continue // moved in already
		}
		if err := out(f); err != nil {
			return err
		}
		if err := fs.Rename(m.Fresh+suffix, f); err != nil {
			return err
		}
	}
	if freshInfo == nil {
		if err := fs.Rename(fresh.Info, files.Info); err != nil {
			return err
		}
	}
	if err := fs.SyncDir(m.Backup); err != nil {
		return err
	}
	if err := fs.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	if err := fs.SyncDir(filepath.Dir(m.Fresh)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := fs.Remove(marker); err != nil {
		return err
	}
	return fs.SyncDir(filepath.Dir(marker))
}

// replicaPaths are the files of a replica other than -info (with its
// temporary file) and -lock.
func replicaPaths(path string) []string {
	files := layout.For(path)
	out := []string{path}
	for _, f := range files.Companions() {
		if f != files.Info && f != files.InfoTmp && f != files.Lock {
			out = append(out, f)
		}
	}
	return out
}
