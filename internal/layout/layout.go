// Package layout names the files of a replica. Every package builds them
// from the database's path with For, never by appending a suffix itself:
// the names are on-disk format (a renamed suffix would orphan the files of
// replicas older releases wrote), so they are spelled here once.
package layout

import (
	"path/filepath"
	"time"
)

// Files are the paths of a replica's files. Names avoid "-journal", which
// SQLite would take for a hot rollback journal.
type Files struct {
	DB  string // the SQLite database
	WAL string // SQLite's write-ahead log
	SHM string // SQLite's shared memory

	Info    string // sync metadata (metaactor)
	InfoTmp string // Info's temporary file (fsx.WriteFileAtomic)
	Lock    string // flock of the process that has the replica open

	Bootstrap  string // a database being downloaded
	Changes    string // a downloaded pull, before it is applied
	Revert     string // base images of pages a checkpoint overwrote
	RevertNext string // an older version's page 1 of a new base, during a pull
	Replay     string // the replay journal: local changes saved before a pull peels them off
	ReplayTmp  string // Replay's temporary file
	Present    string // presence log of a partial replica
	PresentTmp string // Present's temporary file

	Recovering string // marker of a replacement by a rebuilt replica in progress
	RecoverDir string // work directory of a rebuild
}

// The suffixes, appended to the database's path.
const (
	suffixWAL        = "-wal"
	suffixSHM        = "-shm"
	suffixInfo       = "-info"
	suffixLock       = "-lock"
	suffixBootstrap  = "-bootstrap"
	suffixChanges    = "-changes"
	suffixRevert     = "-revert"
	suffixReplay     = "-syncdb-replay"
	suffixPresent    = "-present"
	suffixRecovering = "-recovering"
	suffixTmp        = ".tmp" // fsx.WriteFileAtomic's
	suffixNext       = ".next"
	suffixRecover    = ".recover"
	beforeRecover    = ".before-recover-"
)

// For returns the files of the replica whose database is at path.
func For(path string) Files {
	return Files{
		DB:         path,
		WAL:        path + suffixWAL,
		SHM:        path + suffixSHM,
		Info:       path + suffixInfo,
		InfoTmp:    path + suffixInfo + suffixTmp,
		Lock:       path + suffixLock,
		Bootstrap:  path + suffixBootstrap,
		Changes:    path + suffixChanges,
		Revert:     path + suffixRevert,
		RevertNext: path + suffixRevert + suffixNext,
		Replay:     path + suffixReplay,
		ReplayTmp:  path + suffixReplay + suffixTmp,
		Present:    path + suffixPresent,
		PresentTmp: path + suffixPresent + suffixTmp,
		Recovering: path + suffixRecovering,
		RecoverDir: path + suffixRecover,
	}
}

// Companions are the files a replica may have besides DB: SQLite's and
// syncdb's own, but not the Recovering marker or the recovery directories
// (a failed first Open removes the ones it created; recovery moves them).
func (f Files) Companions() []string {
	return []string{
		f.WAL, f.SHM, f.Info, f.InfoTmp, f.Lock, f.Bootstrap, f.Changes, f.Revert, f.RevertNext,
		f.Replay, f.ReplayTmp, f.Present, f.PresentTmp,
	}
}

// RecoverLocal is the journal of local changes a rebuild saves in
// RecoverDir.
func (f Files) RecoverLocal() string { return filepath.Join(f.RecoverDir, "local-changes") }

// RecoverFresh is the database of the fresh replica a rebuild downloads in
// RecoverDir.
func (f Files) RecoverFresh() string { return filepath.Join(f.RecoverDir, filepath.Base(f.DB)) }

// BeforeRecover is the directory a rebuild at t moves the old files to.
func (f Files) BeforeRecover(t time.Time) string {
	return f.DB + beforeRecover + t.UTC().Format("20060102-150405")
}

// BeforeRecoverGlob matches every BeforeRecover directory (filepath.Glob).
func (f Files) BeforeRecoverGlob() string { return f.DB + beforeRecover + "*" }

// DBOfInfo returns the database whose Info file is at info, or false if
// info is not named like one.
func DBOfInfo(info string) (string, bool) {
	n := len(info) - len(suffixInfo)
	if n <= 0 || info[n:] != suffixInfo {
		return "", false
	}
	return info[:n], true
}
