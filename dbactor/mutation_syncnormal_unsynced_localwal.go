//go:build mutation_syncnormal_unsynced_localwal

package dbactor

// Planted bug: under SyncNormal, the record of a WAL generation's first
// local commit (recordLocalWAL) is written before that commit is on disk;
// a power loss keeps the record and takes the commit back, and the next
// open refuses a healthy replica as one whose WAL lost local commits.
func init() { mutation.unsyncedLocalWAL = true }
