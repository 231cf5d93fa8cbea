package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/hranapb"
)

// Hrana over WebSocket: GET / (or /db/NAME) with an upgrade to one of the
// subprotocols hrana3-protobuf (binary frames), hrana3, hrana2 or hrana1
// (JSON, text frames). The streams of a
// connection are the streams of HTTP, minus batons: they live as long as
// the connection, and each runs its requests in order on its own
// goroutine, so that one stream waiting for the writer does not hold up
// another stream's COMMIT. Stored SQL belongs to the connection.

// wsSubprotocols are served in this order of preference (the clients'
// own order).
var wsSubprotocols = []string{"hrana3-protobuf", "hrana3", "hrana2", "hrana1"}

// Limits per connection.
const (
	wsMaxStreams     = 256
	wsMaxMessage     = 64 << 20
	wsCursorCapacity = 256 // entries buffered ahead of fetch_cursor
)

// isWebSocket tells whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

type wsConn struct {
	s     *Server
	name  string // the database
	ws    *websocket.Conn
	proto bool // hrana3-protobuf
	ctx   context.Context
	sqls  *sqlTexts

	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	d       *database // opened at the first stream
	release func()    // lets d go (at the end of the connection)
	streams map[int32]*wsStream
	cursors map[int32]*wsCursor
	wg      sync.WaitGroup
}

type wsStream struct {
	st    *hranaStream
	queue chan func()
}

type wsCursor struct {
	entries chan hrana.CursorEntry // closed when the batch ended
	cancel  context.CancelFunc
	fetches chan func() // fetch_cursor requests, answered in order
	err     *hrana.Error
	waited  time.Time // when the batch first waited for fetches on the writer (emitCursor)
	// clock bounds the batch by StatementTimeout, stopped while the
	// batch waits for fetches (emitCursor).
	clock *runClock
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, name string) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: wsSubprotocols,
		// Hrana authenticates with the token in its hello message, not
		// with cookies, so a page of another origin gains nothing.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept answered the error
	}
	if ws.Subprotocol() == "" {
		ws.Close(websocket.StatusPolicyViolation, "no supported subprotocol (hrana3-protobuf, hrana3, hrana2, hrana1)")
		return
	}
	ws.SetReadLimit(wsMaxMessage)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	c := &wsConn{s: s, name: name, ws: ws, ctx: ctx, proto: ws.Subprotocol() == "hrana3-protobuf", sqls: newSQLTexts(), streams: map[int32]*wsStream{}, cursors: map[int32]*wsCursor{}}
	s.wsConns.add(c, cancel)
	defer s.wsConns.remove(c)
	reason := c.serve(r)
	cancel()
	c.shutdown()
	if reason != "" {
		ws.Close(websocket.StatusProtocolError, reason)
	} else {
		ws.Close(websocket.StatusNormalClosure, "")
	}
}

// serve reads messages until the connection ends; it returns the reason of
// a protocol violation, if any.
func (c *wsConn) serve(r *http.Request) string {
	authed := false
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return ""
		}
		var m *hrana.ClientMsg
		switch {
		case c.proto && typ == websocket.MessageBinary:
			m, err = hranapb.DecodeClientMsg(data)
		case !c.proto && typ == websocket.MessageText:
			m, err = hrana.DecodeClientMsg(data)
		case c.proto:
			return "text message in hrana3-protobuf"
		default:
			return "binary message in a JSON subprotocol"
		}
		if err != nil {
			return err.Error()
		}
		if m.Type == hrana.MsgHello {
			if msg := c.s.tokenProblem(m.JWT, c.name); msg != "" {
				c.send(&hrana.ServerMsg{Type: hrana.MsgHelloError, Error: &hrana.Error{Message: msg, Code: "UNAUTHORIZED"}})
				return ""
			}
			authed = true
			c.send(&hrana.ServerMsg{Type: hrana.MsgHelloOK})
			continue
		}
		if !authed {
			return "request before hello"
		}
		if reason := c.request(m.RequestID, m.Request); reason != "" {
			return reason
		}
	}
}

