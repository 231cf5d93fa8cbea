package syncdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/messages"
)

// This file is the database/sql driver over a DB: DB.SQL and sql.Open
// ("syncdb", dsn) hand out *sql.DB values whose connections are conns.
// A conn is a routing handle, not a SQLite connection: reads go to the
// read pool, writes to the writer (the database actor), so capture and
// refusals have one implementation, the actor's.

// conn is one database/sql connection over a DB.
type conn struct {
	d   *DB
	wtx *writeTx // an open write transaction
	rtx *sql.Tx  // an open read-only transaction on the read pool
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
)

// errRollback ends a write transaction's serving loop without committing.
var errRollback = errors.New("rolled back")

// Prepare is PrepareContext without a context.
func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext returns a statement that runs query each time it is
// executed, wherever the conn routes it then (the read pool, the writer or
// the open transaction). The writer and the read pool keep their own
// prepared statements, so nothing is compiled here.
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.d.check(); err != nil {
		return nil, err
	}
	return &stmt{c: c, query: query}, nil
}

// Close rolls back a transaction left open.
func (c *conn) Close() error {
	var err error
	if c.wtx != nil {
		err = c.wtx.end(false)
		c.wtx = nil
	}
	if c.rtx != nil {
		err = errors.Join(err, c.rtx.Rollback())
		c.rtx = nil
	}
	return err
}

// Begin is BeginTx with default options.
func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx opens a write transaction on the writer, or with ReadOnly a read
// transaction on the read pool (one snapshot for all its statements, never
// waiting for writes). SQLite's transactions are serializable; other
// isolation levels are refused.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault, sql.LevelSerializable:
	default:
		return nil, fmt.Errorf("isolation level %v is not supported (SQLite transactions are serializable)", sql.IsolationLevel(opts.Isolation))
	}
	if c.wtx != nil || c.rtx != nil {
		return nil, errors.New("a transaction is already open on this connection")
	}
	if opts.ReadOnly {
		if err := c.d.check(); err != nil {
			return nil, err
		}
		tx, err := c.d.readers.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, err
		}
		c.rtx = tx
		return driverTx{c}, nil
	}
	t, err := c.d.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	c.wtx = t
	if p, ok := ctx.Value(lentKey{}).(**writeTx); ok {
		*p = t // DB.Tx's
	}
	return driverTx{c}, nil
}

// lentKey is the context key by which DB.Tx learns the writeTx under its
// *sql.Tx (a **writeTx BeginTx sets).
type lentKey struct{}

// driverTx ends the conn's open transaction.
type driverTx struct{ c *conn }

func (t driverTx) Commit() error   { return t.c.endTx(true) }
func (t driverTx) Rollback() error { return t.c.endTx(false) }

func (c *conn) endTx(commit bool) error {
	switch {
	case c.wtx != nil:
		w := c.wtx
		c.wtx = nil
		return w.end(commit)
	case c.rtx != nil:
		r := c.rtx
		c.rtx = nil
		if commit {
			return r.Commit()
		}
		return r.Rollback()
	}
	return sql.ErrTxDone
}

// CheckNamedValue passes every argument through unchanged: the connection
// underneath converts (or refuses) it exactly as for DB.Exec, so that both
// accept the same values. sql.Named arguments keep their names.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if _, ok := nv.Value.(sql.Out); ok {
		return errors.New("sql.Out parameters are not supported")
	}
	return nil
}

// args turns database/sql's arguments back into DB.Exec's.
func args(named []driver.NamedValue) []any {
	out := make([]any, len(named))
	for i, nv := range named {
		if nv.Name != "" {
			out[i] = sql.Named(nv.Name, nv.Value)
		} else {
			out[i] = nv.Value
		}
	}
	return out
}

// ExecContext runs a statement in the open transaction, or else as a write
// transaction of its own (DB.Exec).
//
// The arguments' Value methods are called here (CheckNamedValue passes
// them on), on the caller's goroutine, before they reach the database/sql
// under this driver (resolveArgs): in the write transaction inside do, so
// that a panic or Goexit in one ends the transaction as one in the
// statement would. The database/sql above this driver (the user's, for
// DB.SQL) holds its own locks meanwhile; what a panic or Goexit does to
// them is the standard library's (see DB.SQL).
func (c *conn) ExecContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Result, error) {
	a := args(named)
	switch {
	case c.wtx != nil:
		var res sql.Result
		err := c.wtx.do(ctx, func(ctx context.Context, w messages.WriteConn) (err error) {
			a, err := resolveArgs(a)
			if err != nil {
				return err
			}
			res, err = w.Exec(ctx, query, a...)
			return err
		})
		return res, err
	case c.rtx != nil:
		if err := dbactor.CheckRead(query); err != nil {
			return nil, err
		}
		a, err := resolveArgs(a)
		if err != nil {
			return nil, err
		}
		c.d.gate.mu.RLock()
		defer c.d.gate.mu.RUnlock()
		return c.rtx.ExecContext(ctx, query, a...)
	}
	return c.d.Exec(ctx, query, a...)
}

