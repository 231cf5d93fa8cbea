//go:build !invariants

package actors

// Invariants says whether this build checks the call order (the
// invariants build tag).
const Invariants = false

// checkOrder checks the call order only with the invariants build tag:
// the levels are fixed by the code, so a test run under the tag covers
// every edge the tests take.
func checkOrder(Ref) {}
