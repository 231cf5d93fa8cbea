package sqlitex

import (
	"errors"
	"reflect"
	"sync"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// AuthResult is an authorizer's answer (SQLITE_OK, SQLITE_DENY or
// SQLITE_IGNORE).
type AuthResult int32

const (
	AuthOK     AuthResult = sqlite3.SQLITE_OK
	AuthDeny   AuthResult = sqlite3.SQLITE_DENY   // the statement fails to compile with SQLITE_AUTH
	AuthIgnore AuthResult = sqlite3.SQLITE_IGNORE // a read gives NULL, a DML on a table does nothing
)

// Action is one operation SQLite asks an authorizer about while it
// compiles a statement (https://www.sqlite.org/c3ref/c_alter_table.html
// lists what Arg1 and Arg2 hold for each Code).
type Action struct {
	Code       int    // sqlite3.SQLITE_CREATE_INDEX ... sqlite3.SQLITE_RECURSIVE
	Arg1, Arg2 string // "" also for NULL
	HasArg2    bool   // Arg2 is not NULL: e.g. a PRAGMA with a value
	DB         string // "main", "temp", an attached name, or ""
	Inner      string // the innermost trigger or view the access comes from, or ""
}

// Authorizer decides each Action. It runs inside sqlite3_prepare (and
// re-preparations) on the goroutine that compiles; it must not use the
// connection. A panic in it denies the action.
type Authorizer func(Action) AuthResult

// WALHook is called after every transaction that commits on the connection
// to a WAL database, with the database name and the number of frames in
// the WAL. It runs inside the statement that committed; it must not use
// the connection.
type WALHook func(db string, frames int)

// hooks holds the Go side of the callbacks installed with SetAuthorizer and
// SetWALHook, by sqlite3* handle. Entries are removed when the callback is
// removed; a connection must remove its callbacks before it is closed.
var hooks = struct {
	sync.RWMutex
	auth map[uintptr]Authorizer
	wal  map[uintptr]WALHook
}{auth: map[uintptr]Authorizer{}, wal: map[uintptr]WALHook{}}

// register records fn (nil: removes it) for the handle db and returns the
// C callback to install: trampoline, or 0 to remove it.
func register[F any](m map[uintptr]F, db uintptr, fn F, trampoline uintptr) uintptr {
	hooks.Lock()
	defer hooks.Unlock()
	if reflect.ValueOf(fn).IsNil() {
		delete(m, db)
		return 0
	}
	m[db] = fn
	return trampoline
}

// SetAuthorizer installs fn as the connection's authorizer
// (sqlite3_set_authorizer), replacing any other, or removes it (fn nil).
// The setting outlives Raw: it stays on the connection until it is
// replaced or removed, which must happen before the connection is closed.
// Prepared statements expire and are authorized again on their next use.
func (c *Conn) SetAuthorizer(fn Authorizer) error {
	if c.db == 0 {
		return errDone
	}
	cb := register(hooks.auth, c.db, fn, authorizerPtr)
	if rc := sqlite3.Xsqlite3_set_authorizer(c.tls, c.db, cb, c.db); rc != sqlite3.SQLITE_OK {
		return c.errorFor(rc)
	}
	return nil
}

var authorizerPtr = cFunc(authorizerTrampoline)

// authorizerTrampoline is the C callback; db is the handle, passed as the
// callback's argument. Without a Go authorizer it denies (fail closed).
func authorizerTrampoline(_ *libc.TLS, db uintptr, code int32, z1, z2, zDB, zInner uintptr) (res int32) {
	hooks.RLock()
	fn := hooks.auth[db]
	hooks.RUnlock()
	if fn == nil {
		return sqlite3.SQLITE_DENY
	}
	defer func() {
		if recover() != nil {
			res = sqlite3.SQLITE_DENY
		}
	}()
	return int32(fn(Action{
		Code: int(code), Arg1: goString(z1), Arg2: goString(z2), HasArg2: z2 != 0,
		DB: goString(zDB), Inner: goString(zInner),
	}))
}

func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	return libc.GoString(p)
}