// QueryContext runs a query in the open transaction, or on the read pool.
// A statement that writes (INSERT ... RETURNING, for instance) runs on the
// writer in a write transaction of its own, like DB.Exec. The arguments'
// Value methods are called as in ExecContext.
func (c *conn) QueryContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Rows, error) {
	a := args(named)
	switch {
	case c.wtx != nil:
		return c.wtx.query(ctx, query, a)
	case c.rtx != nil:
		if err := dbactor.CheckRead(query); err != nil {
			return nil, err
		}
		a, err := resolveArgs(a)
		if err != nil {
			return nil, err
		}
		c.d.gate.mu.RLock()
		defer c.d.gate.mu.RUnlock()
		rows, err := c.rtx.QueryContext(ctx, query, a...)
		if err != nil {
			return nil, err
		}
		return newStreamRows(rows)
	}
	if err := dbactor.CheckRead(query); err != nil {
		return nil, err
	}
	ro, err := c.d.readOnly(ctx, query)
	if err != nil {
		return nil, err
	}
	if !ro {
		t, err := c.d.beginWrite(ctx)
		if err != nil {
			return nil, err
		}
		rows, err := t.query(ctx, query, a)
		if err != nil {
			t.end(false)
			return nil, err
		}
		if err := t.end(true); err != nil {
			return nil, err
		}
		return rows, nil
	}
	rows, err := c.d.Query(ctx, query, a...)
	if err != nil {
		return nil, err
	}
	return newStreamRows(rows)
}

// Ping reports ErrClosed once the DB is closed.
func (c *conn) Ping(context.Context) error { return c.d.check() }

// ResetSession tells database/sql to drop connections of a closed DB.
func (c *conn) ResetSession(context.Context) error {
	if c.d.check() != nil {
		return driver.ErrBadConn
	}
	return nil
}

// IsValid is false once the DB is closed.
func (c *conn) IsValid() bool { return c.d.check() == nil }

// stmt is a statement prepared on a conn: its text, run through the conn.
type stmt struct {
	c     *conn
	query string
}

var (
	_ driver.StmtExecContext  = (*stmt)(nil)
	_ driver.StmtQueryContext = (*stmt)(nil)
)

