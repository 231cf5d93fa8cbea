//go:build mutation_meta_cache_first

package metaactor

// Planted bug: the -info cache advances before its write succeeded
// (scripts/mutations.sh shows that the simulator catches it).
func init() { mutation.cacheFirst = true }
