package sqlitex

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// stmtCacheSize is how many statements a StmtCache keeps prepared. Parsing
// a statement costs about as much as running a small INSERT or a point
// lookup, and applications repeat a few statements many times.
const stmtCacheSize = 64

// Preparer is a *sql.DB (statements are then prepared on each pooled
// connection as it needs them) or a *sql.Conn.
type Preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// StmtCache keeps statements prepared, by SQL text. SQLite re-prepares a
// statement by itself when the schema changes under it, so an entry never
// goes stale. It is safe for concurrent use: a statement evicted while a
// caller still runs it is closed when that caller is done with it.
type StmtCache struct {
	p     Preparer
	cache *lru.Cache[string, *cachedStmt]
}

type cachedStmt struct {
	st      *sql.Stmt
	mu      sync.Mutex
	users   int
	evicted bool
}

// acquire takes a use of e, unless it was evicted.
func (e *cachedStmt) acquire() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.evicted {
		return false
	}
	e.users++
	return true
}

func (e *cachedStmt) release() { e.end(false) }
func (e *cachedStmt) evict()   { e.end(true) }

// end releases a use or marks e evicted, and closes the statement once it
// is both evicted and unused. Closing it while rows from it are open is
// safe: database/sql closes it once they are.
func (e *cachedStmt) end(evict bool) {
	e.mu.Lock()
	if evict {
		e.evicted = true
	} else {
		e.users--
	}
	done := e.evicted && e.users == 0
	e.mu.Unlock()
	if done {
		e.st.Close()
	}
}

func NewStmtCache(p Preparer) *StmtCache {
	c, _ := lru.NewWithEvict(stmtCacheSize, func(_ string, e *cachedStmt) { e.evict() })
	return &StmtCache{p: p, cache: c}
}

// Stmt returns query prepared, and release, to call once the statement
// has been run (rows it returned may stay open).
func (c *StmtCache) Stmt(ctx context.Context, query string) (st *sql.Stmt, release func(), err error) {
	e, err := c.stmt(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	return e.st, e.release, nil
}

func (c *StmtCache) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if e, ok := c.cache.Get(query); ok && e.acquire() {
		return e, nil
	}
	st, err := c.p.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	e := &cachedStmt{st: st, users: 1}
	if prev, ok, _ := c.cache.PeekOrAdd(query, e); ok {
		if prev.acquire() { // another caller prepared it meanwhile
			st.Close()
			return prev, nil
		}
		// prev is on its way out: use ours once, uncached.
		e.evicted = true
	}
	return e, nil
}

// Exec runs query, prepared once.
func (c *StmtCache) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	e, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	defer e.release()
	return e.st.ExecContext(ctx, args...)
}

// Close closes every statement not in use, and the others once they are
// done.
func (c *StmtCache) Close() { c.cache.Purge() }

// FirstKeyword returns the upper-cased first word of a statement, after
// leading white space and comments ("" if it starts with anything else).
func FirstKeyword(stmt string) string {
	stmt = stmt[skipBlankNoSemicolon(stmt):] // SQLite's whitespace, " \v" included
	end := strings.IndexFunc(stmt, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
	})
	if end < 0 {
		end = len(stmt)
	}
	return strings.ToUpper(stmt[:end])
}
