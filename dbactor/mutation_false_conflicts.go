//go:build mutation_false_conflicts

package dbactor

// Planted bug: a replayed update of a row that is there is recorded as an
// update-deleted conflict (scripts/mutations.sh).
func init() { mutation.falseConflicts = true }
