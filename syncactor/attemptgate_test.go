package syncactor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttemptGate drives a bootstrap attempt's gate directly: a download
// callback that comes after its attempt ended, or after the attempt's
// context ended (netactor handing out a page it read ahead after the Ask
// returned), is refused with errAttemptOver and runs nothing: it must not
// add to the ended attempt's download state or sink, nor reach the next
// attempt's, whose own gate lets its callbacks through. end waits for a
// callback in flight, so none runs after the attempt returned.
// TestBootstrapCancelledMidStream does not reach the gate: netactor's own
// check of ctx stops the late pages first.
func TestAttemptGate(t *testing.T) {
	var first, second atomic.Int32 // the two attempts' sinks' writes
	g1 := attemptGate{ctx: context.Background()}
	if err := g1.run(func() error { first.Add(1); return nil }); err != nil {
		t.Fatalf("a callback during the attempt: %v", err)
	}
	g1.end()
	g2 := attemptGate{ctx: context.Background()} // the next attempt
	if err := g1.run(func() error { first.Add(1); return nil }); !errors.Is(err, errAttemptOver) {
		t.Errorf("a callback after its attempt ended: %v, want errAttemptOver", err)
	}
	if err := g2.run(func() error { second.Add(1); return nil }); err != nil {
		t.Fatalf("the next attempt's callback: %v", err)
	}
	if first.Load() != 1 || second.Load() != 1 {
		t.Errorf("writes: first attempt %d, next %d; want 1 and 1", first.Load(), second.Load())
	}

	// The attempt's context ended (its Ask returned at once), end not yet
	// run: refused too, with the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	g3 := attemptGate{ctx: ctx}
	cancel()
	err := g3.run(func() error { first.Add(1); return nil })
	if !errors.Is(err, errAttemptOver) || !errors.Is(err, context.Canceled) {
		t.Errorf("a callback after the attempt's ctx ended: %v, want errAttemptOver and context.Canceled", err)
	}
	if first.Load() != 1 {
		t.Errorf("the refused callbacks wrote %d times", first.Load()-1)
	}

	// A callback in flight when the attempt ends: end returns only after it.
	g4 := attemptGate{ctx: context.Background()}
	inside, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	go g4.run(func() error {
		close(inside)
		<-release
		finished.Store(true)
		return nil
	})
	<-inside
	ended := make(chan struct{})
	go func() { g4.end(); close(ended) }()
	select {
	case <-ended:
		t.Fatal("end returned while a callback was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-ended
	if !finished.Load() {
		t.Error("end returned before the callback in flight finished")
	}
}
