package dbactor

import (
	"context"
	"database/sql"

	"github.com/syncdb/syncdb/internal/sqlitex"
)

// ownConn is the writer connection for syncdb's own statements, each kept
// prepared by its SQL text (a.own): a push+pull cycle runs a few dozen of
// them (status and conflict reads, the change log, _syncdb_local records),
// and parsing them again each time was about a tenth of the Go load
// clients' CPU (bench/RESULTS.md §6). Only single statements may go
// through it (a prepared statement runs the first one only); SQLite
// prepares a statement again by itself when the schema changes under it.
// A statement that fails to prepare is run uncached, for the same error.
type ownConn struct {
	conn  *sql.Conn
	cache *sqlitex.StmtCache
}

// own returns the writer connection with the statement cache of syncdb's
// own statements (see ownConn); a.conn must be open.
func (a *dbActor) own() ownConn { return ownConn{a.conn, a.ostmts} }

func (c ownConn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, release, err := c.cache.Stmt(ctx, query)
	if err != nil {
		return c.conn.QueryRowContext(ctx, query, args...)
	}
	defer release()
	return st.QueryRowContext(ctx, args...)
}

func (c ownConn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, release, err := c.cache.Stmt(ctx, query)
	if err != nil {
		return c.conn.QueryContext(ctx, query, args...)
	}
	defer release()
	return st.QueryContext(ctx, args...)
}

func (c ownConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, release, err := c.cache.Stmt(ctx, query)
	if err != nil {
		return c.conn.ExecContext(ctx, query, args...)
	}
	defer release()
	return st.ExecContext(ctx, args...)
}
