//go:build mutation_fetch_over_present

package pageactor

// Planted bug: a fetch writes the bootstrap revision's image of a page over
// the page when it became present while the fetch was in flight (a
// checkpoint copied a newer version into the file): the newer version is
// lost (scripts/mutations.sh shows that the simulator catches it).
func init() { mutationFetchOverPresent = true }
