//go:build mutation_replay_pushed

package dbactor

// Planted bug: a pull's replay keeps every change the replica does not
// know it pushed (its own hint), not those above the server's mark: a push
// whose answer was lost is applied again, over what landed since (scripts/mutations.sh shows that the
// simulator catches it).
func init() { mutation.replayPushed = true }
