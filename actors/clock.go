package actors

import (
	"time"

	"github.com/google/uuid"
)

// Clock is time as the actors see it. The simulator replaces it to run
// backoff and long polls deterministically and fast.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                         { return time.Now() }
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// BackoffTimer adapts a Clock to cenkalti/backoff's Timer interface.
type BackoffTimer struct {
	Clock Clock
	c     <-chan time.Time
}

func (t *BackoffTimer) Start(d time.Duration) { t.c = t.Clock.After(d) }
func (t *BackoffTimer) Stop()                 {}
func (t *BackoffTimer) C() <-chan time.Time   { return t.c }

// IDSource makes unique identifiers (client ids). The simulator replaces it
// with a seeded one.
type IDSource func() string

// RandomIDs makes random version 4 UUIDs.
func RandomIDs() string { return uuid.NewString() }
