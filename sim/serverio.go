package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// historyFault makes writes of the server's page history (history.sqlite
// and its WAL) fail with "disk full", which the server survives: the n-th
// write once, or, with full, every write for a few operations (the
// history's disk is full; a server crash then recovers commits from the WAL
// into a history that cannot take them). The simulation's own probes of the
// server (the revision after a push, pages of a revision, the commit that
// wakes a long poll) run past it, as they run past the network faults.
type historyFault struct {
	mu    sync.Mutex
	n     int  // writes left before the one that fails (one-shot)
	full  bool // every write fails
	ops   int  // operations left while full
	fired bool // a write failed during this operation

	probing atomic.Int32 // probes in progress: no fault
}

// armHistoryFault arms a fault of the server's history for the coming
// operation, from the seed's stream of server faults.
func (w *world) armHistoryFault() {
	f := &w.hfault
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full || f.n > 0 {
		return
	}
	if w.srng.IntN(3) == 0 {
		f.full, f.ops = true, 1+w.srng.IntN(3)
		w.logf("server: the history's disk is full for %d operations", f.ops)
		return
	}
	f.n = 1 + w.srng.IntN(4)
}

// historyWriteFails is the server's full-disk predicate (shimvfs SetFull).
func (w *world) historyWriteFails(path string) bool {
	f := &w.hfault
	if !strings.Contains(path, historyFile) || f.probing.Load() > 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.full:
	case f.n == 0:
		return false
	case f.n > 1:
		f.n--
		return false
	default:
		f.n = 0
	}
	if !f.fired {
		f.fired = true
		w.logf("server: injected disk-full error writing %s", path[strings.LastIndexByte(path, '/')+1:])
	}
	return true
}

// historyFile is the name of the server's page history file.
const historyFile = "history.sqlite"

// endHistoryFault ends an operation for the history fault: a one-shot
// fault that did not fire is dropped; a full disk lasts its operations. It
// reports whether a write failed during the operation.
func (w *world) endHistoryFault() bool {
	f := &w.hfault
	f.mu.Lock()
	defer f.mu.Unlock()
	fired := f.fired
	f.fired, f.n = false, 0
	if f.full {
		if f.ops--; f.ops <= 0 {
			f.full = false
			w.logf("server: the history's disk has room again")
		}
	}
	return fired
}

// historyFaulted reports whether a history write failed during this
// operation.
func (w *world) historyFaulted() bool {
	w.hfault.mu.Lock()
	defer w.hfault.mu.Unlock()
	return w.hfault.fired
}

// clearHistoryFault ends every history fault (quiescence).
func (w *world) clearHistoryFault() {
	w.hfault.mu.Lock()
	w.hfault.n, w.hfault.full = 0, false
	w.hfault.mu.Unlock()
}

// probe runs fn past the history faults.
func (w *world) probe(fn func()) {
	w.hfault.probing.Add(1)
	defer w.hfault.probing.Add(-1)
	fn()
}

// bootPlan is a bootstrap planned beside a push, in the window between the
// push's commit and its recording in the history (the failpoint
// server.committed): its read transaction sees a commit its revision does
// not have. It is held when it starts reading the files (server.live-read)
// while the push ends and a checkpoint runs; then it reads, and must serve
// exactly the pages its revision has in the history.
type bootPlan struct {
	started bool
	reading chan struct{} // closed when the bootstrap holds its files, before it reads
	release chan struct{} // closed to let it read
	done    chan struct{} // closed when it ended
	held    bool          // it reached server.live-read

	status int
	rev    string
	size   uint32
	pages  map[uint32][]byte
	err    error
}

// bootHook starts the planned bootstrap at server.committed and waits
// until it holds its files (or ended without them: a cached snapshot, or a
// checkpoint due, serves it from elsewhere).
func (w *world) bootHook() {
	w.mu.Lock()
	p := w.boot
	if p == nil || p.started {
		w.mu.Unlock()
		return
	}
	p.started = true
	p.reading, p.release, p.done = make(chan struct{}), make(chan struct{}), make(chan struct{})
	w.mu.Unlock()
	w.tr.mu.Lock()
	h := w.tr.handler
	w.tr.mu.Unlock()
	go func() {
		defer close(p.done)
		body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{})
		req, _ := http.NewRequest("POST", "http://sim/pull-updates", nil)
		rec := w.tr.serve(h, req, body)
		p.status = rec.Code
		if rec.Code != 200 {
			p.err = fmt.Errorf("HTTP %d: %s", rec.Code, rec.Body.Bytes())
			return
		}
		p.rev, p.size, p.pages, p.err = readPull(rec.Body)
	}()
	select {
	case <-p.reading:
	case <-p.done:
	}
}

// liveReadHook holds the planned bootstrap when it starts reading the
// files. (Between bootHook and it, nothing else runs on the server.)
func (w *world) liveReadHook() {
	w.mu.Lock()
	p := w.boot
	if p == nil || !p.started || p.held {
		w.mu.Unlock()
		return
	}
	p.held = true
	w.mu.Unlock()
	close(p.reading)
	<-p.release
}

// finishBoot ends the bootstrap planned for an operation: it checkpoints
// the server while the bootstrap holds its files, lets it read, and checks
// its pages against the history's pages of its revision.
func (w *world) finishBoot(ctx context.Context) {
	w.mu.Lock()
	p := w.boot
	w.boot = nil
	held := p != nil && p.held
	w.mu.Unlock()
	if p == nil || !p.started {
		return
	}
	if held {
		// No compaction: compactAt is set to before the first revision.
		w.compactAt.Store(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		err := w.srv.Maintain(ctx)
		w.compactAt.Store(0)
		w.logf("server: checkpoint while a bootstrap holds the files: %s", errText(err))
		close(p.release)
	}
	<-p.done
	if p.err != nil {
		if p.status != 503 {
			w.fail("the bootstrap beside a push failed: %v", p.err)
		}
		return
	}
	var want map[uint32][]byte
	var err error
	w.probe(func() { _, want, err = w.serverPages(p.rev, p.size) })
	if err != nil {
		w.fail("the history's pages of revision %s: %v", p.rev, err)
		return
	}
	var diff []uint32
	for pg := uint32(1); pg <= p.size; pg++ {
		if !bytes.Equal(p.pages[pg], want[pg]) {
			diff = append(diff, pg)
		}
	}
	w.logf("server: a bootstrap started beside a push (held %v) served revision %s, %d pages", held, p.rev, p.size)
	if len(diff) > 0 {
		sort.Slice(diff, func(i, j int) bool { return diff[i] < diff[j] })
		w.fail("a bootstrap of revision %s, started between a push's commit and its recording, served pages %v unlike the revision's in the history (newer ones)", p.rev, diff)
	}
}

// readPull reads a pull response: its revision, database size and pages.
func readPull(r io.Reader) (string, uint32, map[uint32][]byte, error) {
	fr := wire.NewFrameReader(r, 0)
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if err := fr.Next(hdr); err != nil {
		return "", 0, nil, fmt.Errorf("header: %w", err)
	}
	pages := map[uint32][]byte{}
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			return hdr.ServerRevision, uint32(hdr.DbSize), pages, nil
		}
		if err != nil {
			return "", 0, nil, fmt.Errorf("page: %w", err)
		}
		pages[uint32(id+1)] = bytes.Clone(page)
	}
}
