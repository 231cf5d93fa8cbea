// Package failpoint marks the steps of syncdb's crash-sensitive procedures
// (pull apply, checkpoint, push, bootstrap, metadata writes, the server's
// write path) so that the simulator and tests can crash a process at each
// of them, and names the safety checks a test may switch off to show that
// another one holds. In production no hook is installed: Hit costs one
// atomic load and Skip reports false.
//
// Processes started by tests take their failpoints from a directory when
// built with the failpoints build tag (see dir.go); a build without the tag
// has no way to set any.
package failpoint

import "sync/atomic"

// Hook is called at every failpoint with its name and the owner (the path
// of the database or data directory it belongs to, or the name of a served
// database). To crash, it freezes the owner's I/O and panics with a Crash,
// or ends the process.
type Hook func(name, owner string)

// Switch reports whether the step named name of owner is to be skipped.
type Switch func(name, owner string) bool

var (
	hook     atomic.Pointer[Hook]
	switches atomic.Pointer[Switch]
)

// Set installs h (nil removes it). Only the simulator and tests do this.
func Set(h Hook) {
	if h == nil {
		hook.Store(nil)
		return
	}
	hook.Store(&h)
}

// SetSwitch installs s (nil removes it). Only tests do this.
func SetSwitch(s Switch) {
	if s == nil {
		switches.Store(nil)
		return
	}
	switches.Store(&s)
}

// Hit marks a failpoint.
func Hit(name, owner string) {
	if h := hook.Load(); h != nil {
		(*h)(name, owner)
	}
}

// Skip reports whether a test switched off the step named name: only a
// step whose absence another mechanism must survive (a self-check in front
// of a fence) asks.
func Skip(name, owner string) bool {
	if s := switches.Load(); s != nil {
		return (*s)(name, owner)
	}
	return false
}

// Crash is the panic value of a simulated crash.
type Crash struct{ Name, Owner string }

func (c Crash) Error() string { return "simulated crash at " + c.Name + " of " + c.Owner }
