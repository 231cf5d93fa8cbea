// Package testhooks lets syncdb's own tests and simulator replace what a
// replica uses for files, time, identifiers and panics. The hooks are not
// part of the public syncdb.Config: they travel in the context given to
// syncdb.Open (as net/http/httptrace does for its hooks), and only code
// inside this module can build such a context.
//
//	ctx := testhooks.With(context.Background(), testhooks.Hooks{FS: fs, Clock: clock})
//	db, err := syncdb.Open(ctx, cfg)
//
// The hooks apply to the DB for as long as it stays open.
package testhooks

import (
	"context"
	"time"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/messages"
)

// Hooks are the test-only replacements. Zero fields keep the defaults.
type Hooks struct {
	VFS     string          // SQLite VFS name for the database's connections ("" = SQLite's default)
	FS      fsx.FS          // file system for syncdb's own files (default fsx.OS)
	Clock   actors.Clock    // time for backoff, long polls and timestamps (default actors.RealClock)
	IDs     actors.IDSource // new client ids (default actors.RandomIDs)
	OnPanic func(error)     // called for every actor panic, after its requester was answered
	Machine string          // the machine identity a replica records ("" = this machine's)
	// Background runs a partial replica's prefetch downloads (nil = each on
	// a goroutine of its own; see pageactor.Config.Background).
	Background func(func())
	// OnMeta is called with a copy of the replica's current metadata
	// (metaactor's, which may be ahead of -info) every time it changes.
	OnMeta func(*messages.Meta)
	// OnWALRead is called with the bytes of each read of the database
	// actor's scans for the WAL's end (its cost per pull and close).
	OnWALRead func(n int)
	// WriterBusyTimeout replaces the writer connection's SQLite busy
	// timeout (0 = dbactor's 10 s), for tests whose checkpoint is held
	// back by a reader on purpose and would otherwise wait it all out.
	WriterBusyTimeout time.Duration
	// BeforeLock is called by Open just before it takes PATH-lock, and
	// AfterUnlock just after the facade releases it (a failed Open, Close,
	// the end of a rebuild's swap), for tests of what another Open can do
	// around those moments.
	BeforeLock, AfterUnlock func()
	// NoJitter makes the network actor's retries wait exactly the computed
	// intervals. Its jitter comes from the global math/rand, which no seed
	// controls: with it, the virtual time a retry loop reaches, and so how
	// many attempts fit in MaxRetryTime, differ between replays of a
	// simulator seed (netactor.RetryPolicy.NoJitter).
	NoJitter bool
}

type key struct{}

// With returns a context carrying h for syncdb.Open.
func With(ctx context.Context, h Hooks) context.Context {
	return context.WithValue(ctx, key{}, h)
}

// From returns the hooks ctx carries, with defaults for the zero fields.
func From(ctx context.Context) Hooks {
	h, _ := ctx.Value(key{}).(Hooks)
	if h.FS == nil {
		h.FS = fsx.OS
	}
	if h.Clock == nil {
		h.Clock = actors.RealClock{}
	}
	if h.IDs == nil {
		h.IDs = actors.RandomIDs
	}
	return h
}