// SetWALHook installs fn as the connection's WAL hook (sqlite3_wal_hook),
// or removes it (fn nil). Like SetAuthorizer it outlives Raw and must be
// removed before the connection is closed. It replaces SQLite's automatic
// checkpointing (wal_autocheckpoint), which uses the same hook.
func (c *Conn) SetWALHook(fn WALHook) error {
	if c.db == 0 {
		return errDone
	}
	cb := register(hooks.wal, c.db, fn, walHookPtr)
	sqlite3.Xsqlite3_wal_hook(c.tls, c.db, cb, c.db)
	return nil
}

var walHookPtr = cFunc(walHookTrampoline)

func walHookTrampoline(_ *libc.TLS, db, _ uintptr, zDB uintptr, frames int32) int32 {
	hooks.RLock()
	fn := hooks.wal[db]
	hooks.RUnlock()
	if fn != nil {
		// The commit has happened whatever fn does: a panic must not turn
		// it into an error of the statement.
		func() {
			defer func() { recover() }()
			fn(goString(zDB), int(frames))
		}()
	}
	return sqlite3.SQLITE_OK
}

// SetLimit sets a run-time limit (sqlite3_limit, e.g.
// sqlite3.SQLITE_LIMIT_ATTACHED) and returns its previous value. SQLite
// caps v at the limit's compile-time maximum; a negative v only reads it.
func (c *Conn) SetLimit(id int32, v int) int {
	return int(sqlite3.Xsqlite3_limit(c.tls, c.handle(), id, int32(min(v, 1<<31-1))))
}

// SetLastInsertRowid sets what last_insert_rowid() returns
// (sqlite3_set_last_insert_rowid).
func (c *Conn) SetLastInsertRowid(v int64) {
	sqlite3.Xsqlite3_set_last_insert_rowid(c.tls, c.handle(), v)
}

// SetTrustedSchema sets SQLITE_DBCONFIG_TRUSTED_SCHEMA: when off, views and
// triggers may only use functions and virtual tables marked innocuous.
func (c *Conn) SetTrustedSchema(on bool) error {
	return c.dbConfig(sqlite3.SQLITE_DBCONFIG_TRUSTED_SCHEMA, on)
}

// ErrHeapLimit reports a heap limit set too late: SQLite was already in use
// in this process.
var ErrHeapLimit = errors.New("sqlitex: the SQLite heap limit must be set before SQLite is first used in the process")

// LimitHeap makes SQLite refuse allocations (SQLITE_NOMEM) once it holds n
// bytes, over every connection of the process (sqlite3_hard_heap_limit64).
// The limit needs SQLite's memory statistics, which this build leaves off
// and which can only be switched on before SQLite initializes: call it
// before the process opens any database, or it fails with ErrHeapLimit.
func LimitHeap(n int64) error {
	tls := libc.NewTLS()
	defer tls.Close()
	va := libc.Xmalloc(tls, 8)
	if va == 0 {
		return errors.New("sqlitex: out of memory")
	}
	defer libc.Xfree(tls, va)
	if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_MEMSTATUS, libc.VaList(va, int32(1))); rc != sqlite3.SQLITE_OK {
		return ErrHeapLimit
	}
	sqlite3.Xsqlite3_hard_heap_limit64(tls, n)
	return nil
}

// HeapUsed returns the bytes SQLite holds now and at most since the last
// call (sqlite3_memory_used, sqlite3_memory_highwater with reset); both are
// 0 unless LimitHeap switched the statistics on.
func HeapUsed() (now, peak int64) {
	tls := libc.NewTLS()
	defer tls.Close()
	return sqlite3.Xsqlite3_memory_used(tls), sqlite3.Xsqlite3_memory_highwater(tls, 1)
}
