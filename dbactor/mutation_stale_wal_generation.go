//go:build mutation_stale_wal_generation

package dbactor

// Planted bug: a pull that starts on an empty WAL (right after a
// checkpoint) records that empty position as its place before T1, without
// anchoring it in a new WAL generation. A power loss before T1 brings back
// the checkpointed WAL, whose truncation was not durable yet, and recovery
// takes its first transaction for T1 (the bug 845d714 fixed;
// scripts/mutations.sh shows that the simulator catches it).
func init() { mutation.unanchoredWAL = true }
