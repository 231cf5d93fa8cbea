package sim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// wakeWait is how long (real time) a long poll with a wake-up planned may
// sleep before the simulation calls it missed: a woken poll returns at once.
const wakeWait = 5 * time.Second

// wakePlan is a commit planned to land while a long poll waits: between
// the server's look for news and its wait (the failpoint server.long-poll).
// The poll must wake at once; its timer (real time, wakeWait) firing means
// it slept through the commit.
type wakePlan struct {
	client    string
	timer     *time.Timer // the poll's timeout, once it waits
	committed bool        // the commit landed while it waited
	fired     bool        // the timeout fired
}

// serverAfter is the server's long-poll timer: virtual time that expires at
// once, except for a poll with a wake-up planned, which really blocks.
func (w *world) serverAfter(d time.Duration) <-chan time.Time {
	w.mu.Lock()
	p := w.wake
	if p == nil || p.timer != nil {
		w.mu.Unlock()
		return w.clock.After(d)
	}
	ch := make(chan time.Time, 1)
	p.timer = time.AfterFunc(wakeWait, func() {
		w.mu.Lock()
		p.fired = true
		w.mu.Unlock()
		w.clock.advance(d)
		ch <- w.clock.Now()
	})
	w.mu.Unlock()
	return ch
}

// longPollHook handles the server's long-poll failpoints: the planned
// commit lands while the poll waits; when the wait ends its timer stops.
func (w *world) longPollHook(name string) {
	w.mu.Lock()
	p := w.wake
	if p == nil || p.timer == nil {
		w.mu.Unlock()
		return
	}
	if name == "server.long-poll.done" {
		p.timer.Stop()
		w.mu.Unlock()
		return
	}
	if p.committed {
		w.mu.Unlock()
		return
	}
	p.committed = true
	w.mu.Unlock()
	w.logf("server: a commit lands while %s's long poll waits", p.client)
	body := `{"baton":null,"requests":[{"type":"execute","stmt":{"sql":"CREATE TABLE IF NOT EXISTS wake(n INTEGER PRIMARY KEY)"}},{"type":"execute","stmt":{"sql":"INSERT INTO wake DEFAULT VALUES"}}]}`
	req, _ := http.NewRequest("POST", "http://sim/v2/pipeline", nil)
	req.Header.Set("Content-Type", "application/json")
	w.tr.mu.Lock()
	h := w.tr.handler
	w.tr.mu.Unlock()
	if h == nil {
		return
	}
	var rec *httptest.ResponseRecorder
	w.probe(func() { rec = w.tr.serve(h, req, []byte(body)) })
	if rec.Code != 200 || strings.Contains(rec.Body.String(), `"type":"error"`) {
		w.fail("the commit planned during a long poll failed: HTTP %d %s", rec.Code, rec.Body.String())
	}
}

// checkWake ends the wake-up plan of an operation and checks it.
func (w *world) checkWake() {
	w.mu.Lock()
	p := w.wake
	w.wake = nil
	w.mu.Unlock()
	if p == nil {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.committed && p.fired {
		w.fail("%s's long poll slept through a commit that landed while it waited: it woke at its timeout", p.client)
	}
}
