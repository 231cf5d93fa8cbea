//go:build mutation_drop_conflicts

package dbactor

// Planted bug: a replay drops the conflicts it finds instead of recording
// them (scripts/mutations.sh shows that the simulator catches it).
func init() { mutation.dropConflicts = true }
