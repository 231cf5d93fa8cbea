// Package sqlitex gives thin, exact access to the SQLite C API of a
// connection opened with the pure-Go modernc.org/sqlite driver.
//
// database/sql hides things syncdb needs: modernc turns TEXT stored in
// DATE/DATETIME/TIMESTAMP columns into time.Time, and there is no way to ask
// sqlite3_get_autocommit, to split a script into statements with their own
// text, or to call sqlite3_db_config. The Hrana server must return values
// byte-exact with their SQLite storage class and the client must replay and
// capture changes exactly, so this package talks to the transpiled C library
// (modernc.org/sqlite/lib) directly, on the handle that a *sql.Conn holds.
//
// Rules:
//   - A *Conn, and every *Stmt made from it, is valid only inside the fn
//     passed to Raw. Raw finalizes any statement fn leaves open.
//   - Use them from the goroutine running fn only. The one exception is
//     Conn.Interrupt, which may be called from any goroutine.
//   - Do not run queries through the *sql.Conn inside fn: database/sql holds
//     the connection's lock meanwhile, so that would deadlock. Use Driver
//     only for what this package lacks, such as registering modernc's hooks.
//
// The handle is taken by reflection from the unexported fields db and tls of
// modernc's *conn; Raw fails with a clear error if that layout changes.
// Memory handed to the C code is always C memory (libc.Xmalloc), never Go
// memory, and text and blobs are bound with SQLITE_TRANSIENT so that SQLite
// copies them.
package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// errDone reports a Conn used after its Raw returned.
var errDone = errors.New("sqlitex: Conn used after Raw returned")

// Conn is the raw SQLite handle of one database/sql connection, see Raw.
type Conn struct {
	db  uintptr   // sqlite3*
	tls *libc.TLS // the driver connection's own TLS
	dc  any       // the driver connection

	// mu guards db against Interrupt from another goroutine: Raw zeroes db
	// under mu when fn returns, and Interrupt reads it under mu.
	mu sync.Mutex

	stmts map[*Stmt]struct{} // open statements, finalized when Raw returns

	// canceled is C memory holding an int32: the number of contexts, of
	// WithContext calls in progress, that are done. The progress handler
	// installed by WithContext reads it; 0 until the first WithContext.
	canceled uintptr
	depth    int // nesting of WithContext calls
}

// Raw runs fn with the raw handle of c's underlying modernc connection, taken
// through c.Raw. The *Conn is valid only inside fn and must not be retained
// or used from another goroutine (except Interrupt). If ctx has a deadline or
// can be canceled, fn runs as under Conn.WithContext: when ctx ends the
// running statement is interrupted. Statements fn leaves open are finalized.
// As with sql.Conn.Raw, if fn returns driver.ErrBadConn (or an error
// wrapping it) database/sql closes the connection instead of reusing it.
func Raw(ctx context.Context, c *sql.Conn, fn func(*Conn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlitex: %w", err)
	}
	return c.Raw(func(dc any) error {
		cn, err := newConn(dc)
		if err != nil {
			return err
		}
		defer cn.release()
		if ctx.Done() == nil {
			return fn(cn)
		}
		return cn.WithContext(ctx, func() error { return fn(cn) })
	})
}

var tlsType = reflect.TypeFor[*libc.TLS]()

// fieldIndexes holds fieldByName's answers: fieldKey → []int (nil: no
// such field).
var fieldIndexes sync.Map

type fieldKey struct {
	t    reflect.Type
	name string
}

// fieldByName is v.FieldByName(name), the field's index looked up once
// per type: Raw and PreUpdate run for every local write (issue 15: the
// lookups by name were about 5% of a one-row INSERT's CPU in a Tx).
func fieldByName(v reflect.Value, name string) reflect.Value {
	k := fieldKey{v.Type(), name}
	idx, ok := fieldIndexes.Load(k)
	if !ok {
		var i []int
		if f, found := k.t.FieldByName(name); found {
			i = f.Index
		}
		idx, _ = fieldIndexes.LoadOrStore(k, i)
	}
	if idx.([]int) == nil {
		return reflect.Value{}
	}
	return v.FieldByIndex(idx.([]int))
}

