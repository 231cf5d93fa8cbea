package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/wire/hrana"
)

// maxStoredSQL bounds store_sql entries per request.
const maxStoredSQL = 1000

// handlePipeline serves POST /v2/pipeline: Hrana v2 requests run in order
// on the database's client connection, in the statement sandbox. Streams
// do not outlive a request: whatever a request leaves (an open
// transaction, temporary objects, settings) is undone before the next one
// (see database.session) and no baton is returned.
//
// Status codes: per-statement errors are part of a 200 answer, as Hrana
// has them. A request whose statements could not write because the disk
// is full gets 507 if nothing it sent committed; once something committed
// the answer is a 200 whatever happens after, so that a client never
// retries a write that happened.
func (s *Server) handlePipeline(w http.ResponseWriter, r *http.Request, d *database) {
	body, ok := s.readBody(w, r, s.cfg.MaxPipelineRequestBytes)
	if !ok {
		return
	}
	req, err := hrana.DecodePipelineReq(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed pipeline request: %v", err)
		return
	}
	if req.Baton != nil {
		httpError(w, http.StatusBadRequest, "batons are not supported: every pipeline request is a stream of its own (send \"baton\": null)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StatementTimeout)
	defer cancel()
	resp := hrana.PipelineRespBody{Results: make([]hrana.StreamResult, 0, len(req.Requests))}
	var full bool
	var reserved int64 // response memory, given back once it is sent
	defer func() { s.mem.release(reserved) }()
	commits, err := d.session(ctx, func(c *sqlitex.Conn, sb *sandbox) error {
		ex := &executor{c: c, sb: sb, ctx: ctx, stored: map[int32]string{}, budget: s.cfg.MaxResponseBytes, maxResponse: s.cfg.MaxResponseBytes, mem: s.mem}
		defer func() { reserved = ex.reserved }()
		for _, rq := range req.Requests {
			resp.Results = append(resp.Results, ex.run(rq))
		}
		full = ex.diskFull
		return nil
	})
	switch {
	case err != nil && (s.cfg.Cluster != nil || errors.Is(err, errNotWriter) || errors.Is(err, history.ErrFenced)):
		// A lease or store problem: nothing was acknowledged, the client
		// retries (exactly once: see writeFailed).
		s.writeFailed(w, r, err)
		return
	case commits == 0 && errors.Is(err, errClosed):
		httpError(w, http.StatusServiceUnavailable, "the database is closing; nothing was written")
		return
	case commits == 0 && err != nil:
		s.log.Error("pipeline", "db", d.name, "err", err)
		httpError(w, http.StatusInternalServerError, "internal error; nothing was written (the server log has the details)")
		return
	case commits == 0 && full:
		httpError(w, http.StatusInsufficientStorage, "the server's disk is full: nothing was written")
		return
	case err != nil:
		// The writes committed: answer them.
		s.log.Error("pipeline after a commit", "db", d.name, "err", err)
	}
	out, err := json.Marshal(resp)
	if err != nil {
		// Values are checked as they are read (executor.value), so this is
		// a bug; the status says whether anything was written.
		s.log.Error("encode pipeline response", "db", d.name, "err", err)
		httpError(w, http.StatusInternalServerError, "internal error encoding the response; %d transaction(s) committed", commits)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := s.writeBody(w, out); err != nil && r.Context().Err() == nil {
		d.log.Info("pipeline response not delivered", "err", err)
	}
	s.metrics.bytesOut.WithLabelValues("pipeline").Add(float64(len(out)))
}

// executor runs the requests of one pipeline.
type executor struct {
	c      *sqlitex.Conn
	sb     *sandbox
	ctx    context.Context
	stored map[int32]string
	closed bool

	budget      int64      // response bytes left
	maxResponse int64      // Config.MaxResponseBytes
	mem         *memBudget // the server's in-flight budget
	reserved    int64      // taken from mem
	diskFull    bool       // a statement failed with SQLITE_FULL
}

// errorCode is the Hrana code for errors that are not SQLite's own.
const (
	codeStreamClosed = "STREAM_CLOSED"
	codeBadRequest   = "INVALID_REQUEST"
	codeArgs         = "ARGS_INVALID"
)

func failure(code, format string, args ...any) *hrana.Error {
	return &hrana.Error{Message: fmt.Sprintf(format, args...), Code: code}
}

// asHrana converts an execution error to a Hrana error.
func asHrana(err error) *hrana.Error {
	var he *hrana.Error
	var se *sqlitex.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &se):
		return &hrana.Error{Message: se.Msg, Code: se.CodeName()}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &hrana.Error{Message: "statement interrupted: " + err.Error(), Code: "SQLITE_INTERRUPT"}
	}
	return &hrana.Error{Message: err.Error(), Code: "SQLITE_ERROR"}
}

func ok(resp hrana.StreamResponse) hrana.StreamResult {
	return hrana.StreamResult{Type: hrana.ResultOK, Response: &resp}
}

func fail(err *hrana.Error) hrana.StreamResult {
	return hrana.StreamResult{Type: hrana.ResultError, Error: err}
}

func (ex *executor) run(rq hrana.StreamRequest) hrana.StreamResult {
	if ex.closed {
		return fail(failure(codeStreamClosed, "the stream was closed by an earlier close request"))
	}
	switch rq.Type {
	case hrana.ReqClose:
		ex.closed = true
		return ok(hrana.StreamResponse{Type: hrana.ReqClose})
	case hrana.ReqExecute:
		res, err := ex.execute(rq.Stmt)
		if err != nil {
			return fail(err)
		}
		return ok(hrana.StreamResponse{Type: hrana.ReqExecute, StmtResult: res})
	case hrana.ReqBatch:
		return ok(hrana.StreamResponse{Type: hrana.ReqBatch, BatchResult: ex.batch(rq.Batch)})
	case hrana.ReqSequence:
		sql, err := ex.resolve(rq.SQL, rq.SQLID)
		if err != nil {
			return fail(err)
		}
		if err := ex.c.WithContext(ex.ctx, func() error { return ex.c.Exec(sql) }); err != nil {
			return fail(ex.asHrana(err))
		}
		return ok(hrana.StreamResponse{Type: hrana.ReqSequence})
	case hrana.ReqDescribe:
		sql, err := ex.resolve(rq.SQL, rq.SQLID)
		if err != nil {
			return fail(err)
		}
		res, err := ex.describe(sql)
		if err != nil {
			return fail(err)
		}
		return ok(hrana.StreamResponse{Type: hrana.ReqDescribe, DescribeResult: res})
	case hrana.ReqStoreSQL:
		if len(ex.stored) >= maxStoredSQL {
			return fail(failure(codeBadRequest, "too many stored SQL texts (at most %d)", maxStoredSQL))
		}
		if _, dup := ex.stored[*rq.SQLID]; dup {
			return fail(failure(codeBadRequest, "sql_id %d is already stored", *rq.SQLID))
		}
		ex.stored[*rq.SQLID] = *rq.SQL
		return ok(hrana.StreamResponse{Type: hrana.ReqStoreSQL})
	case hrana.ReqCloseSQL:
		delete(ex.stored, *rq.SQLID)
		return ok(hrana.StreamResponse{Type: hrana.ReqCloseSQL})
	}
	return fail(failure(codeBadRequest, "unknown request type %q", rq.Type))
}

func (ex *executor) resolve(sql *string, id *int32) (string, *hrana.Error) {
	switch {
	case sql != nil && id != nil:
		return "", failure(codeBadRequest, "a statement has both sql and sql_id")
	case sql != nil:
		return *sql, nil
	case id != nil:
		s, ok := ex.stored[*id]
		if !ok {
			return "", failure(codeBadRequest, "sql_id %d is not stored", *id)
		}
		return s, nil
	}
	return "", failure(codeBadRequest, "a statement needs sql or sql_id")
}

// prepare compiles exactly one statement. The rest of the text must hold
// no statement, and must compile: garbage after a statement is an error,
// not something to ignore.
func (ex *executor) prepare(sql string) (*sqlitex.Stmt, *hrana.Error) {
	st, tail, err := ex.c.Prepare(sql)
	if err != nil {
		return nil, ex.asHrana(err)
	}
	if st == nil {
		return nil, failure("SQL_NO_STATEMENT", "the SQL text holds no statement")
	}
	if strings.TrimSpace(tail) != "" {
		more, _, err := ex.c.Prepare(tail)
		if err != nil {
			st.Close()
			herr := ex.asHrana(err)
			herr.Message = "after the first statement: " + herr.Message
			return nil, herr
		}
		if more != nil {
			more.Close()
			st.Close()
			return nil, failure("SQL_MANY_STATEMENTS", "the SQL text holds more than one statement; use a batch or a sequence")
		}
	}
	return st, nil
}

// asHrana converts an execution error to a Hrana error, naming what the
// sandbox refused and noting a full disk.
func (ex *executor) asHrana(err error) *hrana.Error {
	err = ex.sb.refusal(err)
	if errors.Is(err, sqlitex.ErrFull) {
		ex.diskFull = true
	}
	return asHrana(err)
}

// errValue is a result value the response cannot carry.
type errValue struct{ msg string }

func (e *errValue) Error() string { return e.msg }

// value reads column i of st's current row for the response, charging its
// size to the response budget. Values JSON cannot carry (infinite floats)
// and values past the budget are errors.
func (ex *executor) value(st *sqlitex.Stmt, i int) (hrana.Value, error) {
	size := int64(st.ColumnSize(i))
	cost := size*4/3 + 32 // base64 or escaped text, and the JSON around it
	if cost > ex.budget {
		return hrana.Value{}, &errValue{fmt.Sprintf("the response would exceed %d bytes (the server's limit); select fewer or smaller values", ex.maxResponse)}
	}
	// Twice: the values, then their JSON.
	if !ex.mem.reserve(2 * cost) {
		return hrana.Value{}, &errValue{errNoMemory}
	}
	ex.reserved += 2 * cost
	ex.budget -= cost
	v := st.Column(i)
	if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return hrana.Value{}, &errValue{fmt.Sprintf("column %q holds %v, which JSON cannot carry", st.ColumnName(i), f)}
	}
	return hrana.Value{V: v}, nil
}

