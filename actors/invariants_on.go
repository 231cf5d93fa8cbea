//go:build invariants

package actors

// Invariants says whether this build checks the call order (the
// invariants build tag).
const Invariants = true

// checkOrder panics on a call against the call order: a programming error
// that can deadlock, so it stops the test that made it, inside an actor as
// a *PanicError (the actor fails), outside one as a crash.
func checkOrder(r Ref) {
	if err := orderError(r); err != nil {
		panic(err)
	}
}

// orderError is the violation r's call would be, or nil.
func orderError(r Ref) *CallOrderError {
	if r.from < r.e.level {
		return nil
	}
	return &CallOrderError{From: r.from, Actor: r.e.name, Level: r.e.level}
}
