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

func counter(t *testing.T, sys *System) (pidName string, stopped *atomic.Bool) {
	t.Helper()
	total := 0
	stopped = &atomic.Bool{}
	_, err := sys.Spawn("counter", func(msg any) {
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
	return "counter", stopped
}

func TestAskPanicStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var panics []*PanicError
	sys := NewSystem(Options{Name: "t", OnPanic: func(p *PanicError) { panics = append(panics, p) }})
	_, stopped := counter(t, sys)
	pid := sys.actors[0].pid
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		v, err := Ask[int](ctx, sys, pid, &add{n: i})
		if err != nil || v != i*(i+1)/2 {
			t.Fatalf("ask %d: %d %v", i, v, err)
		}
	}

	// A request whose context ends while the actor is busy returns at once.
	release := make(chan struct{})
	go Ask[int](ctx, sys, pid, &slow{release: release})
	time.Sleep(20 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := Ask[int](cctx, sys, pid, &add{n: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("busy actor: %v", err)
	}
	cancel()
	close(release)

	// A panic is an error for the requester, then the actor refuses work.
	var perr *PanicError
	if _, err := Ask[int](ctx, sys, pid, &boom{}); !errors.As(err, &perr) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic: %v", err)
	}
	if _, err := Ask[int](ctx, sys, pid, &add{n: 1}); !errors.Is(err, ErrFailed) {
		t.Fatalf("after panic: %v", err)
	}
	if len(panics) != 1 {
		t.Fatalf("OnPanic calls: %d", len(panics))
	}

	sys.Stop()
	if !stopped.Load() {
		t.Fatal("onStop did not run")
	}
	if _, err := Ask[int](ctx, sys, pid, &add{n: 1}); !errors.Is(err, ErrStopped) {
		t.Fatalf("after stop: %v", err)
	}
	sys.Stop() // idempotent
}
