package server

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/internal/zstdchunks"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// zstdLevel is the level advertised to clients that asked for zstd pages.
const zstdLevel = 1

var pageEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

// pullPlan is what a /pull-updates request resolves to.
type pullPlan struct {
	target history.Revision
	named  int64           // the revision the response names, if not target's (see compacted)
	pages  *roaring.Bitmap // SQLite page numbers (1-based) to send
	all    bool            // every page 1..target.DBSize
	zstd   bool
	src    pageSource // where the pages come from (set by planPull)

	// stream: raw pages in a zstd stream (Content-Encoding: zstd), for a
	// client that accepts it; zstd is then false.
	stream bool

	cached     *os.File        // the whole response, from the snapshot cache (src is then nil)
	cachedSize int64           // its size
	cachedKind snapshotKind    // its encoding
	cache      *snapshotWriter // receives a copy of the response for the snapshot cache
}

// release closes what the plan holds.
func (p *pullPlan) release() {
	if p.src != nil {
		p.src.close()
	}
	if p.cached != nil {
		p.cached.Close()
	}
	if p.cache != nil {
		p.cache.abort()
	}
}

// handlePull serves POST /pull-updates.
func (s *Server) handlePull(w http.ResponseWriter, r *http.Request, d *database) {
	body, ok := s.readBody(w, r, s.cfg.MaxPullRequestBytes)
	if !ok {
		return
	}
	var req syncpb.PullUpdatesReqProtoBody
	if err := proto.Unmarshal(body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "malformed pull-updates request: %v", err)
		return
	}
	plan, err := s.planPull(r.Context(), d, &req, acceptsZstd(r.Header))
	if err != nil {
		if plan != nil {
			plan.release()
		}
		status := pullStatus(err)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		httpError(w, status, "%v", err)
		return
	}
	if plan.cached != nil {
		s.sendCached(w, r, d, plan)
		return
	}
	defer plan.src.close()
	s.streamPages(w, r, d, plan)
}

