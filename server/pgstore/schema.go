package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations create and evolve the schema. Each runs once, in order, in its
// own transaction; syncdb_schema records the version reached. Never edit a
// migration that has shipped: add one.
var migrations = []string{
	// 1: nodes, databases with their lease and counter, revisions, pages.
	`
CREATE TABLE syncdb_node (
	node        text PRIMARY KEY,          -- advertise URL + random incarnation
	url         text NOT NULL,             -- where to forward writes
	lock_key    int NOT NULL,              -- key of the node's session advisory lock
	lease_until timestamptz NOT NULL       -- renewed by the node; PostgreSQL's clock
);
CREATE SEQUENCE syncdb_node_lock AS int CYCLE;
CREATE TABLE syncdb_db (
	id         bigserial PRIMARY KEY,
	name       text UNIQUE NOT NULL,
	history_id text NOT NULL,              -- revisions are history_id-seq
	latest     bigint NOT NULL,            -- the revision counter
	db_size    bigint NOT NULL,            -- pages at latest
	horizon    bigint NOT NULL DEFAULT 1,  -- oldest servable revision
	writer     text,                       -- lease holder (a syncdb_node), NULL = none
	epoch      bigint NOT NULL DEFAULT 0   -- fencing token: +1 per new holder
);
CREATE TABLE syncdb_rev (
	db_id   bigint NOT NULL,
	seq     bigint NOT NULL,
	db_size bigint NOT NULL,
	unix_ms bigint NOT NULL,
	epoch   bigint NOT NULL,               -- the writer epoch that recorded it
	PRIMARY KEY (db_id, seq)
);
CREATE TABLE syncdb_page (
	db_id bigint NOT NULL,
	pgno  bigint NOT NULL,
	seq   bigint NOT NULL,
	zstd  boolean NOT NULL,
	data  bytea NOT NULL,
	PRIMARY KEY (db_id, pgno, seq)
);
CREATE INDEX syncdb_page_by_seq ON syncdb_page (db_id, seq, pgno);
-- Page images are zstd frames or incompressible: no pglz on top.
ALTER TABLE syncdb_page ALTER COLUMN data SET STORAGE EXTERNAL;
`,
}

// SchemaVersion is the schema version this build creates and expects.
var SchemaVersion = len(migrations)

// migrationLock serializes migrations of nodes starting together.
const migrationLock = 0x73796e63 // "sync"

// migrate brings the schema to SchemaVersion. A store migrated by a newer
// build is refused: this build would not know its tables.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS syncdb_schema (version int NOT NULL)`); err != nil {
		return err
	}
	var v int
	err = conn.QueryRow(ctx, `SELECT version FROM syncdb_schema`).Scan(&v)
	if err == pgx.ErrNoRows {
		if _, err := conn.Exec(ctx, `INSERT INTO syncdb_schema VALUES (0)`); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: the store has schema version %d, this syncdb knows up to %d: upgrade syncdb", ErrSchema, v, SchemaVersion)
	}
	for ; v < SchemaVersion; v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE syncdb_schema SET version = $1`, v+1)
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: migration %d: %w", ErrSchema, v+1, err)
		}
	}
	return nil
}