// returningSavepoint lets a write that returns rows be undone when one of
// its values cannot be answered: the statement then fails and changes
// nothing, even in autocommit mode.
const returningSavepoint = "_syncdb_returning"

func (ex *executor) execute(s *hrana.Stmt) (*hrana.StmtResult, *hrana.Error) {
	sql, herr := ex.resolve(s.SQL, s.SQLID)
	if herr != nil {
		return nil, herr
	}
	st, herr := ex.prepare(sql)
	if herr != nil {
		return nil, herr
	}
	defer st.Close()
	if herr := bindArgs(st, s); herr != nil {
		return nil, herr
	}
	wantRows := s.WantRows == nil || *s.WantRows
	start := time.Now()
	res := &hrana.StmtResult{Cols: make([]hrana.Col, st.ColumnCount()), Rows: [][]hrana.Value{}}
	for i := range res.Cols {
		name, decl := st.ColumnName(i), st.ColumnDecltype(i)
		res.Cols[i].Name = &name
		if decl != "" {
			res.Cols[i].Decltype = &decl
		}
	}
	guard := wantRows && !st.Readonly() && len(res.Cols) > 0
	if guard {
		if err := ex.c.Exec("SAVEPOINT " + returningSavepoint); err != nil {
			return nil, ex.asHrana(err)
		}
	}
	var bad error
	err := ex.c.WithContext(ex.ctx, func() error {
		for {
			row, err := st.Step()
			if err != nil || !row {
				return err
			}
			res.RowsRead++
			if !wantRows {
				continue
			}
			vals := make([]hrana.Value, len(res.Cols))
			for i := range vals {
				if vals[i], bad = ex.value(st, i); bad != nil {
					return bad
				}
			}
			res.Rows = append(res.Rows, vals)
		}
	})
	if guard {
		st.Reset()
		end := "RELEASE " + returningSavepoint
		if bad != nil {
			end = "ROLLBACK TO " + returningSavepoint + "; " + end
		}
		if gerr := ex.c.Exec(end); gerr != nil && err == nil {
			err = gerr
		}
	}
	if bad != nil {
		return nil, failure("RESPONSE_VALUE", "%v; the statement was not run", bad)
	}
	if err != nil {
		return nil, ex.asHrana(err)
	}
	if !st.Readonly() {
		res.AffectedRowCount = uint64(ex.c.Changes())
		res.RowsWritten = res.AffectedRowCount
		if res.AffectedRowCount > 0 {
			id := ex.c.LastInsertRowid()
			res.LastInsertRowid = &id
		}
	}
	res.QueryDurationMS = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

func bindArgs(st *sqlitex.Stmt, s *hrana.Stmt) *hrana.Error {
	if len(s.Args) > st.ParamCount() {
		return failure(codeArgs, "%d arguments given, the statement has %d parameters", len(s.Args), st.ParamCount())
	}
	for i, a := range s.Args {
		if err := st.Bind(i+1, a.V); err != nil {
			return failure(codeArgs, "argument %d: %v", i+1, err)
		}
	}
	for _, na := range s.NamedArgs {
		idx := st.ParamIndex(na.Name)
		if idx == 0 {
			return failure(codeArgs, "the statement has no parameter named %q", na.Name)
		}
		if err := st.Bind(idx, na.Value.V); err != nil {
			return failure(codeArgs, "argument %q: %v", na.Name, err)
		}
	}
	return nil
}

// batch runs the steps whose conditions hold. A step that is not run has
// neither a result nor an error.
func (ex *executor) batch(b *hrana.Batch) *hrana.BatchResult {
	res := &hrana.BatchResult{
		StepResults: make([]*hrana.StmtResult, len(b.Steps)),
		StepErrors:  make([]*hrana.Error, len(b.Steps)),
	}
	for i, step := range b.Steps {
		if step.Condition != nil {
			hold, err := ex.eval(step.Condition, res, i)
			if err != nil {
				res.StepErrors[i] = err
				continue
			}
			if !hold {
				continue
			}
		}
		res.StepResults[i], res.StepErrors[i] = ex.execute(&step.Stmt)
	}
	return res
}

// eval evaluates a condition of step i against the outcomes of earlier
// steps. The decoder bounds nesting depth.
func (ex *executor) eval(c *hrana.BatchCond, res *hrana.BatchResult, i int) (bool, *hrana.Error) {
	switch c.Type {
	case hrana.CondOK, hrana.CondError:
		if int(c.Step) >= i {
			return false, failure(codeBadRequest, "condition of step %d refers to step %d, which has not run", i, c.Step)
		}
		if c.Type == hrana.CondOK {
			return res.StepResults[c.Step] != nil, nil
		}
		return res.StepErrors[c.Step] != nil, nil
	case hrana.CondNot:
		v, err := ex.eval(c.Cond, res, i)
		return !v, err
	case hrana.CondAnd, hrana.CondOr:
		and := c.Type == hrana.CondAnd
		for k := range c.Conds {
			v, err := ex.eval(&c.Conds[k], res, i)
			if err != nil {
				return false, err
			}
			if v != and {
				return v, nil
			}
		}
		return and, nil
	case hrana.CondIsAutocommit:
		return ex.c.Autocommit(), nil
	}
	return false, failure(codeBadRequest, "unknown condition type %q", c.Type)
}

func (ex *executor) describe(sql string) (*hrana.DescribeResult, *hrana.Error) {
	st, herr := ex.prepare(sql)
	if herr != nil {
		return nil, herr
	}
	defer st.Close()
	res := &hrana.DescribeResult{IsReadonly: st.Readonly()}
	res.IsExplain = strings.HasPrefix(strings.ToUpper(strings.TrimSpace(sql)), "EXPLAIN")
	for i := 1; i <= st.ParamCount(); i++ {
		var p hrana.DescribeParam
		if n := st.ParamName(i); n != "" {
			p.Name = &n
		}
		res.Params = append(res.Params, p)
	}
	for i := 0; i < st.ColumnCount(); i++ {
		c := hrana.DescribeCol{Name: st.ColumnName(i)}
		if d := st.ColumnDecltype(i); d != "" {
			c.Decltype = &d
		}
		res.Cols = append(res.Cols, c)
	}
	return res, nil
}