// newConn reads the fields db and tls of modernc's *conn. Reading unexported
// fields through reflect is allowed; only their names and types are relied
// on, and any change is reported instead of guessed at.
func newConn(dc any) (*Conn, error) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("sqlitex: driver connection is %T, want modernc.org/sqlite's *conn", dc)
	}
	s := v.Elem()
	fdb, ftls := fieldByName(s, "db"), fieldByName(s, "tls")
	if !fdb.IsValid() || fdb.Kind() != reflect.Uintptr || !ftls.IsValid() || ftls.Type() != tlsType {
		return nil, fmt.Errorf("sqlitex: driver connection %T has no fields db uintptr and tls *libc.TLS: "+
			"modernc.org/sqlite internals changed, update sqlitex", dc)
	}
	c := &Conn{db: uintptr(fdb.Uint()), tls: (*libc.TLS)(ftls.UnsafePointer()), dc: dc}
	if c.db == 0 || c.tls == nil {
		return nil, errors.New("sqlitex: driver connection is closed")
	}
	return c, nil
}

// release ends the validity of c when fn returns.
func (c *Conn) release() {
	for s := range c.stmts {
		s.Close()
	}
	if c.canceled != 0 {
		libc.Xfree(c.tls, c.canceled)
		c.canceled = 0
	}
	c.mu.Lock()
	c.db = 0
	c.mu.Unlock()
}

// Driver returns the driver connection, e.g. to call modernc's
// RegisterPreUpdateHook or RegisterCommitHook on it.
func (c *Conn) Driver() any { return c.dc }

// Autocommit reports whether the connection is outside an explicit
// transaction (sqlite3_get_autocommit).
func (c *Conn) Autocommit() bool { return sqlite3.Xsqlite3_get_autocommit(c.tls, c.handle()) != 0 }

// Changes returns the rows changed by the last INSERT, UPDATE or DELETE
// (sqlite3_changes64).
func (c *Conn) Changes() int64 { return sqlite3.Xsqlite3_changes64(c.tls, c.handle()) }

// TotalChanges returns the rows changed since the connection was opened
// (sqlite3_total_changes64).
func (c *Conn) TotalChanges() int64 { return sqlite3.Xsqlite3_total_changes64(c.tls, c.handle()) }

// LastInsertRowid returns sqlite3_last_insert_rowid.
func (c *Conn) LastInsertRowid() int64 {
	return sqlite3.Xsqlite3_last_insert_rowid(c.tls, c.handle())
}

// handle returns the sqlite3* for the methods that have no error to return;
// after Raw it panics rather than hand SQLite a null handle.
func (c *Conn) handle() uintptr {
	if c.db == 0 {
		panic(errDone)
	}
	return c.db
}

// errInTransaction: ResetCache was called while the main database has a
// transaction, where SQLite would silently keep the cache.
var errInTransaction = errors.New("sqlitex: ResetCache inside a transaction")

// errCacheKept: SQLite did not empty the cache (its data version did not
// move) although no transaction was seen.
var errCacheKept = errors.New("sqlitex: ResetCache: SQLite kept the page cache")

// ResetCache empties the connection's page cache of the main database
// (SQLITE_FCNTL_RESET_CACHE), as SQLite does itself when another
// connection changed the database: pages written behind the b-tree layer
// (sqlite_dbpage) are read again, their decoded headers with them. SQLite
// ignores the request, and still reports success, while the b-tree has
// any transaction, a read one too: a statement stepped and not reset holds
// one with autocommit on. So ResetCache refuses unless sqlite3_txn_state
// says none, and checks that the pager's data version (bumped by every
// cache reset, SQLITE_FCNTL_DATA_VERSION) moved; an error means the cache
// may be stale, and the caller replaces the connection.
func (c *Conn) ResetCache() error {
	main, err := libc.CString("main")
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, main)
	if !c.Autocommit() || sqlite3.Xsqlite3_txn_state(c.tls, c.handle(), main) != sqlite3.SQLITE_TXN_NONE {
		return errInTransaction
	}
	before, err := c.dataVersion(main)
	if err != nil {
		return err
	}
	if rc := sqlite3.Xsqlite3_file_control(c.tls, c.handle(), main, sqlite3.SQLITE_FCNTL_RESET_CACHE, 0); rc != sqlite3.SQLITE_OK {
		return c.errorFor(rc)
	}
	after, err := c.dataVersion(main)
	if err != nil {
		return err
	}
	if after == before {
		return errCacheKept
	}
	return nil
}

// BusyStatement reports whether a statement of the connection has been
// stepped and neither run to completion nor reset (sqlite3_stmt_busy over
// sqlite3_next_stmt): someone's rows still open. database/sql's close of
// the connection waits for those rows to be closed, so a caller that owns
// every statement on the connection checks this before replacing it.
func (c *Conn) BusyStatement() bool {
	db := c.handle()
	for s := sqlite3.Xsqlite3_next_stmt(c.tls, db, 0); s != 0; s = sqlite3.Xsqlite3_next_stmt(c.tls, db, s) {
		if sqlite3.Xsqlite3_stmt_busy(c.tls, s) != 0 {
			return true
		}
	}
	return false
}

