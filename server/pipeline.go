package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
)

// maxStoredSQL bounds the SQL texts a stream (a WebSocket connection) may
// store.
const maxStoredSQL = 1000

// sqlTexts are the SQL texts stored with store_sql: a stream's over HTTP, a
// connection's (shared by its streams) over a WebSocket.
type sqlTexts struct {
	mu sync.Mutex
	m  map[int32]string
}

func newSQLTexts() *sqlTexts { return &sqlTexts{m: map[int32]string{}} }

func (t *sqlTexts) store(id int32, sql string) *hrana.Error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxStoredSQL {
		return failure(codeBadRequest, "too many stored SQL texts (at most %d)", maxStoredSQL)
	}
	if _, dup := t.m[id]; dup {
		return failure(codeBadRequest, "SQL text %d already exists", id)
	}
	t.m[id] = sql
	return nil
}

func (t *sqlTexts) get(id int32) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	return s, ok
}

func (t *sqlTexts) remove(id int32) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

// executor runs the requests of one pipeline (or one cursor) on a
// stream's connection; the stream's stored SQL and state outlive it.
type executor struct {
	c   *sqlitex.Conn // nil if the writer could not be had (noConn says why)
	sb  *sandbox      // c's sandbox
	ctx context.Context
	st  *hranaStream

	noConn error

	budget      int64      // response bytes left (pipelines; a cursor streams)
	maxResponse int64      // Config.MaxResponseBytes
	mem         *memBudget // the server's in-flight budget (nil: a cursor streams)
	reserved    int64      // taken from mem
	diskFull    bool       // a statement failed with SQLITE_FULL

	stmts stmtCache // the request's statements kept prepared (stmtcache.go)
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

// compiling tells the sandbox the SQL text the next statements come from,
// and clears its record of a refusal.
func (ex *executor) compiling(sql string) {
	if ex.sb != nil {
		ex.sb.sql, ex.sb.refused = sql, ""
	}
}

// asHrana converts an execution error to a Hrana error as sqld words it:
// "SQLite error: MSG" with the primary result code's name (clients match
// on SQLITE_CONSTRAINT, SQLITE_BUSY, ...), or, for a statement that does
// not compile at a known place, "SQL input error: MSG (at offset N)" with
// SQL_INPUT_ERROR. sqld has no name for SQLITE_ERROR itself and sends
// SQLITE_UNKNOWN. Text that does not parse is SQL_PARSE_ERROR, as sqld
// (which parses every statement before SQLite sees it) reports it.
func asHrana(err error) *hrana.Error {
	var he *hrana.Error
	var se *sqlitex.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &se):
		if isParseError(se) {
			msg := "SQL string could not be parsed: " + se.Msg
			if se.InputOffset > 0 {
				msg += fmt.Sprintf(" (at offset %d)", se.InputOffset-1)
			}
			return &hrana.Error{Message: msg, Code: "SQL_PARSE_ERROR"}
		}
		if se.InputOffset > 0 {
			return &hrana.Error{Message: fmt.Sprintf("SQL input error: %s (at offset %d)", se.Msg, se.InputOffset-1), Code: "SQL_INPUT_ERROR"}
		}
		code := (&sqlitex.Error{Code: se.Code & 0xff}).CodeName()
		if code == "SQLITE_ERROR" {
			code = "SQLITE_UNKNOWN"
		}
		return &hrana.Error{Message: "SQLite error: " + se.Msg, Code: code}
	case errors.Is(err, errTxnLost):
		return &hrana.Error{Message: err.Error(), Code: "STREAM_EXPIRED"}
	case errors.Is(err, errTxnTimeout) || errors.Is(err, errTxnHeld) || errors.Is(err, errTxnInterrupted):
		return &hrana.Error{Message: err.Error(), Code: "TRANSACTION_TIMEOUT"}
	case errors.Is(err, errCursorStalled) || errors.Is(err, errCursorHoldsWAL):
		return &hrana.Error{Message: "SQLite error: interrupted (" + err.Error() + ")", Code: "SQLITE_INTERRUPT"}
	case errors.Is(err, errWriterBusy) || errors.Is(err, errCursorReader):
		return &hrana.Error{Message: "SQLite error: " + err.Error(), Code: "SQLITE_BUSY"}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &hrana.Error{Message: "SQLite error: interrupted (" + err.Error() + ")", Code: "SQLITE_INTERRUPT"}
	}
	return &hrana.Error{Message: err.Error(), Code: "SQLITE_UNKNOWN"}
}

