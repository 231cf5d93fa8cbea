//go:build mutation_syncnormal_unsynced_push

package dbactor

// Planted bug: a SyncNormal push sends local commits that may not be on
// disk; a power loss then takes back changes the server has under the
// client id: the replica is refused as a copy, and its recovery sends again
// what survived (the bug 7745b98 fixed; scripts/mutations.sh shows that the
// simulator catches it).
func init() { mutation.unsyncedPush = true }
