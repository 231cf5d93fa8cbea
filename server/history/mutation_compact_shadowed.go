//go:build mutation_compact_shadowed

package history

// Planted bug: compaction drops every page version a newer one shadows,
// also when the newer one is above the horizon, so retained revisions lose
// pages (scripts/mutations.sh shows that the simulator catches it).
func init() { mutation.shadowedAnywhere = true }
