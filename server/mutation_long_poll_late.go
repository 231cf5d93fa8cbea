//go:build mutation_long_poll_late

package server

// Planted bug: a long poll subscribes to changes only after it looked for
// them, so a commit in between does not wake it (scripts/mutations.sh shows
// that the simulator catches it).
func init() { mutation.subscribeLate = true }