// isParseError tells the errors of SQLite's tokenizer and parser (the
// text is not SQL) from those of compiling what parsed (no such table...).
func isParseError(se *sqlitex.Error) bool {
	return se.Code&0xff == sqlite3.SQLITE_ERROR && (strings.HasSuffix(se.Msg, ": syntax error") ||
		se.Msg == "incomplete input" || strings.HasPrefix(se.Msg, "unrecognized token:"))
}

func ok(resp hrana.StreamResponse) hrana.StreamResult {
	return hrana.StreamResult{Type: hrana.ResultOK, Response: &resp}
}

func fail(err *hrana.Error) hrana.StreamResult {
	return hrana.StreamResult{Type: hrana.ResultError, Error: err}
}

func (ex *executor) run(rq hrana.StreamRequest) hrana.StreamResult {
	if ex.st.closed {
		return fail(failure(codeStreamClosed, "the stream was closed by an earlier close request"))
	}
	switch rq.Type {
	case hrana.ReqClose:
		ex.st.closed = true
		return ok(hrana.StreamResponse{Type: hrana.ReqClose})
	case hrana.ReqGetAutocommit:
		// Without the writer the stream holds no transaction.
		return ok(hrana.StreamResponse{Type: hrana.ReqGetAutocommit, IsAutocommit: ex.c == nil || ex.c.Autocommit()})
	case hrana.ReqExecute, hrana.ReqBatch, hrana.ReqSequence, hrana.ReqDescribe:
		if ex.c == nil {
			return fail(asHrana(ex.noConn))
		}
	}
	switch rq.Type {
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
		if err := ex.sequence(sql); err != nil {
			return fail(err)
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
		if err := ex.st.sqls.store(*rq.SQLID, *rq.SQL); err != nil {
			return fail(err)
		}
		return ok(hrana.StreamResponse{Type: hrana.ReqStoreSQL})
	case hrana.ReqCloseSQL:
		ex.st.sqls.remove(*rq.SQLID)
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
		s, ok := ex.st.sqls.get(*id)
		if !ok {
			return "", failure(codeBadRequest, "SQL text %d not found", *id)
		}
		return s, nil
	}
	return "", failure(codeBadRequest, "a statement needs sql or sql_id")
}

// prepare compiles exactly one statement. The rest of the text must hold
// no statement, and must compile: garbage after a statement is an error,
// not something to ignore.
func (ex *executor) prepare(sql string) (*sqlitex.Stmt, *hrana.Error) {
	ex.compiling(sql)
	compiles.Add(1)
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
// sandbox refused and noting a full disk. A write the sandbox refused in a
// READONLY transaction is SQLITE_READONLY, as libSQL reports it.
func (ex *executor) asHrana(err error) *hrana.Error {
	if ex.sb != nil {
		err = ex.sb.refusal(err)
		if ex.sb.readOnlyTx && errors.Is(err, errAuthorization) {
			return &hrana.Error{Message: "SQLite error: attempt to write a readonly database (the transaction is READONLY)", Code: "SQLITE_READONLY"}
		}
	}
	if errors.Is(err, sqlitex.ErrFull) {
		ex.diskFull = true
	}
	return asHrana(err)
}

// errAuthorization matches SQLite's SQLITE_AUTH.
var errAuthorization = &sqlitex.Error{Code: sqlite3.SQLITE_AUTH}

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
	if ex.mem != nil {
		// Twice: the values, then their JSON.
		if !ex.mem.reserve(2 * cost) {
			return hrana.Value{}, &errValue{errNoMemory}
		}
		ex.reserved += 2 * cost
	}
	ex.budget -= cost
	v := st.Column(i)
	if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return hrana.Value{}, &errValue{fmt.Sprintf("column %q holds %v, which JSON cannot carry", st.ColumnName(i), f)}
	}
	return hrana.Value{V: v}, nil
}