// ResetBusy resets every statement of the connection that has been
// stepped and neither run to completion nor reset (sqlite3_reset over
// sqlite3_next_stmt). It is for a connection whose statement was left
// stepping by a panic that unwound through the driver (a Go SQL function
// that panicked, say: modernc resets a kept statement after its step
// without a deferred call): while it steps, SQLite refuses to commit
// ("SQL statements in progress"). Whoever holds such a statement finds it
// reset, as after an error.
func (c *Conn) ResetBusy() {
	db := c.handle()
	for s := sqlite3.Xsqlite3_next_stmt(c.tls, db, 0); s != 0; s = sqlite3.Xsqlite3_next_stmt(c.tls, db, s) {
		if sqlite3.Xsqlite3_stmt_busy(c.tls, s) != 0 {
			sqlite3.Xsqlite3_reset(c.tls, s)
		}
	}
}

// dataVersion is the pager's data version of schema (a C string),
// SQLITE_FCNTL_DATA_VERSION: it changes whenever the page cache is reset.
func (c *Conn) dataVersion(schema uintptr) (uint32, error) {
	p := libc.Xmalloc(c.tls, 4)
	if p == 0 {
		return 0, errors.New("sqlitex: out of memory")
	}
	defer libc.Xfree(c.tls, p)
	if rc := sqlite3.Xsqlite3_file_control(c.tls, c.handle(), schema, sqlite3.SQLITE_FCNTL_DATA_VERSION, p); rc != sqlite3.SQLITE_OK {
		return 0, c.errorFor(rc)
	}
	return *(*uint32)(unsafe.Pointer(p)), nil
}

// SetNoCheckpointOnClose sets SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE: when on,
// closing the last connection to a WAL database leaves the WAL as it is.
func (c *Conn) SetNoCheckpointOnClose(on bool) error {
	return c.dbConfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, on)
}

// SetDefensive sets SQLITE_DBCONFIG_DEFENSIVE. It must be off to write
// sqlite_dbpage (it is off unless the DSN sets _defensive).
func (c *Conn) SetDefensive(on bool) error {
	return c.dbConfig(sqlite3.SQLITE_DBCONFIG_DEFENSIVE, on)
}

// dbConfig calls sqlite3_db_config(db, op, int onoff, int *pRes) and checks
// through pRes that the setting took.
func (c *Conn) dbConfig(op int32, on bool) error {
	if c.db == 0 {
		return errDone
	}
	// Two 8-byte vararg slots, then the int pRes points to.
	p := libc.Xmalloc(c.tls, 2*8+4)
	if p == 0 {
		return c.errorFor(sqlite3.SQLITE_NOMEM)
	}
	defer libc.Xfree(c.tls, p)
	res := p + 16
	*cptr[int32](res) = -1
	if rc := sqlite3.Xsqlite3_db_config(c.tls, c.db, op, libc.VaList(p, libc.Bool32(on), res)); rc != sqlite3.SQLITE_OK {
		return c.errorFor(rc)
	}
	if got := *cptr[int32](res); got != libc.Bool32(on) {
		return fmt.Errorf("sqlitex: sqlite3_db_config(%d, %v) left the setting at %d", op, on, got)
	}
	return nil
}

// Interrupt calls sqlite3_interrupt: the statements running on the
// connection stop with SQLITE_INTERRUPT. It may be called from any goroutine,
// also after Raw returned (it then does nothing).
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == 0 {
		return
	}
	// Like modernc's own conn.interrupt: a fresh TLS, because c.tls may be in
	// use by the statement being interrupted and a TLS is not safe for
	// concurrent use.
	tls := libc.NewTLS()
	sqlite3.Xsqlite3_interrupt(tls, c.db)
	tls.Close()
}

// progressCanceled is the progress handler WithContext installs; p points to
// Conn.canceled. A nonzero result makes the statement fail with
// SQLITE_INTERRUPT.
func progressCanceled(_ *libc.TLS, p uintptr) int32 {
	return atomic.LoadInt32(cptr[int32](p))
}

var progressCanceledPtr = cFunc(progressCanceled)

// cFunc turns a top-level Go func into a C function pointer for the
// transpiled code (see https://golang.org/s/go11func). Only top-level funcs,
// whose func value is static, are safe.
func cFunc[T any](f T) uintptr { return *(*uintptr)(unsafe.Pointer(&f)) }

