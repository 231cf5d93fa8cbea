package dbactor

import (
	"context"
	"database/sql"

	lru "github.com/hashicorp/golang-lru/v2"
)

// stmtCacheSize is how many of the user's statements stay prepared on the
// writer connection. Parsing a statement costs about as much as running a
// small INSERT, and applications repeat a few statements many times.
const stmtCacheSize = 64

// stmtCache keeps the user's DML statements prepared on one connection, by
// SQL text. SQLite re-prepares a statement by itself when the schema
// changes under it (a DDL or a pull), so an entry never goes stale.
type stmtCache struct {
	conn  *sql.Conn
	cache *lru.Cache[string, *sql.Stmt]
}

func newStmtCache(conn *sql.Conn) *stmtCache {
	c, _ := lru.NewWithEvict(stmtCacheSize, func(_ string, st *sql.Stmt) { st.Close() })
	return &stmtCache{conn: conn, cache: c}
}

// exec runs query on the connection, prepared once.
func (c *stmtCache) exec(ctx context.Context, query string, args []any) (sql.Result, error) {
	st, ok := c.cache.Get(query)
	if !ok {
		var err error
		if st, err = c.conn.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		c.cache.Add(query, st)
	}
	return st.ExecContext(ctx, args...)
}

// close finalizes every statement; the connection stays open.
func (c *stmtCache) close() { c.cache.Purge() }

// cacheable reports statements worth keeping prepared: DML, whose plans do
// not depend on anything the statement itself changes.
func cacheable(keyword string) bool {
	switch keyword {
	case "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH":
		return true
	}
	return false
}
