//go:build mutation_blind_deletes

package syncactor

// Planted bug (with dbactor/mutation_blind_deletes.go): a push sends no
// guard for a delete (scripts/mutations.sh).
func init() { mutation.blindDeletes = true }
