//go:build mutation_blind_added_columns

package dbactor

// Planted bug (with internal/change/mutation_blind_added_columns.go): a
// replayed delete ignores the columns added after it was captured
// (scripts/mutations.sh).
func init() { mutation.blindAddedColumns = true }
