package sqlitex

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Stmt is a prepared statement (sqlite3_stmt*). Like its Conn it is valid
// only inside Raw and on fn's goroutine. Column and parameter indexes follow
// SQLite: parameters are 1-based, columns 0-based.
type Stmt struct {
	c   *Conn
	p   uintptr // sqlite3_stmt*, 0 once finalized
	sql string

	// failed records that the last Step returned an error. sqlite3_reset and
	// sqlite3_finalize report that error again; Reset and Close do not.
	failed bool
}

var errClosed = errors.New("sqlitex: statement is closed")

// timeFormat is what modernc writes for a time.Time by default (no
// _time_format in the DSN): Time.String without the monotonic clock reading.
const timeFormat = "2006-01-02 15:04:05.999999999 -0700 MST"

// SQL returns the text of this one statement, from its first token to its
// ';' (or, for a last statement without one, the end of the text, trailing
// whitespace trimmed). Whitespace, comments and empty statements before it
// are not included.
func (s *Stmt) SQL() string { return s.sql }

// Readonly reports sqlite3_stmt_readonly: true if the statement makes no
// direct change to the database file.
func (s *Stmt) Readonly() bool {
	return s.p != 0 && sqlite3.Xsqlite3_stmt_readonly(s.c.tls, s.p) != 0
}

// ParamCount returns the largest parameter index (sqlite3_bind_parameter_count).
func (s *Stmt) ParamCount() int {
	if s.p == 0 {
		return 0
	}
	return int(sqlite3.Xsqlite3_bind_parameter_count(s.c.tls, s.p))
}

// ParamName returns the name of parameter i (1-based) with its prefix, e.g.
// ":a", "@a", "$a" or "?3"; "" for a positional "?" or an unused index.
func (s *Stmt) ParamName(i int) string {
	if s.p == 0 {
		return ""
	}
	return libc.GoString(sqlite3.Xsqlite3_bind_parameter_name(s.c.tls, s.p, int32(i)))
}

// ParamIndex returns the index of the named parameter, 0 if there is none.
// name may carry the prefix the SQL used (":a", "@a", "$a", "?3") or not
// ("a", "3"); without one, the prefixes are tried in that order.
func (s *Stmt) ParamIndex(name string) int {
	if s.p == 0 || name == "" {
		return 0
	}
	switch name[0] {
	case ':', '@', '$', '?':
		return s.paramIndex(name)
	}
	for _, prefix := range []string{":", "@", "$", "?"} {
		if i := s.paramIndex(prefix + name); i != 0 {
			return i
		}
	}
	return 0
}

func (s *Stmt) paramIndex(name string) int {
	z, err := libc.CString(name)
	if err != nil {
		return 0
	}
	defer libc.Xfree(s.c.tls, z)
	return int(sqlite3.Xsqlite3_bind_parameter_index(s.c.tls, s.p, z))
}

// Bind binds v to parameter i (1-based). v may be nil (NULL); int64 or any
// other Go integer type whose value fits in an int64; float64 or float32;
// bool (1 or 0); string (TEXT); []byte (BLOB; a nil []byte binds an empty
// blob, not NULL); time.Time (TEXT, formatted as modernc does by default,
// "2006-01-02 15:04:05.999999999 -0700 MST"). Anything else is an error.
func (s *Stmt) Bind(i int, v any) error {
	if s.p == 0 {
		return errClosed
	}
	tls, p, idx := s.c.tls, s.p, int32(i)
	var rc int32
	switch x := v.(type) {
	case nil:
		rc = sqlite3.Xsqlite3_bind_null(tls, p, idx)
	case int64:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, x)
	case int:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case int8:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case int16:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case int32:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case uint8:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case uint16:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case uint32:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(x))
	case uint:
		return s.bindUint(idx, uint64(x))
	case uint64:
		return s.bindUint(idx, x)
	case float64:
		rc = sqlite3.Xsqlite3_bind_double(tls, p, idx, x)
	case float32:
		rc = sqlite3.Xsqlite3_bind_double(tls, p, idx, float64(x))
	case bool:
		rc = sqlite3.Xsqlite3_bind_int64(tls, p, idx, int64(libc.Bool32(x)))
	case string:
		return bindData(s, idx, x, true)
	case []byte:
		return bindData(s, idx, x, false)
	case time.Time:
		return bindData(s, idx, x.Format(timeFormat), true)
	default:
		return fmt.Errorf("sqlitex: cannot bind a value of type %T to parameter %d", v, i)
	}
	if rc != sqlite3.SQLITE_OK {
		return s.c.errorFor(rc)
	}
	return nil
}

