package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/server/stream"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/hranapb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Hrana over HTTP (v2 and v3, JSON and protobuf): every pipeline or cursor
// request runs on a stream that lives across requests, named by the baton
// of the previous response (see package stream). A stream's stored SQL and
// its transaction survive between requests: a request that ends inside a
// transaction keeps the database's writer for the next request on the same
// stream (see writer.go), until the transaction ends, the stream is closed
// or it expires, which rolls the transaction back.

// hranaStream is the state of one stream between its requests.
type hranaStream struct {
	d        *database
	sqls     *sqlTexts
	holds    bool // it keeps d's writer: it is inside a transaction
	readOnly bool // inside BEGIN TRANSACTION READONLY (PRAGMA query_only is on)
	closed   bool // a close request ended it
	// timedOut (nil: not) is the error of its requests until the client
	// ends the transaction (see wsConn.abortedTxn): the server rolled its
	// transaction back (WebSocket, idle: see wsConn.keepIdle; it kept the
	// writer too long: see yield; a statement interrupted in it).
	timedOut error
	// yield is set by a stream that waits for the writer while this one
	// has kept it for longer than 2×StreamTxnTimeout (takeWriter): its
	// transaction is then rolled back at once if it is idle, else when
	// its request ends (execOn). Set by other goroutines.
	yield atomic.Bool
	// foreignKeys is the stream's PRAGMA foreign_keys, which lasts as long
	// as the stream (as on sqld, where a stream is a connection): the
	// writer connection is reset for every holder, so it is set again
	// whenever the stream takes the writer.
	foreignKeys bool
}

// end rolls back the stream's open transaction and lets the writer go.
func (st *hranaStream) end(ctx context.Context) {
	if !st.holds {
		return
	}
	st.d.clearHolder(st)
	st.release(ctx)
}

// release puts the connection back and lets the writer go.
func (st *hranaStream) release(ctx context.Context) {
	st.d.clearOwner(st)
	st.d.endSession(ctx)
	st.readOnly = false
	st.holds = false
	st.d.releaseWriter()
}

// encoding of a Hrana HTTP endpoint.
type encoding int

const (
	encJSON encoding = iota
	encProtobuf
)

// hranaEndpoint is one Hrana-over-HTTP path.
type hranaEndpoint struct {
	enc    encoding
	cursor bool
	v3     bool
}

var hranaEndpoints = map[string]hranaEndpoint{
	"/v2/pipeline":          {enc: encJSON},
	"/v3/pipeline":          {enc: encJSON, v3: true},
	"/v3/cursor":            {enc: encJSON, cursor: true, v3: true},
	"/v3-protobuf/pipeline": {enc: encProtobuf, v3: true},
	"/v3-protobuf/cursor":   {enc: encProtobuf, cursor: true, v3: true},
}

// hranaVersions answer GET as sqld does: a 2xx means "this version is served".
var hranaVersions = map[string]bool{"/v2": true, "/v3": true, "/v3-protobuf": true}

// streamError answers a request whose baton cannot be used, as sqld does:
// an expired stream gets a 500 with a Hrana error (code STREAM_EXPIRED), a
// bad or reused baton a 400. The body is a JSON Error on every endpoint:
// the clients parse error bodies only as JSON or plain text (the spec lets
// the Content-Type say which).
func streamError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errTxnHeld), errors.Is(err, errTxnInterrupted):
		hranaError(w, http.StatusInternalServerError, &hrana.Error{Message: err.Error(), Code: "STREAM_EXPIRED"})
	case errors.Is(err, stream.ErrStreamExpired):
		hranaError(w, http.StatusInternalServerError, &hrana.Error{Message: "The stream has expired due to inactivity", Code: "STREAM_EXPIRED"})
	case errors.Is(err, stream.ErrBatonInvalid), errors.Is(err, stream.ErrBatonReused):
		hranaError(w, http.StatusBadRequest, &hrana.Error{Message: err.Error(), Code: "PROTOCOL_ERROR"})
	case errors.Is(err, stream.ErrTooMany), errors.Is(err, stream.ErrClosed), errors.Is(err, errClosed):
		hranaError(w, http.StatusServiceUnavailable, &hrana.Error{Message: err.Error(), Code: "SERVER_BUSY"})
	default:
		hranaError(w, http.StatusInternalServerError, &hrana.Error{Message: err.Error(), Code: "INTERNAL_ERROR"})
	}
}

