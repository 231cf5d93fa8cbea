package change

// mutation holds deliberate bugs, off unless a build tag plants one
// (mutation_*.go; scripts/mutations.sh runs the simulator on each).
var mutation struct {
	// blindAddedColumns: a delete's guard ignores columns the change does
	// not know (dbactor's twin skips them at replay).
	blindAddedColumns bool
}