func (s *Stmt) bindUint(idx int32, x uint64) error {
	if x > math.MaxInt64 {
		return fmt.Errorf("sqlitex: parameter %d: %d overflows int64", idx, x)
	}
	if rc := sqlite3.Xsqlite3_bind_int64(s.c.tls, s.p, idx, int64(x)); rc != sqlite3.SQLITE_OK {
		return s.c.errorFor(rc)
	}
	return nil
}

// bindData binds v as TEXT or BLOB. v is copied into C memory first (the
// transpiled C must not see Go memory) and bound with SQLITE_TRANSIENT, so
// SQLite makes its own copy and the buffer is freed at once. The buffer has
// room for a NUL so that it is never a null pointer even for "":
// sqlite3_bind_text with a null pointer would bind NULL.
func bindData[T ~string | ~[]byte](s *Stmt, idx int32, v T, text bool) error {
	tls, n := s.c.tls, len(v)
	if !text && n == 0 {
		if rc := sqlite3.Xsqlite3_bind_zeroblob(tls, s.p, idx, 0); rc != sqlite3.SQLITE_OK {
			return s.c.errorFor(rc)
		}
		return nil
	}
	buf := libc.Xmalloc(tls, libc.Tsize_t(n+1))
	if buf == 0 {
		return fmt.Errorf("sqlitex: cannot allocate %d bytes", n+1)
	}
	defer libc.Xfree(tls, buf)
	copy(cbytes(buf, n), v)
	*cptr[byte](buf + uintptr(n)) = 0
	var rc int32
	if text {
		rc = sqlite3.Xsqlite3_bind_text64(tls, s.p, idx, buf, uint64(n), sqlite3.SQLITE_TRANSIENT, sqlite3.SQLITE_UTF8)
	} else {
		rc = sqlite3.Xsqlite3_bind_blob64(tls, s.p, idx, buf, uint64(n), sqlite3.SQLITE_TRANSIENT)
	}
	if rc != sqlite3.SQLITE_OK {
		return s.c.errorFor(rc)
	}
	return nil
}

// BindAll binds args to parameters 1..len(args). It is an error if
// len(args) differs from ParamCount.
func (s *Stmt) BindAll(args ...any) error {
	if n := s.ParamCount(); len(args) != n {
		return fmt.Errorf("sqlitex: statement has %d parameters, got %d arguments", n, len(args))
	}
	for i, v := range args {
		if err := s.Bind(i+1, v); err != nil {
			return err
		}
	}
	return nil
}

// Step runs the statement to its next row: row is true if a row is
// available for Column, false when the statement is done. On error the
// statement can be Reset and run again.
func (s *Stmt) Step() (row bool, err error) {
	if s.p == 0 {
		return false, errClosed
	}
	if c := s.c.canceled; c != 0 && atomic.LoadInt32(cptr[int32](c)) != 0 {
		// A context of WithContext is done: fail without starting, even if
		// the statement would finish before the progress handler runs.
		return false, &Error{Code: sqlite3.SQLITE_INTERRUPT, Msg: "interrupted"}
	}
	switch rc := sqlite3.Xsqlite3_step(s.c.tls, s.p); rc {
	case sqlite3.SQLITE_ROW:
		s.failed = false
		return true, nil
	case sqlite3.SQLITE_DONE:
		s.failed = false
		return false, nil
	default:
		s.failed = true
		return false, s.c.errorFor(rc)
	}
}

// ColumnCount returns the number of result columns (0 for statements that
// return no data).
func (s *Stmt) ColumnCount() int {
	if s.p == 0 {
		return 0
	}
	return int(sqlite3.Xsqlite3_column_count(s.c.tls, s.p))
}

