package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// retention is the server's history retention, in virtual time. The
// simulation never lets it act by itself: maintain compacts up to what
// the clients still hold, or (every other time) past it (see maintain).
const retention = time.Hour

// serverNow is the server's clock: the virtual time, or the moment maintain
// chose for a compaction.
func (w *world) serverNow() time.Time {
	if at := w.compactAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return w.clock.Now()
}

// committed records the virtual time of revision seq.
func (w *world) committed(seq int64) {
	w.mu.Lock()
	w.commitTimes[seq] = w.clock.Now()
	w.mu.Unlock()
}

// maintain runs the server's maintenance (checkpoint, and compaction of the
// history up to the oldest revision a client still holds) and checks that
// it changed no retained revision: the pages of the oldest one kept and of
// one the seed picks are the same before and after. Every other call
// compacts up to the latest revision instead, past what the clients hold,
// as a retention that passed while they were away: they must go on
// pulling (and fetching) from their compacted revisions.
func (w *world) maintain(ctx context.Context) string {
	held, ok := w.heldFloor()
	floor := held
	if w.maintains.Add(1)%2 == 0 {
		if latest, err := w.serverRevision(); err == nil {
			floor, ok = parseRevSeq(latest), true
		}
	}
	var seq int64 // the newest revision at or below floor with a known commit time
	w.mu.Lock()
	for s := range w.commitTimes {
		if s <= floor && s > seq {
			seq = s
		}
	}
	at := w.commitTimes[seq]
	w.mu.Unlock()
	latest, err := w.serverRevision()
	if seq <= w.compactedTo.Load() {
		ok = false // the horizon is there already
	}
	if !ok || seq == 0 || err != nil {
		if err := w.srv.Maintain(ctx); err != nil && !w.historyFaulted() {
			w.fail("server maintain: %v", err)
		}
		return fmt.Sprintf("no compaction (floor %d, %v)", floor, err)
	}
	id, last := latest[:len(latest)-len(fmt.Sprint(parseRevSeq(latest)))], parseRevSeq(latest)
	check := []int64{seq, seq + (last-seq)/2} // not drawn from rng, so that the seeds stay as they were
	before := make([]string, len(check))
	for i, s := range check {
		if before[i], err = w.revisionHash(id + fmt.Sprint(s)); err != nil {
			w.fail("server revision %d before compaction: %v", s, err)
			return "error"
		}
	}
	// Revisions committed before at (less a millisecond: several commit in
	// one) go; seq and everything after it stay.
	w.compactAt.Store(at.Add(retention - time.Millisecond).UnixNano())
	w.compactedTo.Store(seq) // also if it fails: the horizon may have moved
	err = w.srv.Maintain(ctx)
	w.compactAt.Store(0)
	if err != nil {
		if w.historyFaulted() {
			return "not done, a history write failed: " + err.Error()
		}
		w.fail("server maintain: %v", err)
		return "error"
	}
	for i, s := range check {
		after, err := w.revisionHash(id + fmt.Sprint(s))
		if err != nil {
			w.fail("server revision %d after compacting below %d: %v", s, seq, err)
		} else if after != before[i] {
			w.fail("compacting the history below revision %d changed the pages of the retained revision %d", seq, s)
		}
	}
	return fmt.Sprintf("compacted below %d (clients hold %d), revisions %v unchanged", seq, held, check)
}

// heldFloor is the oldest revision a client holds on disk: its synced
// revision, and for a partial replica the revision it fetches pages at.
func (w *world) heldFloor() (int64, bool) {
	floor, any := int64(0), false
	for _, c := range w.clients {
		meta, err := metaactor.Load(fsx.OS, layout.For(c.path).Info)
		if errors.Is(err, os.ErrNotExist) || err == nil && meta == nil {
			continue
		}
		if err != nil {
			return 0, false
		}
		revs := []string{revisionOf(meta)}
		if p := meta.SyncDB.Partial; p != nil {
			revs = append(revs, p.FetchRevision)
		}
		for _, r := range revs {
			if r == "" {
				continue
			}
			if s := parseRevSeq(r); !any || s < floor {
				floor, any = s, true
			}
		}
	}
	return floor, any
}

// serverRevision is the server's latest revision, past the faults.
func (w *world) serverRevision() (string, error) {
	hdr, _, err := w.serverPages("", 1)
	if err != nil {
		return "", err
	}
	return hdr.ServerRevision, nil
}

// revisionHash is a hash of every page of the server's revision rev.
func (w *world) revisionHash(rev string) (string, error) {
	hdr, _, err := w.serverPages(rev, 1)
	if err != nil {
		return "", err
	}
	hdr, pages, err := w.serverPages(rev, uint32(hdr.DbSize))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d pages\n", hdr.DbSize)
	for pg := uint32(1); pg <= uint32(hdr.DbSize); pg++ {
		fmt.Fprintf(h, "%d %d\n", pg, len(pages[pg]))
		h.Write(pages[pg])
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:8]), nil
}

// serverPages fetches pages 1..n of the server's revision rev ("" = the
// latest), past the faults.
func (w *world) serverPages(rev string, n uint32) (*syncpb.PullUpdatesRespProtoBody, map[uint32][]byte, error) {
	sel, _ := wire.EncodeSelector(wire.SelectorRange(0, n))
	body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerRevision: rev, ServerPagesSelector: sel})
	req, _ := http.NewRequest("POST", "http://sim/pull-updates", nil)
	w.tr.mu.Lock()
	h := w.tr.handler
	w.tr.mu.Unlock()
	if h == nil {
		return nil, nil, errors.New("server down")
	}
	var rec *httptest.ResponseRecorder
	w.probe(func() { rec = w.tr.serve(h, req, body) }) // past the faults, and drawing nothing from rng
	if rec.Code != 200 {
		return nil, nil, fmt.Errorf("HTTP %d: %s", rec.Code, rec.Body.Bytes())
	}
	fr := wire.NewFrameReader(rec.Body, 0)
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if err := fr.Next(hdr); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	pages := map[uint32][]byte{}
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			return hdr, pages, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("page: %w", err)
		}
		pages[uint32(id+1)] = bytes.Clone(page)
	}
}
