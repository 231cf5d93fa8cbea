//go:build mutation_split_txns

package dbactor

// Planted bug: a push batch ends once it has its limit of changes, even in
// the middle of a local transaction (scripts/mutations.sh shows that the
// simulator catches it).
func init() { mutation.splitTxns = true }