// ColumnName returns the name of result column i.
func (s *Stmt) ColumnName(i int) string {
	if s.p == 0 {
		return ""
	}
	return libc.GoString(sqlite3.Xsqlite3_column_name(s.c.tls, s.p, int32(i)))
}

// ColumnDecltype returns the declared type of result column i as written in
// the table definition, "" for an expression or a column without one.
func (s *Stmt) ColumnDecltype(i int) string {
	if s.p == 0 {
		return ""
	}
	return libc.GoString(sqlite3.Xsqlite3_column_decltype(s.c.tls, s.p, int32(i)))
}

// ColumnSize returns the size in bytes of value i of the current row
// without copying it: the length of a TEXT or BLOB (sqlite3_column_bytes;
// a zeroblob is not materialized), 8 for a number, 0 for NULL. It does not
// convert the value, so Column still sees its storage class.
func (s *Stmt) ColumnSize(i int) int {
	if s.p == 0 {
		return 0
	}
	switch sqlite3.Xsqlite3_column_type(s.c.tls, s.p, int32(i)) {
	case sqlite3.SQLITE_TEXT, sqlite3.SQLITE_BLOB:
		return int(sqlite3.Xsqlite3_column_bytes(s.c.tls, s.p, int32(i)))
	case sqlite3.SQLITE_NULL:
		return 0
	}
	return 8
}

// Column returns value i of the current row exactly as its storage class:
// int64 (INTEGER), float64 (REAL), string (TEXT), []byte (BLOB, a copy; an
// empty blob is []byte{}, not nil) or nil (NULL). The declared type of the
// column plays no part: a DATETIME column holding TEXT gives a string.
func (s *Stmt) Column(i int) any {
	if s.p == 0 {
		return nil
	}
	tls, p, idx := s.c.tls, s.p, int32(i)
	switch sqlite3.Xsqlite3_column_type(tls, p, idx) {
	case sqlite3.SQLITE_INTEGER:
		return sqlite3.Xsqlite3_column_int64(tls, p, idx)
	case sqlite3.SQLITE_FLOAT:
		return sqlite3.Xsqlite3_column_double(tls, p, idx)
	case sqlite3.SQLITE_TEXT:
		// The pointer first, then the length, as the SQLite docs ask.
		z := sqlite3.Xsqlite3_column_text(tls, p, idx)
		n := int(sqlite3.Xsqlite3_column_bytes(tls, p, idx))
		if z == 0 || n == 0 {
			return ""
		}
		return string(cbytes(z, n))
	case sqlite3.SQLITE_BLOB:
		z := sqlite3.Xsqlite3_column_blob(tls, p, idx)
		n := int(sqlite3.Xsqlite3_column_bytes(tls, p, idx))
		b := make([]byte, n)
		if n > 0 {
			copy(b, cbytes(z, n))
		}
		return b
	default:
		return nil
	}
}

// Reset rewinds the statement so it can run again; bindings are kept. An
// error that the last Step already returned is not reported again.
func (s *Stmt) Reset() error {
	if s.p == 0 {
		return errClosed
	}
	rc := sqlite3.Xsqlite3_reset(s.c.tls, s.p)
	failed := s.failed
	s.failed = false
	if rc != sqlite3.SQLITE_OK && !failed {
		return s.c.errorFor(rc)
	}
	return nil
}

// ClearBindings sets every parameter to NULL.
func (s *Stmt) ClearBindings() error {
	if s.p == 0 {
		return errClosed
	}
	if rc := sqlite3.Xsqlite3_clear_bindings(s.c.tls, s.p); rc != sqlite3.SQLITE_OK {
		return s.c.errorFor(rc)
	}
	return nil
}

// Close finalizes the statement. It is idempotent. As with Reset, an error
// that the last Step already returned is not reported again.
func (s *Stmt) Close() error {
	if s.p == 0 {
		return nil
	}
	rc := sqlite3.Xsqlite3_finalize(s.c.tls, s.p)
	s.p = 0
	delete(s.c.stmts, s)
	if rc != sqlite3.SQLITE_OK && !s.failed {
		return s.c.errorFor(rc)
	}
	return nil
}