// sendCached sends a cached bootstrap response as it is: the kernel copies
// the file to the socket.
func (s *Server) sendCached(w http.ResponseWriter, r *http.Request, d *database, plan *pullPlan) {
	defer plan.cached.Close()
	s.metrics.snapshotHits.Inc()
	w.Header().Set("Content-Type", "application/protobuf")
	w.Header().Set("Content-Length", strconv.FormatInt(plan.cachedSize, 10))
	w.Header().Set("Vary", "Accept-Encoding")
	if plan.cachedKind == snapshotZstd {
		w.Header().Set("Content-Encoding", "zstd")
	}
	w.WriteHeader(http.StatusOK)
	n, err := newDeadlineWriter(w, s.cfg.IOTimeout).copyFrom(plan.cached)
	s.metrics.bytesOut.WithLabelValues("pull").Add(float64(n))
	if err == nil && n != plan.cachedSize {
		err = fmt.Errorf("cached snapshot: sent %d of %d bytes", n, plan.cachedSize)
	}
	if err != nil {
		if r.Context().Err() == nil {
			d.log.Warn("pull stream aborted", "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// acceptsZstd reports whether an Accept-Encoding header lists zstd with a
// non-zero weight. Turso's clients send "application/protobuf" there, which
// is not a content coding: they always get the plain stream.
func acceptsZstd(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(item, ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "zstd") {
				continue
			}
			q, ok := strings.CutPrefix(strings.ReplaceAll(strings.TrimSpace(params), " ", ""), "q=")
			if !ok {
				return true
			}
			if w, err := strconv.ParseFloat(q, 64); err == nil && w > 0 {
				return true
			}
		}
	}
	return false
}

// planPull validates the request and decides which pages of which revision
// to send. It may wait (long poll). acceptZstd: the client takes a zstd
// stream (Content-Encoding). Its errors say whose fault they are (see
// pullStatus); it may return a plan with an error, to be released.
//
// The decisions are pure (readPullRequest, pullRevisions, pageQuery's
// since and choose; TestPlanPull runs them as scenarios); planPull does
// the I/O between them: it checks the revisions, refreshes, waits, and
// reads the changed pages and the query selector's pages from the history.
func (s *Server) planPull(ctx context.Context, d *database, req *syncpb.PullUpdatesReqProtoBody, acceptZstd bool) (*pullPlan, error) {
	r, err := readPullRequest(req)
	if err != nil {
		return nil, err
	}
	if err := d.catchUp(ctx); err != nil {
		return nil, unavailable(err)
	}
	plan := &pullPlan{zstd: r.zstd}
	var client, server parsedRevision
	if r.client != "" {
		client.rev, client.err = d.parseRevision(ctx, r.client)
	}
	if r.server != "" && (client.err == nil || errors.Is(client.err, history.ErrTooOld) && client.rev.Seq > 0) {
		server.rev, server.err = d.parseRevision(ctx, r.server)
	}
	revs, err := pullRevisions(r, client, server)
	if err != nil {
		return nil, err
	}
	plan.target = revs.target
	if revs.latest {
		// The latest revision, wherever it was recorded: a client that saw
		// its push acknowledged by one node pulls it from any other.
		if err := d.hist.Refresh(ctx); err != nil {
			return nil, unavailable(err)
		}
		if revs.wait && d.hist.Latest().Seq <= revs.from {
			timeout := min(r.longPoll, s.cfg.MaxLongPoll)
			s.metrics.longPollWaiters.Inc()
			// A waiting long poll does not count against
			// MaxRequestsPerDatabase: it holds nothing but a goroutine.
			d.working.Add(-1)
			d.waitChange(ctx, revs.from, timeout)
			d.working.Add(1)
			s.metrics.longPollWaiters.Dec()
		}
		plan.target = d.hist.Latest()
		if revs.snapshot {
			if err := s.planSnapshot(ctx, d, plan, acceptZstd); err != nil || plan.src != nil || plan.cached != nil {
				return plan, err
			}
		}
	}
	q := pageQuery{from: revs.from, past: revs.past, target: plan.target, sel: r.sel}
	since, err := q.since()
	if err != nil {
		return plan, err
	}
	// Every other pull reads this one history view, for its pages, the
	// changed set and the query selector alike: a pull that took a second
	// view could wait forever once concurrent pulls held every history
	// connection.
	var hrd history.View
	if plan.src == nil {
		var done func()
		if revs.from < 0 && r.sel == nil {
			// A bootstrap from the history (of the latest revision or
			// a named one, every page or a query's) takes a slot of
			// its own (historyBootstraps), leaving history connections
			// to incremental pulls.
			if done, err = d.historyBootstrap(ctx); err != nil {
				return plan, unavailable(err)
			}
		}
		if hrd, err = d.hist.Reader(ctx); err != nil {
			if done != nil {
				done()
			}
			return plan, unavailable(err)
		}
		plan.src = &historySource{rd: hrd, seq: plan.target.Seq, done: done}
	}
	if r.query != "" {
		if q.query, err = d.queryPages(ctx, hrd, plan.target, r.query, s.cfg.StatementTimeout); err != nil {
			return plan, badPull(fmt.Errorf("server_query_selector: %w", err))
		}
	}
	var changed *roaring.Bitmap
	if since >= 0 {
		if changed, err = hrd.ChangedBetween(ctx, since, plan.target.Seq); err != nil {
			return plan, err
		}
	}
	plan.pages, plan.all, plan.named, err = q.choose(changed)
	return plan, err
}

// pullRequest is a /pull-updates request, checked.
type pullRequest struct {
	zstd           bool            // pages zstd-compressed one by one
	sel            *roaring.Bitmap // server_pages_selector: 0-based page indexes, nil for none
	query          string          // server_query_selector
	client, server string          // the revisions named ("" for none)
	longPoll       time.Duration
}

// readPullRequest checks what a request asks for, before anything is read.
func readPullRequest(req *syncpb.PullUpdatesReqProtoBody) (pullRequest, error) {
	r := pullRequest{query: req.ServerQuerySelector, client: req.ClientRevision, server: req.ServerRevision,
		longPoll: time.Duration(req.LongPollTimeoutMs) * time.Millisecond}
	if req.StreamKind != syncpb.PullUpdatesStreamKind_PULL_UPDATES_STREAM_KIND_PAGES {
		return r, badPull(errors.New("this server speaks the page protocol only (stream_kind must be PAGES)"))
	}
	switch req.Encoding {
	case syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_RAW:
	case syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD:
		r.zstd = true
	default:
		return r, badPull(fmt.Errorf("unknown page encoding %d", req.Encoding))
	}
	var err error
	if r.sel, err = wire.DecodeSelector(req.ServerPagesSelector); err != nil {
		return r, badPull(err)
	}
	return r, nil
}

// parsedRevision is a revision of the request as parseRevision read it.
type parsedRevision struct {
	rev history.Revision
	err error
}

// pullRevs is between which revisions a pull goes.
type pullRevs struct {
	from int64 // the client's revision; -1 for none: a snapshot or a page fetch
	// past: a page fetch as of this revision, which compaction dropped (0
	// for none); the pages are read at the latest revision (see choose).
	past     int64
	target   history.Revision // the revision to send, unless latest
	latest   bool             // the latest revision, after a refresh
	wait     bool             // with latest: long poll until a revision after from
	snapshot bool             // with latest: every page, which a cached or live snapshot may serve
}

// pullRevisions decides between which revisions a pull goes, from the
// request and its revisions as parseRevision read them. A client revision
// below the horizon is served all the same (its changed pages are known);
// a server revision below it only for a page fetch without a client
// revision or query selector (see pageQuery.choose).
func pullRevisions(r pullRequest, client, server parsedRevision) (pullRevs, error) {
	revs := pullRevs{from: -1}
	if r.client != "" {
		if client.err != nil && !(errors.Is(client.err, history.ErrTooOld) && client.rev.Seq > 0) {
			return revs, revisionError(client.err)
		}
		revs.from = client.rev.Seq
	}
	if r.server == "" {
		revs.latest = true
		revs.wait = revs.from >= 0 && r.longPoll > 0
		revs.snapshot = revs.from < 0 && r.sel == nil && r.query == ""
		return revs, nil
	}
	switch {
	case server.err == nil:
		revs.target = server.rev
	case errors.Is(server.err, history.ErrTooOld) && server.rev.Seq > 0 && revs.from < 0 && r.sel != nil && r.query == "":
		revs.past, revs.latest = server.rev.Seq, true
	default:
		return revs, revisionError(server.err)
	}
	return revs, nil
}

// pageQuery is what the pages a pull sends depend on, once its revisions
// are known.
type pageQuery struct {
	from, past int64            // as in pullRevs
	target     history.Revision // the revision sent
	sel        *roaring.Bitmap  // the request's page selector (0-based), nil for none
	query      *roaring.Bitmap  // the pages the query selector names (1-based), nil for none
}

// since is the revision after which choose needs the changed pages up to
// the target (-1 for none), or why the request cannot be served.
func (q pageQuery) since() (int64, error) {
	switch {
	case q.from > q.target.Seq:
		return -1, badPull(fmt.Errorf("client_revision %d is newer than the requested revision %d", q.from, q.target.Seq))
	case q.past > 0:
		return q.past, nil
	}
	return q.from, nil
}

// choose decides the pages to send (all: every page 1..target.DBSize) and
// the revision the response names if not the target's, from the pages
// changed after since() up to the target (changed may be modified). Only
// pages of the target's database are sent: a page beyond its size (the
// database shrank, or a selector names it) is not.
//
// A page fetch as of a compacted revision past is answered exactly when
// no revision after past wrote the pages it asks for: they read the same
// at the target as at past, and the history knows which pages those are
// (compaction keeps every page's newest version at or below the horizon,
// so the pages written after any revision are the same set before and
// after it). The pages are read at the target and named as of past. A page
// written since, or beyond the target's size, cannot be told:
// ErrBadRevision (410), and the client's next pull brings it (it pulls
// from past, which the changed pages answer exactly too).
func (q pageQuery) choose(changed *roaring.Bitmap) (pages *roaring.Bitmap, all bool, named int64, err error) {
	if q.past > 0 {
		want := roaring.AddOffset64(q.sel, 1) // 1-based
		want.Remove(0)
		unknown := roaring.And(changed, want)
		beyond := want.Clone()
		beyond.RemoveRange(0, uint64(q.target.DBSize)+1)
		unknown.Or(beyond)
		if !unknown.IsEmpty() {
			return nil, false, 0, fmt.Errorf("%w: page %d changed after revision %d, which is older than the retained history: pull, then fetch it",
				ErrBadRevision, unknown.Minimum(), q.past)
		}
		return want, false, q.past, nil
	}
	var want *roaring.Bitmap // 1-based; nil = everything
	if q.sel != nil {
		// Work by container, never by page: a small selector can name
		// every one of 2^32 pages.
		sel := q.sel.Clone()
		sel.RemoveRange(uint64(q.target.DBSize), 1<<32)
		want = roaring.AddOffset64(sel, 1)
	}
	if q.query != nil {
		if want == nil {
			want = q.query
		} else {
			want.Or(q.query)
		}
	}
	switch {
	case q.from >= 0:
		if want != nil {
			changed.And(want)
		}
		pages = changed
	case want != nil:
		pages = want
	default:
		return nil, true, 0, nil
	}
	if q.target.DBSize < maxPgno {
		pages.RemoveRange(uint64(q.target.DBSize)+1, uint64(maxPgno)+1)
		pages.Remove(0)
	}
	return pages, false, 0, nil
}

// planSnapshot plans a whole snapshot of the latest revision (a bootstrap).
// A cached response of that revision is sent as it is: the zstd stream to a
// client that takes one, else the page encoding it asked for. Otherwise raw
// pages (in a zstd stream for a client that takes one) come from the
// database itself, in one scan, whose snapshot may be a little newer than
// plan.target (not for small pulls: the snapshot has to wait for the
// writer, see live, the history does not). zstd pages come from the
// history, where they are stored compressed. It leaves plan.src and
// plan.cached nil when the history is to serve the pull.
func (s *Server) planSnapshot(ctx context.Context, d *database, plan *pullPlan, acceptZstd bool) error {
	pages := snapshotRaw
	if plan.zstd {
		pages = snapshotZstdPages
	}
	kinds := []snapshotKind{pages}
	if acceptZstd {
		kinds = []snapshotKind{snapshotZstd, pages}
	}
	for _, k := range kinds {
		if f, size := d.snapshots.open(plan.target.Seq, k); f != nil {
			plan.cached, plan.cachedSize, plan.cachedKind = f, size, k
			return nil
		}
	}
	cacheHistory := plan.zstd // the history is where zstd pages come from
	if !plan.zstd || acceptZstd {
		live, rev, err := d.live(ctx)
		if err == nil {
			plan.src, plan.target, plan.all = live, rev, true
			kind := snapshotRaw
			if acceptZstd {
				plan.stream, plan.zstd, kind = true, false, snapshotZstd
			}
			plan.cache = d.snapshots.create(rev.Seq, int64(rev.DBSize)*history.PageSize, kind)
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, errClosed) {
			return unavailable(err)
		}
		// The history has every revision's pages too, only slower: it
		// serves the bootstrap when no reader came free within
		// bootstrapReaderWait (errReadersBusy) too, so that bootstraps
		// never queue behind clients that stall.
		switch {
		case errors.Is(err, errNoLocal): // the snapshot cache takes a copy of this one too
			cacheHistory = true
		case !errors.Is(err, errCheckpointDue) && !errors.Is(err, errReadersBusy):
			d.log.Warn("bootstrap from the history: cannot read the database", "err", err)
		}
	}
	if cacheHistory {
		plan.cache = d.snapshots.create(plan.target.Seq, int64(plan.target.DBSize)*history.PageSize, pages)
	}
	return nil
}

// The kinds of pull error, by whose fault they are. pullStatus maps them to
// HTTP, in one place.
var (
	// errBadPull: the request itself is wrong; repeating it cannot help.
	errBadPull = errors.New("bad pull request")
	// errUnavailable: the store or the server could not answer now; the
	// client retries.
	errUnavailable = errors.New("unavailable")
)

// kindError gives err a kind without changing its message.
type kindError struct {
	kind, err error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func badPull(err error) error     { return &kindError{errBadPull, err} }
func unavailable(err error) error { return &kindError{errUnavailable, err} }

// revisionError classifies a revision that cannot be checked: one this
// database cannot serve (ErrBadRevision) stays as it is, anything else is
// the store not answering.
func revisionError(err error) error {
	if errors.Is(err, ErrBadRevision) {
		return err
	}
	return unavailable(err)
}

// pullStatus is the HTTP answer to a pull error: 400 for a bad request, 503
// when the store could not say (the client retries), 410 Gone for a
// revision this database cannot serve (the client bootstraps again), 500 for
// anything else.
func pullStatus(err error) int {
	switch {
	case errors.Is(err, errBadPull):
		return http.StatusBadRequest
	case errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrBadRevision):
		return http.StatusGone
	}
	return http.StatusInternalServerError
}

// maxPgno bounds page numbers: SQLite's own limit.
const maxPgno = 0xFFFFFFFE

// streamPages writes the header and the pages. Once the header is out, an
// error can only abort the connection, which the client sees as a truncated
// stream.
func (s *Server) streamPages(w http.ResponseWriter, r *http.Request, d *database, plan *pullPlan) {
	var err error

	hdr := &syncpb.PullUpdatesRespProtoBody{
		ServerRevision: d.revision(cmp.Or(plan.named, plan.target.Seq)),
		DbSize:         uint64(plan.target.DBSize),
		Protocol:       syncpb.PullUpdatesProtocol_PULL_UPDATES_PROTOCOL_PAGES,
	}
	if plan.zstd {
		hdr.ZstdEncoding = &syncpb.PageSetZstdEncodingProto{Level: zstdLevel}
	} else {
		hdr.RawEncoding = &syncpb.PageSetRawEncodingProto{}
	}
	w.Header().Set("Content-Type", "application/protobuf")
	w.Header().Set("Vary", "Accept-Encoding")
	if plan.stream {
		w.Header().Set("Content-Encoding", "zstd")
	}
	w.WriteHeader(http.StatusOK)
	s.metrics.pullStreams.Inc()
	defer s.metrics.pullStreams.Dec()
	cw := &countingWriter{w: newDeadlineWriter(w, s.cfg.IOTimeout), tee: plan.cache}
	plan.cache = nil // the writer owns it now
	var bw interface {
		io.Writer
		Flush() error
	}
	if plan.stream {
		// Compressed in chunks, on every core: a zstd stream as fast
		// as the raw one on a fast link.
		bw = flushCloser{zstdchunks.NewWriter(cw)}
	} else {
		bw = bufio.NewWriterSize(cw, 256<<10)
	}
	defer func() {
		s.metrics.bytesOut.WithLabelValues("pull").Add(float64(cw.n))
		if cw.tee == nil {
			return
		}
		if err != nil {
			cw.tee.abort()
		} else if cerr := cw.tee.commit(); cerr != nil {
			d.log.Warn("bootstrap not cached", "err", cerr)
		}
	}()
	_, err = wire.WriteDelimited(bw, hdr)

	var enc, frame []byte
	write := func(pgno uint32, data []byte) error {
		frame = wire.AppendPageHeader(frame[:0], uint64(pgno-1), len(data))
		if _, err := bw.Write(frame); err != nil {
			return err
		}
		_, err := bw.Write(data)
		return err
	}
	set := plan.pages
	if plan.all {
		set = history.AllPages(plan.target.DBSize)
	}
	if err == nil {
		err = plan.src.pages(r.Context(), set, !plan.zstd, func(pgno uint32, data []byte, compressed bool) error {
			// Stored zstd frames go out as they are.
			if plan.zstd && !compressed {
				enc = pageEncoder.EncodeAll(data, enc[:0])
				return write(pgno, enc)
			}
			return write(pgno, data)
		})
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if r.Context().Err() == nil {
			d.log.Warn("pull stream aborted", "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// flushCloser makes a Close a Flush: the end of the stream.
type flushCloser struct{ *zstdchunks.Writer }

func (f flushCloser) Flush() error { return f.Close() }

// countingWriter counts the bytes sent and copies them to tee, if set. A
// failing tee is dropped: the response goes on without it.
type countingWriter struct {
	w   io.Writer
	n   int64
	tee *snapshotWriter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.tee != nil {
		if _, terr := c.tee.Write(p[:n]); terr != nil {
			c.tee.abort()
			c.tee = nil
		}
	}
	return n, err
}
