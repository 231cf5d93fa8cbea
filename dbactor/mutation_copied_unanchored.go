//go:build mutation_copied_unanchored

package dbactor

// Planted bug: a pull that starts on a WAL an automatic checkpoint copied
// whole (the base's W, Copied) takes its end as Before without an anchor
// commit. SQLite restarts such a WAL at the next commit, so T1 begins a
// new generation, and a crash after T1 makes recovery, which looks for T1
// in Before's generation, abandon a committed pull: the database is the
// server's and the local changes are gone (walreuse_test.go:
// TestPullAfterAutoCheckpointCrash; scripts/mutations.sh shows whether the
// simulator catches it).
func init() { mutation.copiedUnanchored = true }
