//go:build mutation_syncnormal_unsynced_anchor

package dbactor

// Planted bug: a SyncNormal pull takes a WAL that has frames as its anchor
// before T1 without a durable commit; its last local commits may not be on
// disk, and a power loss before T1 takes the recorded position back with
// them: recovery finds it beyond the WAL's end and detaches the replica
// (the bug 40176c9 fixed; scripts/mutations.sh shows that the simulator
// catches it).
func init() { mutation.unsyncedAnchor = true }
