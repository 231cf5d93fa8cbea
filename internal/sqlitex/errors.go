package sqlitex

import (
	sqlite3 "modernc.org/sqlite/lib"
)

// Error is a failure reported by SQLite.
type Error struct {
	Code int    // extended result code, e.g. 2067 for SQLITE_CONSTRAINT_UNIQUE
	Msg  string // sqlite3_errmsg text, e.g. "UNIQUE constraint failed: t.a"
	// InputOffset is 1 + the byte offset in the statement's text that a
	// Prepare error points at (sqlite3_error_offset), or 0 if it points
	// nowhere.
	InputOffset int
}

func (e *Error) Error() string { return "sqlite: " + e.Msg + " (" + e.CodeName() + ")" }

// CodeName returns the C name of e.Code, e.g. "SQLITE_CONSTRAINT_UNIQUE". An
// extended code this package does not know gives its primary code's name.
func (e *Error) CodeName() string {
	if s, ok := codeNames[e.Code]; ok {
		return s
	}
	if s, ok := codeNames[e.Code&0xff]; ok {
		return s
	}
	return "SQLITE_UNKNOWN"
}

// Is makes errors.Is match an *Error with the same code and, when target's
// code is a primary one, any extended code of it: errors.Is(err, ErrBusy)
// holds for SQLITE_BUSY_SNAPSHOT too.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && (t.Code == e.Code || t.Code == e.Code&0xff)
}

// Sentinels for errors.Is; each matches its primary code and all extended
// codes of it.
var (
	ErrBusy        = &Error{Code: sqlite3.SQLITE_BUSY, Msg: "database is locked"}
	ErrLocked      = &Error{Code: sqlite3.SQLITE_LOCKED, Msg: "database table is locked"}
	ErrInterrupted = &Error{Code: sqlite3.SQLITE_INTERRUPT, Msg: "interrupted"}
	ErrConstraint  = &Error{Code: sqlite3.SQLITE_CONSTRAINT, Msg: "constraint failed"}
	ErrReadOnly    = &Error{Code: sqlite3.SQLITE_READONLY, Msg: "attempt to write a readonly database"}
	ErrCorrupt     = &Error{Code: sqlite3.SQLITE_CORRUPT, Msg: "database disk image is malformed"}
	ErrFull        = &Error{Code: sqlite3.SQLITE_FULL, Msg: "database or disk is full"}
)

