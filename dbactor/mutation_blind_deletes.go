//go:build mutation_blind_deletes

package dbactor

// Planted bug (with syncactor/mutation_blind_deletes.go): a delete of a row
// another client changed is no conflict (scripts/mutations.sh).
func init() { mutation.blindDeletes = true }
