package netactor

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// Stopping the system with requests in flight (a long poll, a pipeline, a
// backoff wait) cancels them, answers their callers with ErrStopped and
// leaves no goroutine behind.
func TestStopWithRequestsInFlight(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	entered := make(chan struct{}, 10)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	defer hs.Close()

	sys := actors.NewSystem(actors.Options{Name: "leak"})
	pid, err := Spawn(sys, Config{URL: hs.URL, ZstdPages: true})
	if err != nil {
		t.Fatal(err)
	}
	// A second actor whose requests sit in a backoff wait that never ends.
	clock := newFakeClock()
	clock.block = true
	sys2 := actors.NewSystem(actors.Options{Name: "leak2"})
	failing := &http.Client{Transport: headerTransport{"X-Fail", "1"}}
	pid2, err := Spawn(sys2, Config{URL: hs.URL, Clock: clock, HTTPClient: failing})
	if err != nil {
		t.Fatal(err)
	}

	// A third whose transport takes a while to give up after cancellation:
	// Stop must wait for it.
	slow := &slowTransport{entered: make(chan struct{}, 1)}
	sys3 := actors.NewSystem(actors.Options{Name: "leak3"})
	pid3, err := Spawn(sys3, Config{URL: hs.URL, HTTPClient: &http.Client{Transport: slow}})
	if err != nil {
		t.Fatal(err)
	}

	errs := make(chan error, 4)
	go func() {
		_, err := pull(context.Background(), pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: "r", LongPollTimeoutMs: 600_000})
		errs <- err
	}()
	go func() {
		_, err := pid.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1")})
		errs <- err
	}()
	go func() {
		_, err := pull(context.Background(), pid2, nil)
		errs <- err
	}()
	go func() {
		_, err := pid3.Pipeline(context.Background(), &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true})
		errs <- err
	}()
	<-entered
	<-entered
	<-slow.entered
	for len(clock.Waits()) == 0 {
		time.Sleep(time.Millisecond)
	}

	sys.Stop()
	sys2.Stop()
	sys3.Stop()
	if !slow.returned.Load() {
		t.Error("Stop returned before the request's goroutine ended")
	}
	for range 4 {
		select {
		case err := <-errs:
			if !errors.Is(err, actors.ErrStopped) {
				t.Errorf("in-flight request: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request did not end at stop")
		}
	}
	hs.Close()
	failing.CloseIdleConnections()
}

// headerTransport adds a header to every request.
type headerTransport struct{ k, v string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.k, h.v)
	return http.DefaultTransport.RoundTrip(r)
}

func (h headerTransport) CloseIdleConnections() {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// slowTransport blocks until the request is cancelled, then takes a moment
// to return.
type slowTransport struct {
	entered  chan struct{}
	returned atomic.Bool
}

func (s *slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.entered <- struct{}{}
	<-r.Context().Done()
	time.Sleep(50 * time.Millisecond)
	s.returned.Store(true)
	return nil, r.Context().Err()
}

// relay is a request to an actor spawned after the network actor, which
// asks the network actor in its handler, as the sync actor does.
type relay struct{ actors.Request[struct{}] }

// The system's Stop stops the actors last spawned first: one spawned after
// the network actor and waiting, in its handler, for a request to a server
// that does not answer is stopped before the network actor is. The request
// must end as Stop begins (actors.Stopping), not when the network actor
// stops, or Stop waits for the server for ever.
func TestRequestsEndWhenTheSystemCloses(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	entered, release := make(chan struct{}, 1), make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hs.Close()
	defer close(release)

	sys := actors.NewSystem(actors.Options{Name: "order"})
	netPID, err := Spawn(sys, Config{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	waiter, err := sys.Spawn("waiter", actors.LevelSync, func(msg any) {
		m := msg.(*relay)
		_, err := pull(m.Context(), netPID.From(actors.LevelSync), nil)
		m.Respond(struct{}{}, err)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := actors.Ask(context.Background(), waiter, &relay{})
		errc <- err
	}()
	<-entered
	stopped := make(chan struct{})
	go func() { sys.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waits for the request of an actor it stops first")
	}
	if err := <-errc; !errors.Is(err, actors.ErrStopped) {
		t.Errorf("the waiting request: %v, want ErrStopped", err)
	}
}
