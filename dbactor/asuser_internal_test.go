package dbactor

import (
	"runtime"
	"testing"
)

// asUser leaves the user's rules however fn ends: a panic recovered
// further up, or runtime.Goexit.
func TestAsUserEndsOnPanicAndGoexit(t *testing.T) {
	for how, stop := range map[string]func(){"panic": func() { panic("planted") }, "goexit": runtime.Goexit} {
		a := &dbActor{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() { recover() }()
			a.asUser(func() error { stop(); return nil })
		}()
		<-done
		if a.user {
			t.Errorf("after a %s in asUser's function, the writer is still under the user's rules", how)
		}
	}
}
