//go:build mutation_bootstrap_uncovered

package server

// Planted bug: a checkpoint backfills the WAL into the database file while
// a live bootstrap reads that file. The bootstrap's read transaction may
// see a commit its revision lacks (one committed and not recorded yet), and
// the checkpoint copies that commit's pages into the file under it: the
// bootstrap serves pages newer than its revision (the bug a88b550 fixed
// for a commit whose recording failed; scripts/mutations.sh shows that the
// simulator catches it).
func init() { mutation.checkpointUnderReaders = true }