// returningSavepoint lets a write that returns rows be undone when one of
// its values cannot be answered: the statement then fails and changes
// nothing, even in autocommit mode. In autocommit mode its RELEASE is the
// commit, which can fail (a deferred foreign key): the write is rolled back
// then and fails with the RELEASE's error.
const returningSavepoint = "_syncdb_returning"

func (ex *executor) execute(s *hrana.Stmt) (*hrana.StmtResult, *hrana.Error) {
	start := time.Now()
	res := &hrana.StmtResult{Rows: [][]hrana.Value{}}
	end, herr := ex.runStmt(s, func(cols []hrana.Col) error {
		res.Cols = cols
		return nil
	}, func(row []hrana.Value) error {
		res.Rows = append(res.Rows, row)
		return nil
	})
	if herr != nil {
		return nil, herr
	}
	res.AffectedRowCount, res.LastInsertRowid = end.affected, end.rowid
	res.RowsRead, res.RowsWritten = end.rowsRead, end.affected
	res.QueryDurationMS = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

// stmtEnd is what a statement did, as its result reports it.
type stmtEnd struct {
	affected uint64
	rowid    *int64
	rowsRead uint64
}

// beginReadonlyRE matches libSQL's read-only transaction, which SQLite would
// parse as a deferred transaction named READONLY.
var beginReadonlyRE = regexp.MustCompile(`(?i)^\s*BEGIN\s+(TRANSACTION\s+)?READONLY\s*;?\s*$`)

// insertRE matches statements whose rowid the result reports.
var insertRE = regexp.MustCompile(`(?is)^\s*(INSERT|REPLACE)\b`)

// runStmt executes one statement, reporting its columns to begin and, if
// the client wants them, its rows to row. The counts in the result are this
// statement's alone: sqlite3_changes and last_insert_rowid keep the values
// of the last statement that set them, which may be another client's.
func (ex *executor) runStmt(s *hrana.Stmt, begin func([]hrana.Col) error, row func([]hrana.Value) error) (stmtEnd, *hrana.Error) {
	var end stmtEnd
	sql, herr := ex.resolve(s.SQL, s.SQLID)
	if herr != nil {
		return end, herr
	}
	readonlyTx := beginReadonlyRE.MatchString(sql)
	if readonlyTx {
		sql = "BEGIN DEFERRED"
	}
	st, done, herr := ex.stmt(sql)
	if herr != nil {
		return end, herr
	}
	ran := false // without an error
	defer func() { done(ran) }()
	if herr := bindArgs(st, s); herr != nil {
		return end, herr
	}
	wantRows := s.WantRows == nil || *s.WantRows
	var cols []hrana.Col
	// A statement's columns are those of the schema it was compiled with
	// (a reader's last read one, or the one of the step that kept it
	// prepared, see stmtcache.go); the first step compiles it again if
	// the schema changed since. A read's columns are read after it, then:
	// stepping a read before begin has no effect begin could have
	// prevented. A write reads them before (begin may refuse it), from
	// the writer's own schema.
	late := st.Readonly() && st.ColumnCount() > 0
	if !late {
		cols = columns(st)
		if err := begin(cols); err != nil {
			return end, asHrana(err)
		}
	}
	inTx := !ex.c.Autocommit()
	guard := wantRows && !st.Readonly() && len(cols) > 0
	outside := ex.c.Autocommit()
	if guard {
		if err := ex.c.Exec("SAVEPOINT " + returningSavepoint); err != nil {
			return end, ex.asHrana(err)
		}
	}
	total, rowid := ex.c.TotalChanges(), ex.c.LastInsertRowid()
	var bad, sent, begun error
	err := ex.c.WithContext(ex.ctx, func() error {
		for {
			more, err := st.Step()
			if late {
				late = false
				cols = columns(st)
				if begun = begin(cols); begun != nil {
					return begun
				}
			}
			if err != nil || !more {
				return err
			}
			end.rowsRead++
			if !wantRows {
				continue
			}
			vals := make([]hrana.Value, len(cols))
			for i := range vals {
				if vals[i], bad = ex.value(st, i); bad != nil {
					return bad
				}
			}
			if sent = row(vals); sent != nil {
				return sent
			}
		}
	})
	defer ex.afterStmt()
	if guard {
		st.Reset()
		end := "RELEASE " + returningSavepoint
		failed := bad != nil || sent != nil || err != nil
		if failed {
			// A statement that fails (an interrupt included, which may
			// come after its write and before its last row) did nothing.
			end = "ROLLBACK TO " + returningSavepoint + "; " + end
		}
		gerr := ex.c.Exec(end)
		if outside && !ex.c.Autocommit() {
			// The savepoint began the transaction, and its RELEASE is
			// the commit: it fails, leaving the transaction open, when
			// the write broke a deferred foreign key. Undo the write
			// rather than leave the stream in a transaction the client
			// does not know of (its next autocommit writes would be
			// rolled back with it).
			ex.c.Exec("ROLLBACK")
			if gerr == nil {
				gerr = errors.New("the statement's transaction did not end; it was rolled back")
			}
		}
		if gerr != nil && err == nil {
			err = gerr
		}
	}
	switch {
	case begun != nil:
		return end, asHrana(begun)
	case bad != nil:
		return end, failure("RESPONSE_VALUE", "%v; the statement was not run", bad)
	case sent != nil:
		st.Reset()
		return end, ex.interrupted(sent, asHrana(sent), inTx, !st.Readonly())
	case err != nil:
		st.Reset()
		return end, ex.interrupted(err, ex.asHrana(err), inTx, !st.Readonly())
	}
	if readonlyTx {
		// The sandbox refuses writes until the transaction ends.
		ex.sb.readOnlyTx = true
		ex.st.readOnly = true
	}
	if ex.c.TotalChanges() != total {
		end.affected = uint64(ex.c.Changes())
	}
	if id := ex.c.LastInsertRowid(); id != rowid || (end.affected > 0 && insertRE.MatchString(sql)) {
		end.rowid = &id
	}
	ran = true
	return end, nil
}

// readSchema is a statement whose step checks that the connection's copy of
// the schema is current (SQLite's OP_Transaction), reading it again if not.
// PRAGMA schema_version does not.
const readSchema = "SELECT 1 FROM sqlite_schema LIMIT 0"

// columns describes st's result columns.
func columns(st *sqlitex.Stmt) []hrana.Col {
	cols := make([]hrana.Col, st.ColumnCount())
	for i := range cols {
		name, decl := st.ColumnName(i), st.ColumnDecltype(i)
		cols[i].Name = &name
		if decl != "" {
			cols[i].Decltype = &decl
		}
	}
	return cols
}

// afterStmt lifts the read-only guard once a READONLY transaction ended.
func (ex *executor) afterStmt() {
	if ex.st.readOnly && ex.c.Autocommit() {
		ex.st.readOnly = false
		ex.sb.readOnlyTx = false
	}
}

// interrupted returns herr, the error of a statement that failed with err.
// A statement interrupted inside a transaction (inTx: one was open before
// it) rolls the transaction back if the server imposed the interrupt
// (StatementTimeout, a stalled cursor, a cursor holding the WAL) or if the
// statement may have written (wrote: SQLite rolls back an interrupted
// write's statement, and may roll back the transaction, but not an
// interrupted read), so that what the transaction did before it (the first
// steps of a batch) can never be committed without the rest: herr says
// so, and the stream's next requests fail (errTxnInterrupted) rather than
// run in autocommit while the client believes its transaction open. A read
// the client itself stopped (close_cursor, a cancel) leaves the
// transaction as it was, as sqld does.
func (ex *executor) interrupted(err error, herr *hrana.Error, inTx, wrote bool) *hrana.Error {
	if !inTx || !ex.st.holds || !isInterrupt(err) {
		return herr
	}
	if !wrote && !ex.serverInterrupt(err) {
		return herr
	}
	if !ex.c.Autocommit() {
		// If this fails, the transaction still cannot commit: the next
		// request fails and ends the stream's session.
		ex.c.Exec("ROLLBACK")
		ex.stmts.purge() // the rollback may have undone a schema change
	}
	ex.afterStmt()
	ex.st.timedOut = errTxnInterrupted
	out := *herr
	out.Message += "; the transaction was rolled back"
	return &out
}

// serverInterrupt tells whether the server imposed the interrupt err: the
// statement's time ran out (its context's cause is DeadlineExceeded, for
// context.WithTimeout and runClock alike) or a cursor was ended for
// stalling the writer or holding the WAL, not a cancel by the client
// (close_cursor, its connection gone).
func (ex *executor) serverInterrupt(err error) bool {
	return errors.Is(err, errCursorStalled) || errors.Is(err, errCursorHoldsWAL) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(context.Cause(ex.ctx), context.DeadlineExceeded)
}

// isInterrupt tells whether a statement's error is an interruption.
func isInterrupt(err error) bool {
	var se *sqlitex.Error
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errCursorStalled) || errors.Is(err, errCursorHoldsWAL) ||
		(errors.As(err, &se) && se.Code&0xff == sqlite3.SQLITE_INTERRUPT)
}

