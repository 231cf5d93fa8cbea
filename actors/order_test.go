package actors

import (
	"context"
	"errors"
	"testing"
)

// orderPanic runs fn and returns the *CallOrderError it panicked with.
func orderPanic(fn func()) (perr *CallOrderError) {
	defer func() {
		if v := recover(); v != nil {
			perr, _ = v.(*CallOrderError)
			if perr == nil {
				panic(v)
			}
		}
	}()
	fn()
	return nil
}

// Under the invariants tag an Ask or Enter against the call order panics:
// from an actor's handler (the actor fails, the caller gets a *PanicError)
// and from any goroutine holding a Ref stamped with an actor's level.
// Calls down the order go through. Without the tag nothing is checked.
func TestCallOrder(t *testing.T) {
	if !Invariants {
		t.Skip("the call order is checked only with -tags invariants")
	}
	ctx := context.Background()
	sys := NewSystem(Options{Name: "t"})
	defer sys.Stop()
	echo := func(msg any) {
		if m, ok := msg.(*add); ok {
			m.Respond(m.n, nil)
		}
	}
	sync, err := sys.Spawn("sync", LevelSync, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := sys.Spawn("meta", LevelMeta, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	// db asks whichever Ref it is sent, as db.
	db, err := sys.Spawn("db", LevelDB, func(msg any) {
		m := msg.(*relayAdd)
		v, err := Ask[int](m.Context(), m.to.From(LevelDB), &add{n: m.n})
		m.Respond(v, err)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Down the order: the facade asks db, db asks meta.
	if v, err := Ask[int](ctx, db, &relayAdd{to: meta, n: 7}); err != nil || v != 7 {
		t.Fatalf("db asking meta: %d, %v", v, err)
	}

	// Up the order, from a handler: db asks sync.
	var perr *PanicError
	_, err = Ask[int](ctx, db, &relayAdd{to: sync, n: 1})
	if !errors.As(err, &perr) {
		t.Fatalf("db asking sync: %v, want a *PanicError", err)
	}
	if ce, ok := perr.Value.(*CallOrderError); !ok || *ce != (CallOrderError{From: LevelDB, Actor: "sync", Level: LevelSync}) {
		t.Fatalf("db asking sync panicked with %v, want a CallOrderError", perr.Value)
	}

	// The same level, and Enter: net and meta ask nobody, not even each other.
	want := CallOrderError{From: LevelNet, Actor: "meta", Level: LevelMeta}
	if ce := orderPanic(func() { Ask[int](ctx, meta.From(LevelNet), &add{n: 1}) }); ce == nil || *ce != want {
		t.Fatalf("net asking meta: panic %v, want %v", ce, &want)
	}
	if ce := orderPanic(func() { Enter(ctx, meta.From(LevelNet), func() error { return nil }) }); ce == nil || *ce != want {
		t.Fatalf("net entering meta: panic %v, want %v", ce, &want)
	}
	// An actor asking itself waits for its own turn: caught the same way.
	if ce := orderPanic(func() { Ask[int](ctx, sync.From(LevelSync), &add{n: 1}) }); ce == nil {
		t.Fatal("sync asking itself: no panic")
	}
	if v, err := Ask[int](ctx, meta.From(LevelSync), &add{n: 2}); err != nil || v != 2 {
		t.Fatalf("sync asking meta: %d, %v", v, err)
	}
}

type relayAdd struct {
	Request[int]
	to Ref
	n  int
}