func (s *stmt) Close() error  { return nil }
func (s *stmt) NumInput() int { return -1 } // SQLite checks the arguments

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), valuesToNamed(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), valuesToNamed(args))
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func valuesToNamed(vals []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(vals))
	for i, v := range vals {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

// readOnly reports whether query makes no change to the database, as
// SQLite compiles it on a reader (sqlite3_stmt_readonly). A statement that
// does not compile is reported as not read-only, so that the writer runs it
// and reports its error.
func (d *DB) readOnly(ctx context.Context, query string) (bool, error) {
	switch sqlitex.FirstKeyword(query) {
	case "SELECT", "VALUES":
		return true, nil
	case "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER":
		return false, nil
	}
	c, err := d.readers.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	ro := false
	err = sqlitex.Raw(ctx, c, func(rc *sqlitex.Conn) error {
		st, _, err := rc.Prepare(query)
		if err != nil || st == nil {
			return nil
		}
		ro = st.Readonly()
		return st.Close()
	})
	return ro, err
}

// writeTx is a write transaction held open across calls: a DB.Tx whose
// function, running in the db actor's turn (messages.Tx), holds the
// writer until the end. Meanwhile the writer runs nothing else.
//
// The statements do not travel to that goroutine: it lends the writer to
// the transaction's caller, who runs each statement on its own goroutine
// under mu (do). A channel round trip per statement, two goroutine
// handoffs, cost more than a one-row INSERT itself (issue 15: 10,000 rows
// in one DB.Tx). Ownership stays explicit: the actor owns the writer, the
// serving goroutine holds the actor's turn for the whole transaction, and
// mu says who uses the writer inside it: a statement of the caller's, or
// the serving loop when it ends the transaction (over). Once over is set,
// no statement runs on the writer again.
type writeTx struct {
	ops  chan txOp
	done chan struct{} // closed when the transaction has ended
	err  error         // how it ended, once done is closed

	w  messages.WriteConn // the writer, lent for the transaction; set before begun
	mu sync.Mutex         // held while a statement runs, and to set over
	// over: the serving loop has ended (or is ending) the transaction;
	// the writer is the actor's again.
	over bool
	// panicked: what a statement panicked with on the caller's goroutine
	// (set under mu); the serving loop panics with it in the actor's
	// turn, where the transaction function's recovery (dbactor's tx)
	// rolls back and reports it, as if the statement had run there.
	panicked any
}

// txOp ends the transaction: commit, or roll back (commit false).
type txOp struct{ commit bool }

// beginWrite opens a write transaction. ctx bounds the wait for the writer
// and the transaction's life: when it ends, the transaction rolls back.
func (d *DB) beginWrite(ctx context.Context) (*writeTx, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	t := &writeTx{ops: make(chan txOp), done: make(chan struct{})}
	begun := make(chan struct{})
	go func() {
		defer close(t.done)
		t.err = closedErr(d.db.Tx(context.WithoutCancel(ctx), func(w messages.WriteConn) error {
			t.w = w
			close(begun)
			return t.serve(ctx, d.closing)
		}))
	}()
	select {
	case <-begun:
		return t, nil
	case <-t.done:
		return nil, t.err
	case <-ctx.Done():
		return nil, ctx.Err() // the loop, if it starts, sees ctx and rolls back
	}
}

// serve runs in the actor's turn: it holds the writer for the caller's
// statements (do) until the end, the caller's context ends or the DB
// closes.
func (t *writeTx) serve(ctx context.Context, closing <-chan struct{}) error {
	var err error
	select {
	case op := <-t.ops:
		if err = errRollback; op.commit {
			err = nil
		}
	case <-ctx.Done():
		err = ctx.Err()
	case <-closing:
		err = ErrClosed
	}
	// A statement that runs now finishes first; none starts after.
	t.mu.Lock()
	t.over = true
	p := t.panicked
	t.mu.Unlock()
	if p != nil {
		panic(p)
	}
	return err
}

// do runs fn inside the transaction, on the caller's goroutine, with the
// writer the serving loop lent (see writeTx).
//
// If fn does not return, because it panicked (run recovers it) or because
// it ended the goroutine with runtime.Goexit (t.FailNow in a test, called
// from an argument's Value method, say; only deferred calls run then), the
// transaction is over: do gives mu back, wakes the serving loop and waits
// for the transaction to end, rolled back. Without that, a Goexit left mu
// held and the serving loop, holding the actor's turn, waiting for it:
// every later write waited forever.
func (t *writeTx) do(ctx context.Context, fn func(ctx context.Context, w messages.WriteConn) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	if t.over {
		t.mu.Unlock()
		<-t.done
		return t.ended()
	}
	returned := false
	defer func() {
		if returned {
			t.mu.Unlock()
			return
		}
		t.over = true // the transaction rolls back; nothing more runs in it
		t.mu.Unlock()
		select { // wake the serving loop, unless it is ending already
		case t.ops <- txOp{}:
		case <-t.done:
		}
		<-t.done
		err = t.ended()
	}()
	err, panicked := t.run(ctx, fn)
	returned = !panicked
	return err
}

// run calls fn, turning a panic into panicked (t.panicked holds it; the
// serving loop panics with it in the actor's turn). After a Goexit in fn,
// run does not return at all: panicked stays unset, and the transaction
// rolls back without one.
func (t *writeTx) run(ctx context.Context, fn func(ctx context.Context, w messages.WriteConn) error) (err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			t.panicked, panicked = v, true
		}
	}()
	return fn(ctx, t.w), false
}

// fail ends the transaction because of a panic on the caller's goroutine
// outside do (an argument's Value, called by Tx's methods before
// database/sql): as if the statement had panicked inside do, the
// transaction rolls back, and its statements, this one first, report the
// panic.
func (t *writeTx) fail(v any) error {
	return t.do(context.Background(), func(context.Context, messages.WriteConn) error { panic(v) })
}

