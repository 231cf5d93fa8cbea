package actors

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

type add struct {
	Request[int]
	n int
}

type boom struct{ Request[int] }

type slow struct {
	Request[int]
	release chan struct{}
}

func counter(t *testing.T, sys *System) (ref Ref, stopped *atomic.Bool) {
	t.Helper()
	total := 0
	stopped = &atomic.Bool{}
	ref, err := sys.Spawn("counter", LevelNet, func(msg any) {
		switch m := msg.(type) {
		case *add:
			total += m.n
			m.Respond(total, nil)
		case *boom:
			panic("boom")
		case *slow:
			<-m.release
			m.Respond(-1, nil)
		}
	}, func() { stopped.Store(true) })
	if err != nil {
		t.Fatal(err)
	}
	return ref, stopped
}

func TestAskPanicStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var panics []*PanicError
	sys := NewSystem(Options{Name: "t", OnPanic: func(p *PanicError) { panics = append(panics, p) }})
	pid, stopped := counter(t, sys)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		v, err := Ask[int](ctx, pid, &add{n: i})
		if err != nil || v != i*(i+1)/2 {
			t.Fatalf("ask %d: %d %v", i, v, err)
		}
	}

	// A request whose context ends while the actor is busy returns at once.
	release := make(chan struct{})
	go Ask[int](ctx, pid, &slow{release: release})
	time.Sleep(20 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := Ask[int](cctx, pid, &add{n: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("busy actor: %v", err)
	}
	cancel()
	close(release)

	// A panic is an error for the requester, then the actor refuses work.
	var perr *PanicError
	if _, err := Ask[int](ctx, pid, &boom{}); !errors.As(err, &perr) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic: %v", err)
	}
	if _, err := Ask[int](ctx, pid, &add{n: 1}); !errors.Is(err, ErrFailed) {
		t.Fatalf("after panic: %v", err)
	}
	if len(panics) != 1 {
		t.Fatalf("OnPanic calls: %d", len(panics))
	}

	sys.Stop()
	if !stopped.Load() {
		t.Fatal("onStop did not run")
	}
	if _, err := Ask[int](ctx, pid, &add{n: 1}); !errors.Is(err, ErrStopped) {
		t.Fatalf("after stop: %v", err)
	}
	sys.Stop() // idempotent
}

// Enter runs a function in the actor's turn: never with a handler or
// another entered function, with the handler's panic rules.
func TestEnter(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var panics atomic.Int32
	sys := NewSystem(Options{Name: "t", OnPanic: func(*PanicError) { panics.Add(1) }})
	total := 0 // the actor's state: the race detector sees any unserialized use
	pid, err := sys.Spawn("counter", LevelNet, func(msg any) {
		switch m := msg.(type) {
		case *add:
			total += m.n
			m.Respond(total, nil)
		case *slow:
			<-m.release
			m.Respond(-1, nil)
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 200
	done := make(chan error, 2)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := Ask[int](ctx, pid, &add{n: 1}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for i := 0; i < n; i++ {
			if err := Enter(ctx, pid, func() error { total++; return nil }); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if v, err := Ask[int](ctx, pid, &add{n: 0}); err != nil || v != 2*n {
		t.Fatalf("total %d (%v), want %d", v, err, 2*n)
	}

	// Enter waits while a handler runs, until its context ends.
	release := make(chan struct{})
	go Ask[int](ctx, pid, &slow{release: release})
	time.Sleep(20 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	ran := false
	if err := Enter(cctx, pid, func() error { ran = true; return nil }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("enter a busy actor: %v (ran %v)", err, ran)
	}
	cancel()
	close(release)

	// A panic in an entered function fails the actor.
	var perr *PanicError
	if err := Enter(ctx, pid, func() error { panic("boom") }); !errors.As(err, &perr) || perr.Value != "boom" {
		t.Fatalf("panic: %v", err)
	}
	if _, err := Ask[int](ctx, pid, &add{n: 1}); !errors.Is(err, ErrFailed) {
		t.Fatalf("ask after a panic in Enter: %v", err)
	}
	if err := Enter(ctx, pid, func() error { return nil }); !errors.Is(err, ErrFailed) {
		t.Fatalf("enter after a panic: %v", err)
	}
	if panics.Load() != 1 {
		t.Fatalf("OnPanic calls: %d", panics.Load())
	}
	sys.Stop()
	if err := Enter(ctx, pid, func() error { return nil }); !errors.Is(err, ErrStopped) {
		t.Fatalf("enter after stop: %v", err)
	}
}

// Stopping ends when Stop begins, before the first actor's onStop runs,
// and a system that is not stopping keeps it open.
func TestStoppingEndsAsCloseBegins(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sys := NewSystem(Options{Name: "t"})
	var ended atomic.Bool
	if _, err := sys.Spawn("a", LevelNet, func(any) {}, func() { ended.Store(sys.Stopping().Err() != nil) }); err != nil {
		t.Fatal(err)
	}
	if err := sys.Stopping().Err(); err != nil {
		t.Fatalf("Stopping before Stop: %v", err)
	}
	sys.Stop()
	if !ended.Load() {
		t.Error("Stopping had not ended when the actor's onStop ran")
	}
}
