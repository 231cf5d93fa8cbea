// Package failpoint marks the steps of syncdb's crash-sensitive procedures
// (pull apply, checkpoint, push, bootstrap, metadata writes) so that the
// simulator can crash a process at each of them. In production no hook is
// installed and Hit costs one atomic load.
package failpoint

import "sync/atomic"

// Hook is called at every failpoint with its name and the owner (the path
// of the database or data directory it belongs to). To crash, it freezes
// the owner's I/O and panics with a Crash.
type Hook func(name, owner string)

var hook atomic.Pointer[Hook]

// Set installs h (nil removes it). Only the simulator and tests do this.
func Set(h Hook) {
	if h == nil {
		hook.Store(nil)
		return
	}
	hook.Store(&h)
}

// Hit marks a failpoint.
func Hit(name, owner string) {
	if h := hook.Load(); h != nil {
		(*h)(name, owner)
	}
}

// Crash is the panic value of a simulated crash.
type Crash struct{ Name, Owner string }

func (c Crash) Error() string { return "simulated crash at " + c.Name + " of " + c.Owner }
