package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds how long Serve waits, once its context is done,
// for the requests in flight to finish before it closes the Server (which
// ends those still running).
const ShutdownTimeout = 30 * time.Second

// ErrServed reports a second call of Serve: a Server serves once, since
// Serve closes it when it returns.
var ErrServed = errors.New("server: Serve was called before on this Server")

// Serve serves s over HTTP on ln until ctx is done or serving fails, then
// shuts down gracefully: it releases the long polls (BeginShutdown), stops
// accepting, waits up to ShutdownTimeout for the requests in flight, and
// closes s. It closes ln in every case. It returns nil after a shutdown
// that ctx asked for, and otherwise the error that stopped it; a second call
// returns ErrServed.
//
// The HTTP server's own limits are the ones `syncdb serve` has always had:
// request headers must arrive within Config.IOTimeout, so that a client
// that opens connections and sends nothing holds no goroutine for long;
// there is no whole-request timeout, because request bodies and responses
// have their own deadlines (IOTimeout, renewed as data moves) and a
// whole-request one would cut long polls.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	again := s.served
	s.served = true
	s.mu.Unlock()
	if again {
		ln.Close()
		return ErrServed
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.IOTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served: // not ErrServerClosed: only this function shuts hs down
	case <-ctx.Done():
		s.log.Info("shutting down: draining requests")
		s.BeginShutdown()
		// Not ctx: it is done, and the drain needs a live deadline.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		err = hs.Shutdown(sctx)
		cancel()
	}
	return errors.Join(err, s.Close())
}
