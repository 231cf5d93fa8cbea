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
		_, err := pull(context.Background(), sys, pid, &syncpb.PullUpdatesReqProtoBody{ClientRevision: "r", LongPollTimeoutMs: 600_000})
		errs <- err
	}()
	go func() {
		_, err := actors.Ask(context.Background(), sys, pid, &messages.Pipeline{Body: batch("SELECT 1")})
		errs <- err
	}()
	go func() {
		_, err := pull(context.Background(), sys2, pid2, nil)
		errs <- err
	}()
	go func() {
		_, err := actors.Ask(context.Background(), sys3, pid3, &messages.Pipeline{Body: batch("SELECT 1"), Retryable: true})
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