// cptr views C memory at p (from libc.Xmalloc or SQLite, never the Go heap)
// as a *T. go vet reports "possible misuse of unsafe.Pointer" here, as it
// does for modernc itself; the addresses are C memory, which does not move.
func cptr[T any](p uintptr) *T { return (*T)(unsafe.Pointer(p)) }

// cbytes views the n bytes of C memory at p as a slice.
func cbytes(p uintptr, n int) []byte { return unsafe.Slice(cptr[byte](p), n) }

// WithContext runs fn. If ctx ends meanwhile, the running statement is
// interrupted (sqlite3_interrupt), statements that fn starts afterwards fail
// with SQLITE_INTERRUPT as well, and if fn returns an error WithContext
// returns ctx.Err() wrapped together with it (errors.Is works for both). If fn
// returns nil its work is done and nil is returned. WithContext calls may
// nest. It uses the connection's progress handler while it runs.
func (c *Conn) WithContext(ctx context.Context, fn func() error) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlitex: %w", err)
	}
	if ctx.Done() == nil {
		return fn()
	}
	if c.db == 0 {
		return errDone
	}
	if c.canceled == 0 {
		if c.canceled = libc.Xmalloc(c.tls, 4); c.canceled == 0 {
			return c.errorFor(sqlite3.SQLITE_NOMEM)
		}
		*cptr[int32](c.canceled) = 0
	}
	flag := cptr[int32](c.canceled)
	if c.depth == 0 {
		// sqlite3_interrupt only reaches statements that are running: SQLite
		// clears it when a statement starts while none is active. The progress
		// handler catches the statements started after ctx ended.
		sqlite3.Xsqlite3_progress_handler(c.tls, c.db, 1000, progressCanceledPtr, c.canceled)
	}
	c.depth++

	var fired atomic.Bool
	afterDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(afterDone)
		fired.Store(true)
		atomic.AddInt32(flag, 1)
		c.Interrupt()
	})
	// Deferred so that a panic in fn leaves no progress handler pointing at
	// c.canceled, which Raw frees, and no AfterFunc about to write to it.
	defer func() {
		if !stop() {
			<-afterDone
		}
		c.depth--
		if c.depth == 0 {
			sqlite3.Xsqlite3_progress_handler(c.tls, c.db, 0, 0, 0)
		}
		if !fired.Load() {
			return
		}
		if atomic.AddInt32(flag, -1) == 0 {
			c.clearInterrupt()
		}
		if err != nil {
			err = fmt.Errorf("sqlitex: %w: %w", ctx.Err(), err)
		}
	}()
	return fn()
}

// clearInterrupt resets a pending sqlite3_interrupt by starting a trivial
// statement (SQLite clears the flag when a statement starts while none is
// active). Otherwise modernc's IsValid would see sqlite3_is_interrupted and
// database/sql would discard this connection.
func (c *Conn) clearInterrupt() {
	if sqlite3.Xsqlite3_is_interrupted(c.tls, c.db) == 0 {
		return
	}
	if s, _, err := c.Prepare("SELECT 1"); err == nil {
		s.Step()
		s.Close()
	}
}

// Prepare compiles the first statement in sql. st is nil when sql holds only
// whitespace, comments and semicolons; tail is the rest of sql after the
// statement.
func (c *Conn) Prepare(sql string) (st *Stmt, tail string, err error) {
	if c.db == 0 {
		return nil, sql, errDone
	}
	b, err := newCText(c.tls, sql)
	if err != nil {
		return nil, sql, err
	}
	defer b.free(c.tls)
	st, n, err := c.prepare(b, 0)
	return st, sql[n:], err
}

// cText is a copy of a Go string in C memory, after 16 bytes that serve as
// the out-parameters of sqlite3_prepare_v2.
type cText struct {
	p uintptr // the out-parameters; the text starts at p+16, NUL-terminated
	s string
}

func newCText(tls *libc.TLS, s string) (cText, error) {
	p := libc.Xmalloc(tls, libc.Tsize_t(16+len(s)+1))
	if p == 0 {
		return cText{}, fmt.Errorf("sqlitex: cannot allocate %d bytes", 16+len(s)+1)
	}
	copy(cbytes(p+16, len(s)), s)
	*cptr[byte](p + 16 + uintptr(len(s))) = 0
	return cText{p, s}, nil
}

func (b cText) free(tls *libc.TLS) { libc.Xfree(tls, b.p) }