// sequence runs every statement of sql, stopping at the first error.
func (ex *executor) sequence(sql string) *hrana.Error {
	defer ex.afterStmt()
	defer ex.stmts.purge() // it may have changed the schema
	ex.compiling(sql)
	inTx := !ex.c.Autocommit()
	if err := ex.c.WithContext(ex.ctx, func() error { return ex.c.Exec(sql) }); err != nil {
		// Its statements are not told apart: taken as writing.
		return ex.interrupted(err, ex.asHrana(err), inTx, true)
	}
	return nil
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
	defer ex.selfContained(b)()
	ex.steps(b, func(i int, stmt *hrana.Stmt) bool {
		res.StepResults[i], res.StepErrors[i] = ex.execute(stmt)
		return res.StepErrors[i] == nil
	}, func(i int, err *hrana.Error) {
		res.StepErrors[i] = err
	})
	return res
}

// selfContained returns what to do after batch b: a batch that begins in
// autocommit mode and holds its own COMMIT is a transaction of its own, all
// or nothing. If it ends with the transaction still open (its COMMIT was
// skipped, because a step failed), it is rolled back then, rather than
// kept for a next request that such clients (the sync clients' push) never
// send.
func (ex *executor) selfContained(b *hrana.Batch) func() {
	if !ex.c.Autocommit() {
		return func() {}
	}
	commits := false
	for i := range b.Steps {
		st := &b.Steps[i].Stmt
		sql := ""
		if st.SQL != nil {
			sql = *st.SQL
		} else if st.SQLID != nil {
			sql, _ = ex.st.sqls.get(*st.SQLID)
		}
		if k := sqlitex.FirstKeyword(sql); k == "COMMIT" || k == "END" {
			commits = true
		}
	}
	return func() {
		if commits && !ex.c.Autocommit() {
			ex.c.Exec("ROLLBACK")
			ex.stmts.purge() // the rollback may have undone a schema change
			ex.afterStmt()
		}
	}
}

