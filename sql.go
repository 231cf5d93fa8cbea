package syncdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DriverName is the database/sql driver name syncdb registers:
// sql.Open(syncdb.DriverName, dsn). See the package documentation for the
// DSN.
const DriverName = "syncdb"

func init() { sql.Register(DriverName, sqlDriver{}) }

// SQL returns a standard *sql.DB over the replica, for code that wants one
// (generated query code, sqlx, migration tools). It is the same database
// as the DB's own methods, with the same rules: reads run on the read pool,
// statements that write go through the capturing writer, BeginTx opens a
// write transaction (or, with ReadOnly, a read transaction on the read
// pool), and every statement the DB refuses is refused with the same
// sentinel errors. The *sql.DB is closed by DB.Close; do not close it
// yourself.
//
// Like any single-writer database, a write outside an open write
// transaction waits until that transaction ends: do not write through the
// *sql.DB itself while holding a *sql.Tx on the same goroutine.
//
// An argument's driver.Valuer is called by syncdb's driver, on the
// caller's goroutine, before the statement reaches the writer or the read
// pool, so a panic or runtime.Goexit in Value leaves them working (in a
// write transaction, it ends the transaction, rolled back). The *sql.DB
// itself is the standard library's: database/sql (Go 1.26) holds locks of
// its own while it calls the driver and releases some of them without a
// deferred call, so after such a panic or Goexit in a query (QueryContext,
// QueryRowContext) or a prepared statement of the *sql.DB, the *sql.Tx or
// *sql.Conn it ran on may wait forever in Rollback or Close, as with any
// driver. DB.Exec, DB.Query, DB.QueryRow and the *Tx of DB.Tx call Value
// before any database/sql code, and have no such limit.
func (d *DB) SQL() *sql.DB {
	d.sqlOnce.Do(func() { d.sqldb = sql.OpenDB(dbConnector{d}) })
	return d.sqldb
}

// dbConnector hands database/sql connections over an open DB.
type dbConnector struct{ d *DB }

func (c dbConnector) Connect(context.Context) (driver.Conn, error) {
	if err := c.d.check(); err != nil {
		return nil, err
	}
	return &conn{d: c.d}, nil
}

func (c dbConnector) Driver() driver.Driver { return sqlDriver{} }

// sqlDriver is the registered driver: each sql.Open("syncdb", dsn) opens
// the replica the DSN names on its first connection and closes it with the
// *sql.DB.
type sqlDriver struct{}

var _ driver.DriverContext = sqlDriver{}

// Open is not used by database/sql, which calls OpenConnector: a replica
// must be opened once per *sql.DB, not once per connection.
func (sqlDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("open the driver with sql.Open(\"syncdb\", dsn)")
}

// OpenConnector parses dsn; the replica opens on the first connection.
func (sqlDriver) OpenConnector(dsn string) (driver.Connector, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return &dsnConnector{cfg: cfg}, nil
}

// dsnConnector opens its replica once and closes it when database/sql
// closes the *sql.DB.
type dsnConnector struct {
	cfg    Config
	mu     sync.Mutex
	db     *DB
	closed bool
}

func (c *dsnConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.db == nil {
		db, err := Open(ctx, c.cfg)
		if err != nil {
			return nil, err
		}
		c.db = db
	}
	return dbConnector{c.db}.Connect(ctx)
}

func (c *dsnConnector) Driver() driver.Driver { return sqlDriver{} }

// Close is called by sql.DB.Close.
func (c *dsnConnector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.db == nil {
		return nil
	}
	return c.db.Close()
}

// ParseDSN turns a data source name for sql.Open("syncdb", dsn) into a
// Config:
//
//	PATH[?PARAM=VALUE&...]      or      file:PATH[?PARAM=VALUE&...]
//
// PATH is the local database file (percent-escaped after "file:"). The
// parameters, all optional, are Config's fields:
//
//	url=URL                 Config.URL (percent-escape any &, + or # in it)
//	auth_token=T            Config.AuthToken
//	client_name=NAME        Config.ClientName
//	long_poll=DURATION      Config.LongPollTimeout (Go duration, e.g. 30s)
//	read_conns=N            Config.ReadConns
//	sync_normal=BOOL        Config.SyncNormal
//	ignore_tables=A,B       Config.IgnoreTables
//	live=BOOL               Config.Live = &LiveSync{}: follow the server
//	push_delay=DURATION     Config.Live.PushDelay (implies live)
//
// An unknown parameter is an error.
func ParseDSN(dsn string) (Config, error) {
	var cfg Config
	path, query, _ := strings.Cut(dsn, "?")
	if p, ok := strings.CutPrefix(path, "file:"); ok {
		up, err := url.PathUnescape(p)
		if err != nil {
			return cfg, fmt.Errorf("DSN %q: %w", dsn, err)
		}
		path = up
	}
	if path == "" {
		return cfg, fmt.Errorf("DSN %q has no path", dsn)
	}
	cfg.Path = path
	params, err := url.ParseQuery(query)
	if err != nil {
		return cfg, fmt.Errorf("DSN %q: %w", dsn, err)
	}
	for k, vs := range params {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "url":
			cfg.URL = v
		case "auth_token":
			cfg.AuthToken = v
		case "client_name":
			cfg.ClientName = v
		case "long_poll":
			cfg.LongPollTimeout, err = time.ParseDuration(v)
		case "read_conns":
			cfg.ReadConns, err = strconv.Atoi(v)
		case "sync_normal":
			cfg.SyncNormal, err = strconv.ParseBool(v)
		case "ignore_tables":
			cfg.IgnoreTables = strings.Split(v, ",")
		case "live":
			var on bool
			if on, err = strconv.ParseBool(v); on && cfg.Live == nil {
				cfg.Live = &LiveSync{}
			}
		case "push_delay":
			var d time.Duration
			if d, err = time.ParseDuration(v); err == nil {
				if cfg.Live == nil {
					cfg.Live = &LiveSync{}
				}
				cfg.Live.PushDelay = d
			}
		default:
			return cfg, fmt.Errorf("DSN %q: unknown parameter %q", dsn, k)
		}
		if err != nil {
			return cfg, fmt.Errorf("DSN %q: %s: %w", dsn, k, err)
		}
	}
	return cfg, nil
}