// tokenProblem says why tok may not run Hrana requests on database db (""
// if it may): as over HTTP, it needs write access to it.
func (s *Server) tokenProblem(tok *string, db string) string {
	t := ""
	if tok != nil {
		t = *tok
	}
	if t == "" && (len(s.cfg.AuthTokens) > 0 || len(s.cfg.ReadTokens) > 0 || len(s.cfg.JWTKeys) > 0) {
		return "authorization required: send a token in the hello message"
	}
	g, err := s.tokenGrant(t)
	if err != nil {
		return strings.TrimPrefix(err.Error(), ErrAuth.Error()+": ")
	}
	if g.on(db) != writeAccess {
		return "this token may not write database " + db
	}
	return ""
}

func (c *wsConn) send(m *hrana.ServerMsg) {
	var b []byte
	var err error
	typ := websocket.MessageText
	if c.proto {
		b, err = hranapb.EncodeServerMsg(m)
		typ = websocket.MessageBinary
	} else {
		b, err = json.Marshal(m)
	}
	if err != nil {
		c.s.log.Error("encode websocket message", "err", err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.Write(c.ctx, typ, b)
}

func (c *wsConn) reply(id int32, resp *hrana.WsResponse, herr *hrana.Error) {
	if herr != nil {
		c.send(&hrana.ServerMsg{Type: hrana.MsgResponseError, RequestID: &id, Error: herr})
		return
	}
	c.send(&hrana.ServerMsg{Type: hrana.MsgResponseOK, RequestID: &id, Response: resp})
}

// request handles one request; it returns the reason of a protocol
// violation, if any.
func (c *wsConn) request(id int32, rq *hrana.WsRequest) string {
	ok := func() { c.reply(id, &hrana.WsResponse{Type: rq.Type}, nil) }
	switch rq.Type {
	case hrana.ReqOpenStream:
		c.mu.Lock()
		_, dup := c.streams[rq.StreamID]
		full := len(c.streams) >= wsMaxStreams
		c.mu.Unlock()
		if dup {
			return "stream already exists"
		}
		if full {
			c.reply(id, nil, failure(codeBadRequest, "too many streams on this connection (at most %d)", wsMaxStreams))
			return ""
		}
		d, herr := c.database()
		if herr != nil {
			c.reply(id, nil, herr)
			return ""
		}
		ws := &wsStream{st: &hranaStream{d: d, sqls: c.sqls}, queue: make(chan func(), 64)}
		c.mu.Lock()
		c.streams[rq.StreamID] = ws
		c.mu.Unlock()
		c.wg.Go(func() {
			for fn := range ws.queue {
				fn()
			}
		})
		ok()
	case hrana.ReqCloseStream:
		c.mu.Lock()
		ws := c.streams[rq.StreamID]
		delete(c.streams, rq.StreamID)
		c.mu.Unlock()
		if ws == nil {
			ok() // closing a stream that failed to open is fine
			return ""
		}
		ws.queue <- func() {
			ws.st.end(c.ctx)
			ok()
		}
		close(ws.queue)
	case hrana.ReqStoreSQL:
		if rq.SQLID == nil || rq.SQL == nil {
			return "store_sql without sql_id or sql"
		}
		if herr := c.sqls.store(*rq.SQLID, *rq.SQL); herr != nil {
			c.reply(id, nil, herr)
			return ""
		}
		ok()
	case hrana.ReqCloseSQL:
		if rq.SQLID == nil {
			return "close_sql without sql_id"
		}
		c.sqls.remove(*rq.SQLID)
		ok()
	case hrana.ReqExecute, hrana.ReqBatch, hrana.ReqSequence, hrana.ReqDescribe, hrana.ReqGetAutocommit:
		sr := hrana.StreamRequest{Type: rq.Type, Stmt: rq.Stmt, Batch: rq.Batch, SQL: rq.SQL, SQLID: rq.SQLID}
		if (rq.Type == hrana.ReqExecute && rq.Stmt == nil) || (rq.Type == hrana.ReqBatch && rq.Batch == nil) {
			return rq.Type + " request without its statement"
		}
		c.onStream(id, rq.StreamID, func(st *hranaStream) {
			if st.timedOut != nil {
				c.abortedTxn(id, st, sr)
				return
			}
			var res hrana.StreamResult
			did, err := c.s.execOn(c.ctx, st, readSQL(st, []hrana.StreamRequest{sr}), runOpts{limit: c.s.cfg.StatementTimeout}, func(ex *executor) { res = ex.run(sr) })
			defer c.s.mem.release(did.reserved)
			if err != nil {
				st.end(c.ctx)
				c.reply(id, nil, asHrana(err))
				return
			}
			if res.Type == hrana.ResultError {
				c.reply(id, nil, res.Error)
				return
			}
			r := res.Response
			resp := &hrana.WsResponse{Type: rq.Type, IsAutocommit: r.IsAutocommit}
			switch rq.Type {
			case hrana.ReqExecute:
				resp.Result = r.StmtResult
			case hrana.ReqBatch:
				resp.Result = r.BatchResult
			case hrana.ReqDescribe:
				resp.Result = r.DescribeResult
			}
			c.reply(id, resp, nil)
		})
	case hrana.ReqOpenCursor:
		if rq.Batch == nil {
			return "open_cursor without batch"
		}
		c.mu.Lock()
		_, dup := c.cursors[rq.CursorID]
		c.mu.Unlock()
		if dup {
			return "cursor already exists"
		}
		cctx, cancel := context.WithCancel(c.ctx)
		cur := &wsCursor{entries: make(chan hrana.CursorEntry, wsCursorCapacity), cancel: cancel, fetches: make(chan func(), 64), clock: &runClock{}}
		c.mu.Lock()
		c.cursors[rq.CursorID] = cur
		c.mu.Unlock()
		// Clients send several fetch_cursor at once; each takes the
		// entries after the previous one's.
		c.wg.Go(func() {
			for fn := range cur.fetches {
				fn()
			}
		})
		batch := rq.Batch
		if !c.onStream(id, rq.StreamID, func(st *hranaStream) {
			ok()
			defer close(cur.entries)
			o := runOpts{cursor: true, limit: c.s.cfg.StatementTimeout, clock: cur.clock}
			_, err := c.s.execOn(cctx, st, readSQL(st, []hrana.StreamRequest{{Type: hrana.ReqBatch, Batch: batch}}), o, func(ex *executor) {
				ex.budget, ex.mem = 1<<62, nil // a cursor streams: no response bound
				if ex.c == nil {
					cur.err = asHrana(ex.noConn)
					return
				}
				if err := ex.cursor(batch, func(e *hrana.CursorEntry) error {
					return c.s.emitCursor(cctx, st, cur, e)
				}); err != nil && cctx.Err() == nil {
					cur.err = asHrana(err)
				}
			})
			if err != nil {
				st.end(c.ctx)
				cur.err = asHrana(err)
			}
		}) {
			cancel()
			close(cur.entries)
		}
	case hrana.ReqFetchCursor:
		c.mu.Lock()
		cur := c.cursors[rq.CursorID]
		c.mu.Unlock()
		if cur == nil {
			c.reply(id, nil, failure(codeBadRequest, "Cursor %d not found", rq.CursorID))
			return ""
		}
		max := rq.MaxCount
		cur.fetches <- func() { c.fetch(id, cur, max) }
	case hrana.ReqCloseCursor:
		c.mu.Lock()
		cur := c.cursors[rq.CursorID]
		delete(c.cursors, rq.CursorID)
		c.mu.Unlock()
		if cur != nil {
			cur.end()
		}
		ok()
	default:
		return "unknown request type " + rq.Type
	}
	return ""
}

// onStream queues fn on the stream's goroutine; a request on a stream that
// is not open gets an error. It reports whether fn was queued.
func (c *wsConn) onStream(id, streamID int32, fn func(*hranaStream)) bool {
	c.mu.Lock()
	ws := c.streams[streamID]
	c.mu.Unlock()
	if ws == nil {
		c.reply(id, nil, failure(codeBadRequest, "Stream %d not found", streamID))
		return false
	}
	ws.queue <- func() {
		ws.st.d.clearHolder(ws.st)
		fn(ws.st)
		if ws.st.holds {
			c.keepIdle(streamID, ws)
		}
	}
	return true
}

// keepIdle makes ws, which keeps the writer between its requests (it is
// inside a transaction), the database's idle holder: as an HTTP stream's,
// its transaction is rolled back once it has been idle for
// StreamTxnTimeout and another stream needs the writer. The rollback runs
// on the stream's goroutine, unless a request of its own ran first; the
// stream's next request then fails with TRANSACTION_TIMEOUT (once).
func (c *wsConn) keepIdle(streamID int32, ws *wsStream) {
	st := ws.st
	h := &idleHolder{st: st, since: time.Now()}
	var queued atomic.Bool
	h.expire = func() bool {
		// TryLock: the connection's shutdown holds mu while it waits
		// for stream goroutines, one of which may be the caller.
		if queued.Load() || !c.mu.TryLock() {
			return false
		}
		defer c.mu.Unlock()
		if c.streams[streamID] != ws {
			return false // it is closing: that ends its transaction
		}
		select {
		case ws.queue <- func() {
			if st.d.idleHolder() == h {
				st.timedOut = errTxnTimeout
				if st.yield.Load() {
					st.timedOut = errTxnHeld
				}
				st.end(context.Background())
			}
		}:
			queued.Store(true)
			return true
		default:
			return false // its queue is full: it is not idle for long
		}
	}
	st.d.setHolder(h)
}

// fetch answers fetch_cursor: at least one entry (waiting for it), at most
// max, and done once the batch ended and every entry was fetched.
func (c *wsConn) fetch(id int32, cur *wsCursor, max uint32) {
	resp := &hrana.WsResponse{Type: hrana.ReqFetchCursor}
	if max == 0 {
		max = 1
	}
	for uint32(len(resp.Entries)) < max {
		var e hrana.CursorEntry
		var open bool
		if len(resp.Entries) == 0 {
			e, open = <-cur.entries
		} else {
			select {
			case e, open = <-cur.entries:
			default:
				c.reply(id, resp, nil)
				return
			}
		}
		if !open {
			if cur.err != nil {
				resp.Entries = append(resp.Entries, hrana.CursorEntry{Type: hrana.EntryError, Error: cur.err})
				cur.err = nil
			}
			resp.Done = true
			break
		}
		resp.Entries = append(resp.Entries, e)
	}
	c.reply(id, resp, nil)
}

// emitCursor hands entry e of the cursor's batch, which runs on st, to the
// cursor's fetches, waiting while its buffer is full.
//
// A cursor that runs on the writer (st.holds: it does not qualify for a
// reader, say with foreign_keys on) holds every write up while it waits
// for its client to fetch: while it waits it is the database's idle
// holder, as a stream idle inside a transaction is, so that once
// StreamTxnTimeout has passed since it first waited and another stream
// waits for the writer (takeWriter) the cursor ends with errCursorStalled
// and its writer is let go (or kept by the stream's transaction, which
// then expires as an idle one does). The time counts from the first wait,
// not the latest, so that a client that fetches a few entries now and
// then cannot keep the writer for ever. A cursor on a reader waits for as
// long as its client takes: it holds one of the slots cursors may have
// (see readerConn), and its read transaction keeps the WAL from
// restarting; if checkpoints have been held back for IOTimeout, the
// cursors waiting then end with errCursorHoldsWAL (noteCheckpoint).
func (s *Server) emitCursor(ctx context.Context, st *hranaStream, cur *wsCursor, e *hrana.CursorEntry) error {
	select {
	case cur.entries <- *e:
		return nil
	default:
	}
	// Waiting for the client is not running: the batch's StatementTimeout
	// stops meanwhile.
	cur.clock.pause()
	defer cur.clock.resume()
	var stalled chan struct{}
	var walHeld <-chan struct{}
	if !st.holds {
		walHeld = st.d.walHeldChan()
	}
	if st.holds {
		stalled = make(chan struct{})
		var once sync.Once
		if cur.waited.IsZero() {
			cur.waited = time.Now()
		}
		st.d.setHolder(&idleHolder{st: st, since: cur.waited, expire: func() bool {
			fired := false
			once.Do(func() { close(stalled); fired = true })
			return fired
		}})
		defer st.d.clearHolder(st)
	}
	select {
	case cur.entries <- *e:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stalled:
		return fmt.Errorf("%w (%v)", errCursorStalled, s.cfg.StreamTxnTimeout)
	case <-walHeld:
		return fmt.Errorf("%w (%v)", errCursorHoldsWAL, s.cfg.IOTimeout)
	}
}

// errCursorHoldsWAL ends a cursor on a reader whose client fetched nothing
// while checkpoints were held back by readers.
var errCursorHoldsWAL = errors.New("the cursor was ended: its client fetched nothing while its read transaction held checkpoints back")

// errCursorStalled ends a cursor that kept the writer while its client
// fetched nothing for longer than StreamTxnTimeout and another stream
// waited for the writer.
var errCursorStalled = errors.New("the cursor was ended: it kept the writer while its client fetched nothing, and another stream waited for the writer")

// end stops the cursor's batch and its fetches (queued fetches are still
// answered, with what is left).
func (cur *wsCursor) end() {
	cur.cancel()
	close(cur.fetches)
	go func() {
		for range cur.entries {
		}
	}()
}

// database opens the connection's database.
func (c *wsConn) database() (*database, *hrana.Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d != nil {
		return c.d, nil
	}
	// The hello's token may write the database, so it may create it.
	d, release, err := c.s.acquire(c.ctx, c.name, !c.s.cfg.NoAutoCreate)
	if errors.Is(err, errNoDatabase) {
		return nil, &hrana.Error{Message: err.Error(), Code: "NAMESPACE_DOESNT_EXIST"}
	}
	if err != nil {
		return nil, asHrana(err)
	}
	c.d, c.release = d, release
	return d, nil
}

// shutdown ends every cursor and stream of a closed connection, rolling
// back their transactions.
func (c *wsConn) shutdown() {
	c.mu.Lock()
	for _, cur := range c.cursors {
		cur.end()
	}
	for k, ws := range c.streams {
		ws.queue <- func() { ws.st.end(context.Background()) }
		close(ws.queue)
		delete(c.streams, k)
	}
	c.mu.Unlock()
	c.wg.Wait()
	if c.release != nil {
		c.release()
	}
}

// wsSet tracks the open WebSocket connections, which an HTTP server's
// shutdown does not end (they are hijacked).
type wsSet struct {
	mu sync.Mutex
	m  map[*wsConn]context.CancelFunc
	wg sync.WaitGroup
}

func (s *wsSet) add(c *wsConn, cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*wsConn]context.CancelFunc{}
	}
	s.m[c] = cancel
	s.wg.Add(1)
}