// steps runs the steps of b in order: run for each step whose condition
// holds (it reports whether the step succeeded), fail for a step whose
// condition cannot be evaluated.
func (ex *executor) steps(b *hrana.Batch, run func(i int, stmt *hrana.Stmt) bool, fail func(i int, err *hrana.Error)) {
	out := make([]outcome, len(b.Steps))
	for i := range b.Steps {
		step := &b.Steps[i]
		if step.Condition != nil {
			hold, err := ex.eval(step.Condition, out, i)
			if err != nil {
				out[i] = failed
				fail(i, err)
				continue
			}
			if !hold {
				continue
			}
		}
		out[i] = failed
		if run(i, &step.Stmt) {
			out[i] = succeeded
		}
	}
}

// outcome is what became of a batch step.
type outcome uint8

const (
	skipped outcome = iota
	succeeded
	failed
)

// eval evaluates a condition of step i against the outcomes of earlier
// steps. The decoders bound nesting depth.
func (ex *executor) eval(c *hrana.BatchCond, out []outcome, i int) (bool, *hrana.Error) {
	switch c.Type {
	case hrana.CondOK, hrana.CondError:
		if int(c.Step) >= i {
			return false, failure(codeBadRequest, "condition of step %d refers to step %d, which has not run", i, c.Step)
		}
		if c.Type == hrana.CondOK {
			return out[c.Step] == succeeded, nil
		}
		return out[c.Step] == failed, nil
	case hrana.CondNot:
		v, err := ex.eval(c.Cond, out, i)
		return !v, err
	case hrana.CondAnd, hrana.CondOr:
		and := c.Type == hrana.CondAnd
		for k := range c.Conds {
			v, err := ex.eval(&c.Conds[k], out, i)
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

// cursor runs b like batch, but hands its results to emit as they come:
// step_begin, the rows, then step_end or step_error for each step that
// runs. An emit error (the client went away) ends the batch.
func (ex *executor) cursor(b *hrana.Batch, emit func(*hrana.CursorEntry) error) error {
	var emitErr error
	ex.steps(b, func(i int, stmt *hrana.Stmt) bool {
		if emitErr != nil {
			return false
		}
		begun := false
		end, herr := ex.runStmt(stmt, func(cols []hrana.Col) error {
			begun = true
			emitErr = emit(&hrana.CursorEntry{Type: hrana.EntryStepBegin, Step: uint32(i), Cols: cols})
			return emitErr
		}, func(row []hrana.Value) error {
			emitErr = emit(&hrana.CursorEntry{Type: hrana.EntryRow, Row: row})
			return emitErr
		})
		switch {
		case emitErr != nil:
			return false
		case herr != nil:
			emitErr = emit(&hrana.CursorEntry{Type: hrana.EntryStepError, Step: uint32(i), Error: herr})
			return false
		case !begun:
			return false
		}
		emitErr = emit(&hrana.CursorEntry{Type: hrana.EntryStepEnd, AffectedRowCount: end.affected, LastInsertRowid: end.rowid})
		return emitErr == nil
	}, func(i int, err *hrana.Error) {
		if emitErr == nil {
			emitErr = emit(&hrana.CursorEntry{Type: hrana.EntryStepError, Step: uint32(i), Error: err})
		}
	})
	return emitErr
}

func (ex *executor) describe(sql string) (*hrana.DescribeResult, *hrana.Error) {
	if ex.sb != nil && ex.sb.readOnly {
		// A reader compiles with the schema it last read, and a statement
		// described is not stepped (which would compile it again): a read
		// of the schema table makes SQLite read the current schema first.
		if err := ex.c.WithContext(ex.ctx, func() error { return ex.c.Exec(readSchema) }); err != nil {
			return nil, ex.asHrana(err)
		}
	}
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
