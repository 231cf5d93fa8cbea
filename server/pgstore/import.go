package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/syncdb/syncdb/server/history"
)

// Source is a single-node history to copy into the store (history.Store).
type Source interface {
	ID() string
	Latest() history.Revision
	Horizon() int64
	Revisions(ctx context.Context, fn func(seq int64, dbSize uint32, unixMS int64) error) error
	StoredPages(ctx context.Context, fn func(pgno uint32, seq int64, compressed bool, data []byte) error) error
}

// ErrDatabaseExists reports an import of a database the store already has.
var ErrDatabaseExists = errors.New("pgstore: the store already has this database")

// Import copies src, every retained revision with its history identity,
// into the store as database name, in one transaction: revision strings
// stay valid, so existing clients keep pulling incrementally.
func (c *Cluster) Import(ctx context.Context, name string, src Source) error {
	latest := src.Latest()
	if latest.Seq == 0 {
		return fmt.Errorf("pgstore: import %q: the history is empty", name)
	}
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO syncdb_db(name, history_id, latest, db_size, horizon) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (name) DO NOTHING RETURNING id`, name, src.ID(), latest.Seq, latest.DBSize, src.Horizon()).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrDatabaseExists, name)
		}
		if err != nil {
			return err
		}
		var seqs, sizes, times []int64
		if err := src.Revisions(ctx, func(seq int64, size uint32, ms int64) error {
			seqs, sizes, times = append(seqs, seq), append(sizes, int64(size)), append(times, ms)
			return nil
		}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO syncdb_rev(db_id, seq, db_size, unix_ms, epoch)
			SELECT $1, u.seq, u.size, u.ms, 0 FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(seq, size, ms)`, id, seqs, sizes, times); err != nil {
			return err
		}
		rows := &pageRows{}
		flush := func() error {
			err := insertPages(ctx, tx, id, rows)
			*rows = pageRows{}
			return err
		}
		if err := src.StoredPages(ctx, func(pgno uint32, seq int64, z bool, data []byte) error {
			rows.pgno = append(rows.pgno, int64(pgno))
			rows.seq = append(rows.seq, seq)
			rows.zstd = append(rows.zstd, z)
			rows.data = append(rows.data, append([]byte(nil), data...))
			rows.bytes += len(data)
			if rows.bytes >= insertChunk {
				return flush()
			}
			return nil
		}); err != nil {
			return err
		}
		return flush()
	})
	if err != nil {
		return fmt.Errorf("pgstore: import %q: %w", name, err)
	}
	return nil
}
