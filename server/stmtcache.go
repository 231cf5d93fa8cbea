package server

import (
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/wire/hrana"
)

// The statement cache of one request. A push batch repeats a few SQL
// texts (a guard and an insert per change) thousands of times, and
// compiling each again cost about two thirds of executing the batch
// (go run ./bench -only push -profile). An executor keeps the statements
// it ran prepared, by their SQL text, for the rest of its request only:
//
//   - Nothing outlives the request, so nothing reaches another request,
//     stream, client or database: the cache is the executor's, and its
//     statements are finalized when the request's connection is given
//     back (closeStmts, and sqlitex.Raw finalizes what is left).
//   - The sandbox authorizes a statement when SQLite compiles it (and
//     recompiles it). Its decisions depend on the SQL text, the schema and
//     whether a READONLY transaction is open; the cache is not used in one,
//     so a statement compiled outside it is never run inside it.
//   - SQLite recompiles a statement whose schema changed when it is
//     stepped, but the column names and count the executor reads before
//     stepping a write would be the old ones (a read's come after its
//     first step, see runStmt). So the cache is emptied after every
//     statement that may change the schema: anything but the statements
//     cacheable lists (DDL, PRAGMA, ROLLBACK, sequences, ...), and after
//     every statement during which the transaction open when it began
//     ended, unless it is a COMMIT, END or RELEASE that succeeded: a
//     failing statement can roll the transaction back, and its schema
//     changes with it (INSERT OR ROLLBACK, a trigger's RAISE(ROLLBACK),
//     SQLITE_FULL, a COMMIT that fails so), where a commit keeps the
//     schema the cached statements were compiled with (any DDL before it
//     emptied the cache). Within a request only this connection writes the
//     database.
//   - It is bounded: stmtCacheSize statements of at most stmtCacheMaxSQL
//     bytes of text each; longer ones are compiled each time, as before.
const (
	stmtCacheSize   = 64
	stmtCacheMaxSQL = 4096
)

// compiles counts the statements executors compiled (prepare), for tests
// of the cache.
var compiles atomic.Int64

// stmtCache maps SQL text to a prepared statement of the executor's
// connection. The zero value (nil lru) is empty.
type stmtCache struct {
	lru *simplelru.LRU[string, *sqlitex.Stmt]
}

// get returns the cached statement for sql, if any.
func (c *stmtCache) get(sql string) (*sqlitex.Stmt, bool) {
	if c.lru == nil {
		return nil, false
	}
	return c.lru.Get(sql)
}

// put keeps st for sql, finalizing the least recently used statement if
// the cache is full.
func (c *stmtCache) put(sql string, st *sqlitex.Stmt) {
	if c.lru == nil {
		c.lru, _ = simplelru.NewLRU(stmtCacheSize, func(_ string, st *sqlitex.Stmt) { st.Close() })
	}
	c.lru.Add(sql, st)
}

// purge finalizes every cached statement.
func (c *stmtCache) purge() {
	if c.lru != nil {
		c.lru.Purge()
	}
}

// cacheable reports whether a statement whose first keyword is k may be
// kept prepared: it cannot change the schema (triggers cannot run DDL, and
// the defensive flag keeps sqlite_schema from being written) nor undo a
// change of it (ROLLBACK can). Any other statement empties the cache once
// it has run.
func cacheable(k string) bool {
	switch k {
	case "SELECT", "VALUES", "WITH", "INSERT", "REPLACE", "UPDATE", "DELETE",
		"BEGIN", "COMMIT", "END", "SAVEPOINT", "RELEASE":
		return true
	}
	return false
}

// stmt returns sql compiled, from the cache if it is there, and done, to
// call once the statement has run, with ok true if it ran without an
// error: it keeps the statement for the next run of the same text (reset,
// its bindings cleared: a statement run with fewer arguments must see NULL
// for the rest, as a new one would) or finalizes it, and empties the cache
// after a statement that may have changed the schema.
func (ex *executor) stmt(sql string) (st *sqlitex.Stmt, done func(ok bool), herr *hrana.Error) {
	inTx := !ex.c.Autocommit()
	if ex.caching() {
		if st, ok := ex.stmts.get(sql); ok {
			ex.compiling(sql)
			return st, func(ok bool) { ex.keep(sql, st, inTx, ok) }, nil
		}
	}
	st, herr = ex.prepare(sql)
	if herr != nil {
		return nil, nil, herr
	}
	if !cacheable(sqlitex.FirstKeyword(sql)) {
		return st, func(bool) {
			st.Close()
			ex.stmts.purge()
		}, nil
	}
	if !ex.caching() || len(sql) > stmtCacheMaxSQL {
		// Compiled inside a READONLY transaction, the sandbox's stricter
		// rules: not for later use outside it.
		return st, func(ok bool) {
			st.Close()
			ex.txEnded(sql, inTx, ok)
		}, nil
	}
	return st, func(ok bool) { ex.keep(sql, st, inTx, ok) }, nil
}

// txEnded empties the cache if the transaction open when sql began (inTx)
// is not open any more, unless sql committed it (ok: it ran without an
// error): any other end may be a rollback, which undoes the transaction's
// schema changes. It reports whether it emptied the cache.
func (ex *executor) txEnded(sql string, inTx, ok bool) bool {
	if !inTx || !ex.c.Autocommit() {
		return false
	}
	if ok {
		switch sqlitex.FirstKeyword(sql) {
		case "COMMIT", "END", "RELEASE":
			return false
		}
	}
	ex.stmts.purge()
	return true
}

// caching reports whether statements may be taken from and kept in the
// cache now: not inside a READONLY transaction.
func (ex *executor) caching() bool { return ex.sb == nil || !ex.sb.readOnlyTx }

// keep resets st and keeps it as sql's statement, or finalizes it if it
// cannot be reset, a READONLY transaction began (st may have begun it) or
// the transaction open when it began (inTx) ended other than by st
// committing it (txEnded; ok: st ran without an error).
func (ex *executor) keep(sql string, st *sqlitex.Stmt, inTx, ok bool) {
	if ex.txEnded(sql, inTx, ok) {
		st.Close() // if it was cached, the purge finalized it already
		return
	}
	if !ex.caching() || st.Reset() != nil || st.ClearBindings() != nil {
		if cached, ok := ex.stmts.get(sql); ok && cached == st {
			ex.stmts.lru.Remove(sql)
		}
		st.Close()
		return
	}
	ex.stmts.put(sql, st)
}

// closeStmts finalizes the request's cached statements.
func (ex *executor) closeStmts() { ex.stmts.purge() }