func hranaError(w http.ResponseWriter, status int, e *hrana.Error) {
	body, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// handleHrana serves the pipeline and cursor endpoints.
func (s *Server) handleHrana(w http.ResponseWriter, r *http.Request, d *database, ep hranaEndpoint) {
	// Tells our client it may compress its next requests (sqld never says so).
	w.Header().Set(RequestEncodingHeader, "zstd")
	body, ok := s.readBody(w, r, s.cfg.MaxPipelineRequestBytes)
	if !ok {
		return
	}
	if body, ok = s.decodeBody(w, r, body, s.cfg.MaxPipelineRequestBytes); !ok {
		return
	}
	if ep.cursor {
		s.handleCursor(w, r, d, ep, body)
		return
	}
	var req *hrana.PipelineReqBody
	var err error
	if ep.enc == encProtobuf {
		req, err = hranapb.DecodePipelineReq(body)
	} else {
		req, err = hrana.DecodePipelineReq(body)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed pipeline request: %v", err)
		return
	}
	if !ep.v3 {
		for _, rq := range req.Requests {
			if rq.Type == hrana.ReqGetAutocommit {
				httpError(w, http.StatusBadRequest, "get_autocommit is only supported in protocol version hrana3 and higher")
				return
			}
		}
	}
	// runOnStream bounds the statements by StatementTimeout.
	ctx := r.Context()
	resp := &hrana.PipelineRespBody{Results: make([]hrana.StreamResult, 0, len(req.Requests))}
	var did run
	resp.Baton, did, err = s.onStream(ctx, d, req.Baton, req.Requests, func(ex *executor) {
		for _, rq := range req.Requests {
			resp.Results = append(resp.Results, ex.run(rq))
		}
	})
	defer s.mem.release(did.reserved)
	// Per-statement errors are part of a 200 answer, as Hrana has them. A
	// request whose statements could not write for want of disk space gets
	// 507 if nothing it sent committed; once something committed the answer
	// is a 200 whatever happened after, so that a client never retries a
	// write that happened.
	switch {
	case err != nil && (s.cfg.Cluster != nil || errors.Is(err, errNotWriter) || errors.Is(err, history.ErrFenced)) && !isStreamErr(err):
		// A lease or store problem: nothing was acknowledged, the client
		// retries (exactly once: see writeFailed).
		s.writeFailed(w, r, err)
		return
	case did.commits == 0 && err != nil && !errors.Is(err, errClosed) && !isStreamErr(err):
		s.log.Error("pipeline", "db", d.name, "err", err)
		httpError(w, http.StatusInternalServerError, "internal error; nothing was written (the server log has the details)")
		return
	case did.commits == 0 && err != nil:
		streamError(w, err)
		return
	case did.commits == 0 && did.diskFull:
		s.log.Warn("pipeline: the disk is full, nothing was written (507)", "db", d.name)
		httpError(w, http.StatusInsufficientStorage, "the server's disk is full: nothing was written")
		return
	case err != nil:
		// The writes committed: answer them (the stream is gone).
		s.log.Error("pipeline after a commit", "db", d.name, "err", err)
	}
	var out []byte
	if ep.enc == encProtobuf {
		out, err = hranapb.EncodePipelineResp(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
	} else {
		out, err = json.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encode response: %v", err)
		return
	}
	if err := s.writeBody(w, out); err != nil {
		if r.Context().Err() == nil {
			d.log.Info("pipeline response not delivered", "err", err)
		}
		if resp.Baton != nil {
			s.dropStream(*resp.Baton) // nobody has its baton
		}
	}
	s.metrics.bytesOut.WithLabelValues("pipeline").Add(float64(len(out)))
}

// isStreamErr tells errors about the stream itself (its baton) apart.
func isStreamErr(err error) bool {
	return errors.Is(err, stream.ErrStreamExpired) || errors.Is(err, errTxnHeld) || errors.Is(err, errTxnInterrupted) || errors.Is(err, stream.ErrBatonInvalid) ||
		errors.Is(err, stream.ErrBatonReused) || errors.Is(err, stream.ErrTooMany) || errors.Is(err, stream.ErrClosed)
}

// handleCursor serves /v3/cursor and /v3-protobuf/cursor: the response is
// the cursor's header, then its entries as they are produced, so neither
// side holds the whole result. The header carries the baton, which must be
// known before the batch runs: the stream is released with it only after
// the batch, and a request that arrives with it meanwhile is refused as a
// reuse.
func (s *Server) handleCursor(w http.ResponseWriter, r *http.Request, d *database, ep hranaEndpoint, body []byte) {
	var req *hrana.CursorReqBody
	var err error
	if ep.enc == encProtobuf {
		req, err = hranapb.DecodeCursorReq(body)
	} else {
		req, err = hrana.DecodeCursorReq(body)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed cursor request: %v", err)
		return
	}
	ctx := r.Context() // runOnStream bounds the batch by StatementTimeout
	h, err := s.openStream(d, req.Baton)
	if err != nil {
		streamError(w, err)
		return
	}
	// The baton the stream will have after this request.
	baton, err := h.NextBaton()
	if err != nil {
		h.State().end(ctx)
		h.Close()
		streamError(w, err)
		return
	}
	// A client that stops reading is dropped after IOTimeout, as pulls
	// are: the cursor may hold the writer.
	bw := bufio.NewWriterSize(newDeadlineWriter(w, s.cfg.IOTimeout), 32<<10)
	var written int64
	var lost error // the response could not be delivered
	put := func(m any) error {
		if lost != nil {
			return lost
		}
		var b []byte
		var err error
		if ep.enc == encProtobuf {
			var pb []byte
			switch x := m.(type) {
			case *hrana.CursorRespBody:
				pb, err = proto.Marshal(&hranapb.CursorRespBody{Baton: x.Baton, BaseUrl: x.BaseURL})
			case *hrana.CursorEntry:
				pb, err = proto.Marshal(hranapb.ToCursorEntry(x))
			}
			b = append(protowire.AppendVarint(nil, uint64(len(pb))), pb...)
		} else {
			b, err = json.Marshal(m)
			b = append(b, '\n')
		}
		if err != nil {
			return err
		}
		written += int64(len(b))
		if _, err = bw.Write(b); err != nil {
			lost = err
		}
		return err
	}
	if ep.enc == encProtobuf {
		w.Header().Set("Content-Type", "application/octet-stream")
	} else {
		w.Header().Set("Content-Type", "text/plain")
	}
	put(&hrana.CursorRespBody{Baton: &baton})
	rc := http.NewResponseController(w)
	sent := 0
	reads := readSQL(h.State(), []hrana.StreamRequest{{Type: hrana.ReqBatch, Batch: &req.Batch}})
	_, _, err = s.runOnStream(ctx, h, reads, true, func(ex *executor) {
		ex.budget, ex.mem = 1<<62, nil // a cursor streams: no response bound
		if ex.c == nil {
			put(&hrana.CursorEntry{Type: hrana.EntryError, Error: asHrana(ex.noConn)})
			return
		}
		err := ex.cursor(&req.Batch, func(e *hrana.CursorEntry) error {
			if err := put(e); err != nil {
				return err
			}
			if sent++; sent%256 == 0 {
				if err := bw.Flush(); err != nil {
					lost = err
					return err
				}
				if err := rc.Flush(); err != nil {
					lost = err
					return err
				}
			}
			return nil
		})
		if err != nil {
			put(&hrana.CursorEntry{Type: hrana.EntryError, Error: asHrana(err)})
		}
	})
	if err != nil {
		put(&hrana.CursorEntry{Type: hrana.EntryError, Error: asHrana(err)})
	}
	if ferr := bw.Flush(); ferr != nil && lost == nil {
		lost = ferr
	}
	s.metrics.bytesOut.WithLabelValues("pipeline").Add(float64(written))
	if lost != nil && err == nil {
		// The client may never have read the baton: nobody can continue
		// the stream, so it ends now rather than keep the writer (inside
		// a transaction) until it expires.
		s.dropStream(baton)
	}
}

// dropStream ends the stream of baton, rolling back its transaction, if it
// is still waiting for that baton.
func (s *Server) dropStream(baton string) {
	h, err := s.streams.Acquire(baton)
	if err != nil {
		return
	}
	h.State().end(context.Background())
	h.Close()
}

// openStream finds the stream of baton (a new one if baton is nil) and
// holds it for the request.
func (s *Server) openStream(d *database, baton *string) (*stream.Handle[*hranaStream], error) {
	if baton == nil {
		return s.streams.New(&hranaStream{d: d, sqls: newSQLTexts()})
	}
	h, err := s.streams.Acquire(*baton)
	if err != nil {
		return nil, err
	}
	if h.State().d != d {
		// Another database's stream: leave it to its owner.
		h.Restore()
		return nil, stream.ErrBatonInvalid
	}
	h.State().d.clearHolder(h.State())
	return h, nil
}

// onStream runs fn on the stream of baton and returns the baton for the
// next request (nil once the stream is closed).
func (s *Server) onStream(ctx context.Context, d *database, baton *string, reqs []hrana.StreamRequest, fn func(*executor)) (*string, run, error) {
	h, err := s.openStream(d, baton)
	if err != nil {
		return nil, run{}, err
	}
	return s.runOnStream(ctx, h, readSQL(h.State(), reqs), false, fn)
}

// runOnStream runs fn on the stream (see execOn; cursor for a cursor's
// batch), its statements bounded by StatementTimeout. Then the stream is
// released (with the baton NextBaton chose, if it was called), keeping the
// writer if it is inside a transaction, or forgotten if it was closed.
func (s *Server) runOnStream(ctx context.Context, h *stream.Handle[*hranaStream], reads []string, cursor bool, fn func(*executor)) (*string, run, error) {
	st := h.State()
	r, err := s.execOn(ctx, st, reads, runOpts{cursor: cursor, limit: s.cfg.StatementTimeout}, fn)
	if st.closed || err != nil {
		st.end(ctx)
		h.Close()
		return nil, r, err
	}
	if st.holds {
		ref := h.Ref()
		st.d.setHolder(&idleHolder{st: st, since: time.Now(), expire: func() bool { return s.streams.ExpireIdle(ref) }})
	}
	baton, err := h.Release()
	if err != nil {
		return nil, r, err
	}
	return &baton, r, nil
}

// runOpts say how execOn runs a request.
type runOpts struct {
	cursor bool // fn streams its entries to the client while it runs
	// limit bounds the request's statements (StatementTimeout, over HTTP
	// and WebSocket; 0: no bound). It starts once the request has its
	// connection: the wait for one has its own bound (StreamBusyTimeout,
	// for the writer and for a cursor's reader), so that a request that
	// waited is not left with less time to run, nor a wait counted twice.
	limit time.Duration
	// clock, if set, counts limit instead of a plain timeout: a WebSocket
	// cursor stops it while it waits for its client's fetches (which have
	// bounds of their own, see emitCursor), so that only the time its
	// statements run counts.
	clock *runClock
}

// running bounds ctx by o.limit, if any.
func (o runOpts) running(ctx context.Context) (context.Context, context.CancelFunc) {
	switch {
	case o.limit <= 0:
		return context.WithCancel(ctx)
	case o.clock != nil:
		return o.clock.start(ctx, o.limit)
	}
	return context.WithTimeout(ctx, o.limit)
}

// runClock is a timeout that can be stopped and resumed: the context start
// returns ends once it has run for its limit in all. The goroutine that
// runs the statements alone calls its methods.
type runClock struct {
	timer   *time.Timer
	left    time.Duration
	resumed time.Time
	paused  bool
}

func (c *runClock) start(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	c.left, c.resumed, c.paused = limit, time.Now(), false
	c.timer = time.AfterFunc(limit, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() { c.timer.Stop(); cancel(context.Canceled) }
}

// pause stops the clock (if it has not run out).
func (c *runClock) pause() {
	if c.timer == nil || c.paused {
		return
	}
	c.paused = true
	if c.timer.Stop() {
		c.left -= time.Since(c.resumed)
	} else {
		c.left = 0 // it ran out
	}
}

// resume lets the clock run on.
func (c *runClock) resume() {
	if c.timer == nil || !c.paused {
		return
	}
	c.paused = false
	c.resumed = time.Now()
	// Even if nothing is left: a clock stopped just as it ran out (Stop
	// returned true, left ≤ 0) must still fire, or the batch would run
	// on unbounded. One that fired already cancels again, which is a no-op.
	c.timer.Reset(max(c.left, 0))
}

// errTxnLost reports that a stream's transaction is gone: the connection
// it kept was rebuilt between two of its requests (see execOn). The client
// gets STREAM_EXPIRED, as for a stream that expired inside a transaction.
var errTxnLost = fmt.Errorf("%w: its transaction was lost (the database was reloaded while it was open)", stream.ErrStreamExpired)

// execOn runs fn with the stream's connection: the writer it keeps from an
// earlier request, or the writer taken now (waiting at most
// StreamBusyTimeout; if it cannot be had, fn runs with no connection and
// its statements fail with SQLITE_BUSY). The stream keeps the writer
// afterwards only if it is inside a transaction. fn's statements are
// bounded by o.limit from when it has its connection.
//
// A request that only reads (reads lists its SQL; nil if it may not run
// elsewhere) on a stream outside a transaction runs on a reader connection,
// in a read-only sandbox: it sees the last commit, as it would on the
// writer (which is reset between such requests), and it never waits for a
// transaction another stream keeps open. A cursor (o.cursor: fn streams its
// entries to the client while it runs) waits for a reader connection if
// none is free, at most StreamBusyTimeout, and otherwise runs with no
// connection, its batch failing with SQLITE_BUSY as for a writer that
// cannot be had (see onReader): it never holds up pulls (which wait for
// statements running on the writer) or writes however long its client
// takes to read. Another read-only request runs on the writer if no
// reader connection is free: it gives the connection back before its
// response is written.
func (s *Server) execOn(ctx context.Context, st *hranaStream, reads []string, o runOpts, fn func(*executor)) (run, error) {
	d := st.d
	if err := st.timedOut; err != nil {
		// Its transaction is gone: every request fails until the client
		// ends it (WebSocket: see wsConn.abortedTxn, which answers a
		// stream in this state before it gets here; HTTP: the error ends
		// the stream).
		return run{}, err
	}
	if st.holds && st.yielding() {
		// It kept the writer too long and another stream waits.
		st.end(ctx)
		st.timedOut = errTxnHeld
		return run{}, errTxnHeld
	}
	var noConn error
	took := false // the writer, for this request
	if !st.holds {
		var reserved int64
		// With foreign_keys on, the stream runs everything on the writer,
		// which has its setting.
		if reads != nil && !st.foreignKeys {
			ran, err := s.onReader(ctx, st, reads, o, fn, &reserved)
			switch {
			case errors.Is(err, errCursorReader):
				// The statement's error, not the stream's: the stream
				// goes on (sqld reports a busy statement so).
				noConn = err
			case err != nil:
				return run{}, err
			case ran:
				return run{reserved: reserved}, nil
			}
		}
		if noConn == nil {
			if noConn = s.takeWriter(ctx, d); noConn == nil {
				st.holds, took = true, true
				st.yield.Store(false)
				d.setOwner(st)
			}
		}
	}
	ctx, cancel := o.running(ctx)
	defer cancel()
	ex := s.executor(ctx, st)
	ex.noConn = noConn
	if !st.holds {
		fn(ex)
		return run{reserved: ex.reserved}, nil
	}
	lost := false
	auto, commits, err := d.exec(ctx, func(c *sqlitex.Conn, sb *sandbox) error {
		if !took && c.Autocommit() {
			// The stream kept the writer because it is inside a
			// transaction, and the connection is in none: the node
			// rebuilt it meanwhile (a cluster node that lost its lease
			// while another node wrote). Its statements would commit
			// one by one, a part of a transaction the client will
			// believe lost or whole.
			lost = true
			return nil
		}
		if took && st.foreignKeys {
			if err := c.Exec("PRAGMA foreign_keys = 1"); err != nil {
				return err
			}
		}
		ex.c, ex.sb = c, sb
		fn(ex)
		ex.closeStmts()
		st.foreignKeys = foreignKeysOn(c)
		return nil
	})
	if lost {
		return run{}, errors.Join(errTxnLost, err)
	}
	switch {
	case auto && err == nil:
		st.release(ctx)
	case err == nil && st.holds && st.yielding():
		// It kept the writer too long and another stream waits: its
		// transaction ends now, and its next request says so (as an
		// idle stream's that expired).
		st.end(ctx)
		st.timedOut = errTxnHeld
	}
	return run{commits: commits, diskFull: ex.diskFull, reserved: ex.reserved}, err
}

// foreignKeysOn reads the connection's PRAGMA foreign_keys.
func foreignKeysOn(c *sqlitex.Conn) bool {
	rows, err := c.Query("PRAGMA foreign_keys")
	return err == nil && len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] == int64(1)
}

// executor makes the executor of one request on st.
func (s *Server) executor(ctx context.Context, st *hranaStream) *executor {
	return &executor{ctx: ctx, st: st, budget: s.cfg.MaxResponseBytes, maxResponse: s.cfg.MaxResponseBytes, mem: s.mem}
}

// onReader runs fn on a reader connection if every statement of reads
// compiles there in a read-only sandbox (which refuses writes and
// transaction control) and is read-only. It reports whether it ran fn.
//
// A request other than a cursor never waits for a reader connection:
// bootstraps and cursors may hold theirs for as long as their clients
// stall, and the writer serves the read then, as it would inside a
// transaction (see readerConn). A cursor (o.cursor) waits for one, at most
// StreamBusyTimeout, and fails with errCursorReader if none came free: on
// the writer it would hold every write up for as long as its client does
// not fetch. A cursor whose client went away (ctx) or whose database
// closes while it waits fails with that error instead, which is not busy.
func (s *Server) onReader(ctx context.Context, st *hranaStream, reads []string, o runOpts, fn func(*executor), reserved *int64) (bool, error) {
	if st.d.opts.shared || st.d.readers == nil {
		// A cluster node's file is a cache of the shared store: everything
		// runs on the writer, which settles it first.
		return false, nil
	}
	use := useRequest
	if o.cursor {
		use = useCursor
	}
	// A reader that cannot be had or set up is no reason to refuse the
	// request: it runs on the writer (where a read runs inside a
	// transaction, or when every reader is busy), which is no more than
	// its token allows, since every Hrana request needs a token that may
	// write the database (allowed, tokenProblem; a read-only token
	// cannot reach here). A cursor does not wait for the writer instead
	// of a busy reader (it would hold every write up while its client
	// reads): it fails with the reason. A failure other than busy is
	// logged, so that broken readers do not go unseen behind the
	// fallback.
	conn, slot, err := st.d.readerConn(ctx, st.d.readers, use, s.cfg.StreamBusyTimeout)
	switch {
	case err == nil:
	case errors.Is(err, errReadersBusy) && !o.cursor:
		return false, nil
	case errors.Is(err, errReadersBusy):
		return false, fmt.Errorf("%w: %w", errCursorReader, err)
	case ctx.Err() != nil || errors.Is(err, errClosed):
		if !o.cursor {
			return false, nil
		}
		return false, err
	case !o.cursor:
		st.d.log.Warn("no reader connection for a read: it runs on the writer", "err", err)
		return false, nil
	default:
		st.d.log.Warn("no reader connection for a cursor", "err", err)
		return false, err
	}
	defer slot()
	defer conn.Close()
	ctx, cancel := o.running(ctx)
	defer cancel()
	ran := false
	err = sqlitex.Raw(ctx, conn, func(c *sqlitex.Conn) error {
		sb, err := newSandbox(c, true, st.d.opts.maxValueBytes)
		if err != nil {
			return err
		}
		defer c.SetAuthorizer(nil)
		for _, q := range reads {
			stmt, tail, err := c.Prepare(q)
			if err != nil || stmt == nil || strings.TrimSpace(tail) != "" {
				if stmt != nil {
					stmt.Close()
				}
				return nil // the writer's path runs (or reports) it
			}
			readonly := stmt.Readonly()
			stmt.Close()
			if !readonly {
				return nil
			}
		}
		ran = true
		ex := s.executor(ctx, st)
		ex.c, ex.sb = c, sb
		fn(ex)
		ex.closeStmts()
		*reserved = ex.reserved
		return nil
	})
	if err != nil && !ran && ctx.Err() == nil {
		st.d.log.Warn("cannot set up a reader connection for a read: it runs on the writer", "err", err, "cursor", o.cursor)
	} else if err != nil && ran {
		st.d.log.Warn("read on a reader connection", "err", err)
	}
	return ran, nil
}

// errCursorReader: a read-only cursor found no reader connection free
// within StreamBusyTimeout (other cursors and pulls held them all). Its
// batch fails with SQLITE_BUSY; the stream goes on.
var errCursorReader = errors.New("the read-only cursor found no reader connection free")

// readSQL lists the SQL of requests that may run on a reader connection:
// execute, batch and describe requests whose text is given or stored, and
// get_autocommit and close, which need none. It returns nil if any other
// request is among them.
func readSQL(st *hranaStream, reqs []hrana.StreamRequest) []string {
	out := []string{}
	text := func(sql *string, id *int32) bool {
		switch {
		case sql != nil:
			out = append(out, *sql)
		case id != nil:
			q, ok := st.sqls.get(*id)
			if !ok {
				return false
			}
			out = append(out, q)
		default:
			return false
		}
		return true
	}
	for _, rq := range reqs {
		switch rq.Type {
		case hrana.ReqExecute:
			if !text(rq.Stmt.SQL, rq.Stmt.SQLID) {
				return nil
			}
		case hrana.ReqBatch:
			for i := range rq.Batch.Steps {
				if !text(rq.Batch.Steps[i].Stmt.SQL, rq.Batch.Steps[i].Stmt.SQLID) {
					return nil
				}
			}
		case hrana.ReqDescribe:
			if !text(rq.SQL, rq.SQLID) {
				return nil
			}
		case hrana.ReqGetAutocommit, hrana.ReqClose:
		default:
			return nil
		}
	}
	return out
}

// run is what one request did.
type run struct {
	commits  int   // transactions committed (durable)
	diskFull bool  // a statement failed for want of disk space
	reserved int64 // response memory taken from Server.mem, to give back once sent
}

// takeWriter takes d's writer for a request, waiting at most
// StreamBusyTimeout. A stream that keeps the writer while idle for longer
// than StreamTxnTimeout is expired (its transaction rolled back) when
// another request needs the writer: an abandoned transaction blocks other
// writers for that long at most. So is a stream that has kept the writer
// for longer than 2×StreamTxnTimeout, however busy (a client that sends a
// statement now and then inside its transaction would otherwise keep it
// for ever): at once if it is idle, else when its request ends.
func (s *Server) takeWriter(ctx context.Context, d *database) error {
	if d.tryWriter() {
		return nil
	}
	d.waiters.Add(1)
	defer d.waiters.Add(-1)
	deadline := time.NewTimer(s.cfg.StreamBusyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d.writer <- struct{}{}:
			return nil
		case <-tick.C:
			long := d.longOwner(2 * s.cfg.StreamTxnTimeout)
			if h := d.idleHolder(); h != nil && (time.Since(h.since) >= s.cfg.StreamTxnTimeout || h.st == long) {
				if h.expire() {
					d.log.Info("ended an idle stream's hold on the writer (its transaction, or its stalled cursor): another stream needs the writer", "idle", time.Since(h.since).Round(time.Millisecond), "kept too long", h.st == long)
				}
			}
		case <-deadline.C:
			return fmt.Errorf("%w (waited %v)", errWriterBusy, s.cfg.StreamBusyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-d.stopped:
			return errClosed
		}
	}
}

// yielding tells whether st must give the writer up: it was told to
// (yield, by a waiter in takeWriter) and a request still waits for the
// writer. A waiter that gave up (SQLITE_BUSY at StreamBusyTimeout) or got
// the writer leaves the holder's transaction alone.
func (st *hranaStream) yielding() bool {
	return st.yield.Load() && st.d.waiters.Load() > 0
}

// expireStream is the registry's Expire callback.
func expireStream(st *hranaStream) {
	st.end(context.Background())
}