func (s *wsSet) remove(c *wsConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
	s.wg.Done()
}

// closeAll ends every connection and waits until they are gone.
func (s *wsSet) closeAll() {
	s.mu.Lock()
	for _, cancel := range s.m {
		cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// rollbackRE and commitRE match the statements that end a transaction.
var (
	rollbackRE = regexp.MustCompile(`(?is)^\s*ROLLBACK(\s+TRANSACTION)?\s*;?\s*$`)
	commitRE   = regexp.MustCompile(`(?is)^\s*(COMMIT|END)(\s+TRANSACTION)?\s*;?\s*$`)
)

// abortedTxn answers a request on a stream whose transaction the server
// rolled back (st.timedOut: an interrupt, a yield, an idle expiry), as
// PostgreSQL answers inside an aborted transaction: the client may have
// sent its next requests before it learnt of it (they are pipelined), and
// none of them may run in autocommit, or half of its transaction would be
// committed. Every request fails with st.timedOut until the client ends
// the transaction: ROLLBACK is answered OK, COMMIT (END) with the error,
// and both clear it (as does closing the stream). get_autocommit answers
// true and leaves it.
func (c *wsConn) abortedTxn(id int32, st *hranaStream, sr hrana.StreamRequest) {
	err := st.timedOut
	sql := ""
	switch {
	case sr.Type == hrana.ReqGetAutocommit:
		c.reply(id, &hrana.WsResponse{Type: sr.Type, IsAutocommit: true}, nil)
		return
	case sr.Type == hrana.ReqExecute && sr.Stmt != nil && sr.Stmt.SQL != nil:
		sql = *sr.Stmt.SQL
	case sr.Type == hrana.ReqExecute && sr.Stmt != nil && sr.Stmt.SQLID != nil:
		sql, _ = st.sqls.get(*sr.Stmt.SQLID)
	case sr.Type == hrana.ReqSequence && sr.SQL != nil:
		sql = *sr.SQL
	case sr.Type == hrana.ReqSequence && sr.SQLID != nil:
		sql, _ = st.sqls.get(*sr.SQLID)
	}
	switch {
	case rollbackRE.MatchString(sql):
		st.timedOut = nil
		resp := &hrana.WsResponse{Type: sr.Type}
		if sr.Type == hrana.ReqExecute {
			resp.Result = &hrana.StmtResult{Cols: []hrana.Col{}, Rows: [][]hrana.Value{}}
		}
		c.reply(id, resp, nil)
		return
	case commitRE.MatchString(sql):
		st.timedOut = nil
	}
	st.end(c.ctx)
	c.reply(id, nil, asHrana(err))
}
