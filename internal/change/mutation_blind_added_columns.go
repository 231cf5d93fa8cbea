//go:build mutation_blind_added_columns

package change

// Planted bug (with dbactor/mutation_blind_added_columns.go): a delete's
// push guard ignores columns added after the delete was captured
// (scripts/mutations.sh).
func init() { mutation.blindAddedColumns = true }