// prepare compiles the first statement of b.s[off:] and returns it (nil if
// there is none) and the offset in b.s where the rest starts.
func (c *Conn) prepare(b cText, off int) (*Stmt, int, error) {
	if len(b.s)-off >= math.MaxInt32 {
		return nil, off, &Error{Code: sqlite3.SQLITE_TOOBIG, Msg: "string or blob too big"}
	}
	ppStmt, pzTail := b.p, b.p+8
	zSQL := b.p + 16 + uintptr(off)
	*cptr[uintptr](ppStmt) = 0
	*cptr[uintptr](pzTail) = 0
	// nByte includes the terminating NUL: SQLite then need not copy the text.
	rc := sqlite3.Xsqlite3_prepare_v2(c.tls, c.db, zSQL, int32(len(b.s)-off+1), ppStmt, pzTail)
	p := *cptr[uintptr](ppStmt)
	end := len(b.s)
	if t := *cptr[uintptr](pzTail); t != 0 {
		end = min(int(t-(b.p+16)), len(b.s))
	}
	if rc != sqlite3.SQLITE_OK {
		at := sqlite3.Xsqlite3_error_offset(c.tls, c.db)
		if p != 0 {
			sqlite3.Xsqlite3_finalize(c.tls, p)
		}
		err := c.errorFor(rc)
		if e, ok := err.(*Error); ok && at >= 0 {
			e.InputOffset = int(at) + 1
		}
		return nil, off, err
	}
	if p == 0 {
		return nil, end, nil
	}
	s := &Stmt{c: c, p: p, sql: stmtText(b.s[off:end])}
	if c.stmts == nil {
		c.stmts = make(map[*Stmt]struct{})
	}
	c.stmts[s] = struct{}{}
	return s, end, nil
}

// Exec runs every statement in sql, stepping each to completion (rows are
// discarded). args are bound as by BindAll and are allowed only when sql
// holds exactly one statement. It stops at the first error.
func (c *Conn) Exec(sql string, args ...any) error {
	if c.db == 0 {
		return errDone
	}
	b, err := newCText(c.tls, sql)
	if err != nil {
		return err
	}
	defer b.free(c.tls)
	for off := 0; off < len(sql); {
		s, next, err := c.prepare(b, off)
		if err != nil {
			return err
		}
		if s == nil {
			if next <= off {
				break
			}
			off = next
			continue
		}
		if len(args) > 0 && !blank(sql[next:]) {
			s.Close()
			return errors.New("sqlitex: Exec with arguments needs exactly one statement")
		}
		err = s.exec(args)
		s.Close()
		if err != nil {
			return err
		}
		if len(args) > 0 {
			return nil
		}
		off = next
	}
	if len(args) > 0 {
		return errors.New("sqlitex: Exec with arguments needs a statement")
	}
	return nil
}

// exec binds args and steps s to completion.
func (s *Stmt) exec(args []any) error {
	if err := s.BindAll(args...); err != nil {
		return err
	}
	for {
		row, err := s.Step()
		if err != nil || !row {
			return err
		}
	}
}

// Query runs the one statement in sql with args bound as by BindAll and
// returns all its rows (nil if none), each value as Stmt.Column returns it.
func (c *Conn) Query(sql string, args ...any) ([][]any, error) {
	s, tail, err := c.Prepare(sql)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errors.New("sqlitex: Query needs a statement")
	}
	defer s.Close()
	if !blank(tail) {
		return nil, errors.New("sqlitex: Query needs exactly one statement")
	}
	if err := s.BindAll(args...); err != nil {
		return nil, err
	}
	var rows [][]any
	n := s.ColumnCount()
	for {
		row, err := s.Step()
		if err != nil {
			return nil, err
		}
		if !row {
			return rows, nil
		}
		r := make([]any, n)
		for i := range r {
			r[i] = s.Column(i)
		}
		rows = append(rows, r)
	}
}

// errorFor makes the error for result code rc. sqlite3_errmsg describes rc
// only if the connection's last error is rc; otherwise (e.g. SQLITE_MISUSE
// detected before the connection was touched) the generic text is used.
func (c *Conn) errorFor(rc int32) error {
	code, msg := rc, ""
	if c.db != 0 {
		if ext := sqlite3.Xsqlite3_extended_errcode(c.tls, c.db); ext&0xff == rc&0xff {
			code, msg = ext, libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db))
		}
	}
	if msg == "" {
		msg = libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, rc))
	}
	return &Error{Code: int(code), Msg: msg}
}