// query runs a query in the transaction and reads all its rows: they come
// from the writer, which must be free for the next statement.
func (t *writeTx) query(ctx context.Context, query string, a []any) (driver.Rows, error) {
	var rows *bufferedRows
	err := t.do(ctx, func(ctx context.Context, w messages.WriteConn) error {
		a, err := resolveArgs(a) // inside do: see conn.ExecContext
		if err != nil {
			return err
		}
		rs, err := w.Query(ctx, query, a...)
		if err != nil {
			return err
		}
		rows, err = readAll(rs)
		return err
	})
	return rows, err
}

// end commits or rolls back, and waits until the writer is free.
func (t *writeTx) end(commit bool) error {
	select {
	case t.ops <- txOp{commit: commit}:
		<-t.done
	case <-t.done:
		if !commit {
			return nil // it ended already; nothing was committed
		}
		return t.ended()
	}
	if errors.Is(t.err, errRollback) {
		return nil
	}
	return t.err
}

// ended is the error for using a transaction that has ended on its own.
func (t *writeTx) ended() error {
	if t.err == nil || errors.Is(t.err, errRollback) {
		return sql.ErrTxDone
	}
	return fmt.Errorf("the transaction was rolled back: %w", t.err)
}

// streamRows hands database/sql the rows of a read-pool query as they
// come.
type streamRows struct {
	rows  *sql.Rows
	cols  []string
	types []string
	vals  []any
	ptrs  []any
}

func newStreamRows(rows *sql.Rows) (driver.Rows, error) {
	cols, types, err := columns(rows)
	if err != nil {
		rows.Close()
		return nil, err
	}
	r := &streamRows{rows: rows, cols: cols, types: types, vals: make([]any, len(cols)), ptrs: make([]any, len(cols))}
	for i := range r.vals {
		r.ptrs[i] = &r.vals[i]
	}
	return r, nil
}

func columns(rows *sql.Rows) (cols, types []string, err error) {
	if cols, err = rows.Columns(); err != nil {
		return nil, nil, err
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, nil, err
	}
	types = make([]string, len(cts))
	for i, ct := range cts {
		types[i] = ct.DatabaseTypeName()
	}
	return cols, types, nil
}

func (r *streamRows) Columns() []string                       { return r.cols }
func (r *streamRows) ColumnTypeDatabaseTypeName(i int) string { return r.types[i] }
func (r *streamRows) Close() error                            { return r.rows.Close() }

func (r *streamRows) Next(dest []driver.Value) error {
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		return err
	}
	for i, v := range r.vals {
		dest[i] = v
	}
	return nil
}

// bufferedRows are rows read in full.
type bufferedRows struct {
	cols  []string
	types []string
	rows  [][]driver.Value
}

func readAll(rows *sql.Rows) (*bufferedRows, error) {
	defer rows.Close()
	cols, types, err := columns(rows)
	if err != nil {
		return nil, err
	}
	b := &bufferedRows{cols: cols, types: types}
	ptrs := make([]any, len(cols))
	for rows.Next() {
		vals := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]driver.Value, len(cols))
		for i, v := range vals {
			row[i] = v
		}
		b.rows = append(b.rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return b, rows.Close()
}

func (b *bufferedRows) Columns() []string                       { return b.cols }
func (b *bufferedRows) ColumnTypeDatabaseTypeName(i int) string { return b.types[i] }
func (b *bufferedRows) Close() error                            { b.rows = nil; return nil }

func (b *bufferedRows) Next(dest []driver.Value) error {
	if len(b.rows) == 0 {
		return io.EOF
	}
	copy(dest, b.rows[0])
	b.rows = b.rows[1:]
	return nil
}

// rowError returns a *sql.Row whose Scan reports err: database/sql has no
// other way to make one.
func rowError(ctx context.Context, err error) *sql.Row {
	db := sql.OpenDB(errConnector{})
	defer db.Close() // the row keeps its error, and no goroutine stays behind
	return db.QueryRowContext(ctx, "", failWith{err})
}

// failWith is the argument by which errConnector's queries learn their
// error.
type failWith struct{ err error }

type errConnector struct{}

func (errConnector) Connect(context.Context) (driver.Conn, error) { return errConn{}, nil }
func (errConnector) Driver() driver.Driver                        { return sqlDriver{} }

type errConn struct{ driver.Conn }

func (errConn) CheckNamedValue(*driver.NamedValue) error { return nil }
func (errConn) Close() error                             { return nil }

func (errConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	return nil, args[0].Value.(failWith).err
}