// codeNames holds the result codes of SQLite 3.54, primary then extended.
var codeNames = map[int]string{
	sqlite3.SQLITE_OK:                      "SQLITE_OK",
	sqlite3.SQLITE_ERROR:                   "SQLITE_ERROR",
	sqlite3.SQLITE_INTERNAL:                "SQLITE_INTERNAL",
	sqlite3.SQLITE_PERM:                    "SQLITE_PERM",
	sqlite3.SQLITE_ABORT:                   "SQLITE_ABORT",
	sqlite3.SQLITE_BUSY:                    "SQLITE_BUSY",
	sqlite3.SQLITE_LOCKED:                  "SQLITE_LOCKED",
	sqlite3.SQLITE_NOMEM:                   "SQLITE_NOMEM",
	sqlite3.SQLITE_READONLY:                "SQLITE_READONLY",
	sqlite3.SQLITE_INTERRUPT:               "SQLITE_INTERRUPT",
	sqlite3.SQLITE_IOERR:                   "SQLITE_IOERR",
	sqlite3.SQLITE_CORRUPT:                 "SQLITE_CORRUPT",
	sqlite3.SQLITE_NOTFOUND:                "SQLITE_NOTFOUND",
	sqlite3.SQLITE_FULL:                    "SQLITE_FULL",
	sqlite3.SQLITE_CANTOPEN:                "SQLITE_CANTOPEN",
	sqlite3.SQLITE_PROTOCOL:                "SQLITE_PROTOCOL",
	sqlite3.SQLITE_EMPTY:                   "SQLITE_EMPTY",
	sqlite3.SQLITE_SCHEMA:                  "SQLITE_SCHEMA",
	sqlite3.SQLITE_TOOBIG:                  "SQLITE_TOOBIG",
	sqlite3.SQLITE_CONSTRAINT:              "SQLITE_CONSTRAINT",
	sqlite3.SQLITE_MISMATCH:                "SQLITE_MISMATCH",
	sqlite3.SQLITE_MISUSE:                  "SQLITE_MISUSE",
	sqlite3.SQLITE_NOLFS:                   "SQLITE_NOLFS",
	sqlite3.SQLITE_AUTH:                    "SQLITE_AUTH",
	sqlite3.SQLITE_FORMAT:                  "SQLITE_FORMAT",
	sqlite3.SQLITE_RANGE:                   "SQLITE_RANGE",
	sqlite3.SQLITE_NOTADB:                  "SQLITE_NOTADB",
	sqlite3.SQLITE_NOTICE:                  "SQLITE_NOTICE",
	sqlite3.SQLITE_WARNING:                 "SQLITE_WARNING",
	sqlite3.SQLITE_ROW:                     "SQLITE_ROW",
	sqlite3.SQLITE_DONE:                    "SQLITE_DONE",
	sqlite3.SQLITE_OK_LOAD_PERMANENTLY:     "SQLITE_OK_LOAD_PERMANENTLY",
	sqlite3.SQLITE_OK_SYMLINK:              "SQLITE_OK_SYMLINK",
	sqlite3.SQLITE_ERROR_MISSING_COLLSEQ:   "SQLITE_ERROR_MISSING_COLLSEQ",
	sqlite3.SQLITE_ERROR_RETRY:             "SQLITE_ERROR_RETRY",
	sqlite3.SQLITE_ERROR_SNAPSHOT:          "SQLITE_ERROR_SNAPSHOT",
	sqlite3.SQLITE_ERROR_RESERVESIZE:       "SQLITE_ERROR_RESERVESIZE",
	sqlite3.SQLITE_ERROR_KEY:               "SQLITE_ERROR_KEY",
	sqlite3.SQLITE_ERROR_UNABLE:            "SQLITE_ERROR_UNABLE",
	sqlite3.SQLITE_ABORT_ROLLBACK:          "SQLITE_ABORT_ROLLBACK",
	sqlite3.SQLITE_BUSY_RECOVERY:           "SQLITE_BUSY_RECOVERY",
	sqlite3.SQLITE_BUSY_SNAPSHOT:           "SQLITE_BUSY_SNAPSHOT",
	sqlite3.SQLITE_BUSY_TIMEOUT:            "SQLITE_BUSY_TIMEOUT",
	sqlite3.SQLITE_LOCKED_SHAREDCACHE:      "SQLITE_LOCKED_SHAREDCACHE",
	sqlite3.SQLITE_LOCKED_VTAB:             "SQLITE_LOCKED_VTAB",
	sqlite3.SQLITE_READONLY_RECOVERY:       "SQLITE_READONLY_RECOVERY",
	sqlite3.SQLITE_READONLY_CANTLOCK:       "SQLITE_READONLY_CANTLOCK",
	sqlite3.SQLITE_READONLY_ROLLBACK:       "SQLITE_READONLY_ROLLBACK",
	sqlite3.SQLITE_READONLY_DBMOVED:        "SQLITE_READONLY_DBMOVED",
	sqlite3.SQLITE_READONLY_CANTINIT:       "SQLITE_READONLY_CANTINIT",
	sqlite3.SQLITE_READONLY_DIRECTORY:      "SQLITE_READONLY_DIRECTORY",
	sqlite3.SQLITE_IOERR_READ:              "SQLITE_IOERR_READ",
	sqlite3.SQLITE_IOERR_SHORT_READ:        "SQLITE_IOERR_SHORT_READ",
	sqlite3.SQLITE_IOERR_WRITE:             "SQLITE_IOERR_WRITE",
	sqlite3.SQLITE_IOERR_FSYNC:             "SQLITE_IOERR_FSYNC",
	sqlite3.SQLITE_IOERR_DIR_FSYNC:         "SQLITE_IOERR_DIR_FSYNC",
	sqlite3.SQLITE_IOERR_TRUNCATE:          "SQLITE_IOERR_TRUNCATE",
	sqlite3.SQLITE_IOERR_FSTAT:             "SQLITE_IOERR_FSTAT",
	sqlite3.SQLITE_IOERR_UNLOCK:            "SQLITE_IOERR_UNLOCK",
	sqlite3.SQLITE_IOERR_RDLOCK:            "SQLITE_IOERR_RDLOCK",
	sqlite3.SQLITE_IOERR_DELETE:            "SQLITE_IOERR_DELETE",
	sqlite3.SQLITE_IOERR_BLOCKED:           "SQLITE_IOERR_BLOCKED",
	sqlite3.SQLITE_IOERR_NOMEM:             "SQLITE_IOERR_NOMEM",
	sqlite3.SQLITE_IOERR_ACCESS:            "SQLITE_IOERR_ACCESS",
	sqlite3.SQLITE_IOERR_CHECKRESERVEDLOCK: "SQLITE_IOERR_CHECKRESERVEDLOCK",
	sqlite3.SQLITE_IOERR_LOCK:              "SQLITE_IOERR_LOCK",
	sqlite3.SQLITE_IOERR_CLOSE:             "SQLITE_IOERR_CLOSE",
	sqlite3.SQLITE_IOERR_DIR_CLOSE:         "SQLITE_IOERR_DIR_CLOSE",
	sqlite3.SQLITE_IOERR_SHMOPEN:           "SQLITE_IOERR_SHMOPEN",
	sqlite3.SQLITE_IOERR_SHMSIZE:           "SQLITE_IOERR_SHMSIZE",
	sqlite3.SQLITE_IOERR_SHMLOCK:           "SQLITE_IOERR_SHMLOCK",
	sqlite3.SQLITE_IOERR_SHMMAP:            "SQLITE_IOERR_SHMMAP",
	sqlite3.SQLITE_IOERR_SEEK:              "SQLITE_IOERR_SEEK",
	sqlite3.SQLITE_IOERR_DELETE_NOENT:      "SQLITE_IOERR_DELETE_NOENT",
	sqlite3.SQLITE_IOERR_MMAP:              "SQLITE_IOERR_MMAP",
	sqlite3.SQLITE_IOERR_GETTEMPPATH:       "SQLITE_IOERR_GETTEMPPATH",
	sqlite3.SQLITE_IOERR_CONVPATH:          "SQLITE_IOERR_CONVPATH",
	sqlite3.SQLITE_IOERR_VNODE:             "SQLITE_IOERR_VNODE",
	sqlite3.SQLITE_IOERR_AUTH:              "SQLITE_IOERR_AUTH",
	sqlite3.SQLITE_IOERR_BEGIN_ATOMIC:      "SQLITE_IOERR_BEGIN_ATOMIC",
	sqlite3.SQLITE_IOERR_COMMIT_ATOMIC:     "SQLITE_IOERR_COMMIT_ATOMIC",
	sqlite3.SQLITE_IOERR_ROLLBACK_ATOMIC:   "SQLITE_IOERR_ROLLBACK_ATOMIC",
	sqlite3.SQLITE_IOERR_DATA:              "SQLITE_IOERR_DATA",
	sqlite3.SQLITE_IOERR_CORRUPTFS:         "SQLITE_IOERR_CORRUPTFS",
	sqlite3.SQLITE_IOERR_IN_PAGE:           "SQLITE_IOERR_IN_PAGE",
	sqlite3.SQLITE_IOERR_BADKEY:            "SQLITE_IOERR_BADKEY",
	sqlite3.SQLITE_IOERR_CODEC:             "SQLITE_IOERR_CODEC",
	sqlite3.SQLITE_CORRUPT_VTAB:            "SQLITE_CORRUPT_VTAB",
	sqlite3.SQLITE_CORRUPT_SEQUENCE:        "SQLITE_CORRUPT_SEQUENCE",
	sqlite3.SQLITE_CORRUPT_INDEX:           "SQLITE_CORRUPT_INDEX",
	sqlite3.SQLITE_CANTOPEN_NOTEMPDIR:      "SQLITE_CANTOPEN_NOTEMPDIR",
	sqlite3.SQLITE_CANTOPEN_ISDIR:          "SQLITE_CANTOPEN_ISDIR",
	sqlite3.SQLITE_CANTOPEN_FULLPATH:       "SQLITE_CANTOPEN_FULLPATH",
	sqlite3.SQLITE_CANTOPEN_CONVPATH:       "SQLITE_CANTOPEN_CONVPATH",
	sqlite3.SQLITE_CANTOPEN_DIRTYWAL:       "SQLITE_CANTOPEN_DIRTYWAL",
	sqlite3.SQLITE_CANTOPEN_SYMLINK:        "SQLITE_CANTOPEN_SYMLINK",
	sqlite3.SQLITE_CONSTRAINT_CHECK:        "SQLITE_CONSTRAINT_CHECK",
	sqlite3.SQLITE_CONSTRAINT_COMMITHOOK:   "SQLITE_CONSTRAINT_COMMITHOOK",
	sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:   "SQLITE_CONSTRAINT_FOREIGNKEY",
	sqlite3.SQLITE_CONSTRAINT_FUNCTION:     "SQLITE_CONSTRAINT_FUNCTION",
	sqlite3.SQLITE_CONSTRAINT_NOTNULL:      "SQLITE_CONSTRAINT_NOTNULL",
	sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:   "SQLITE_CONSTRAINT_PRIMARYKEY",
	sqlite3.SQLITE_CONSTRAINT_TRIGGER:      "SQLITE_CONSTRAINT_TRIGGER",
	sqlite3.SQLITE_CONSTRAINT_UNIQUE:       "SQLITE_CONSTRAINT_UNIQUE",
	sqlite3.SQLITE_CONSTRAINT_VTAB:         "SQLITE_CONSTRAINT_VTAB",
	sqlite3.SQLITE_CONSTRAINT_ROWID:        "SQLITE_CONSTRAINT_ROWID",
	sqlite3.SQLITE_CONSTRAINT_PINNED:       "SQLITE_CONSTRAINT_PINNED",
	sqlite3.SQLITE_CONSTRAINT_DATATYPE:     "SQLITE_CONSTRAINT_DATATYPE",
	sqlite3.SQLITE_AUTH_USER:               "SQLITE_AUTH_USER",
	sqlite3.SQLITE_NOTICE_RECOVER_WAL:      "SQLITE_NOTICE_RECOVER_WAL",
	sqlite3.SQLITE_NOTICE_RECOVER_ROLLBACK: "SQLITE_NOTICE_RECOVER_ROLLBACK",
	sqlite3.SQLITE_NOTICE_RBU:              "SQLITE_NOTICE_RBU",
	sqlite3.SQLITE_WARNING_AUTOINDEX:       "SQLITE_WARNING_AUTOINDEX",
}
