package dbactor

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/syncdb/syncdb/messages"
)

// What a push leaves behind
//
// A push that committed a batch on the server records it in the database,
// in one local transaction that also drops the pushed changes from the
// change log (recordPush): _syncdb_local 'pushed' (pushRecord) and
// 'push_time'. That commit is the push's only durable write; -info's
// last_pushed_* hints and last_push_unix_time are brought up to date only
// when -info is written anyway (a pull, a fork, a clean close). Both are
// lower bounds of what the server has (each is written only after the
// server confirmed), so readers take the larger (lastPushed). A lost
// record (a crash before its commit, or SyncNormal and a power loss) is
// the state of a crash right after the server committed: the next push
// reads the server's mark and sends only the rest.
//
// What a push has sent
//
// A mark with no push chain row to verify it (a server that keeps none,
// or a buggy or hostile one that forged the mark) is taken only up to what
// this replica has sent (sentUpTo): beyond it, the server claims changes
// this replica never gave it, and taking the claim would drop them
// unpushed (chain.go: clonedWhy). So before a batch goes to a server that
// showed no chain row, the database records durably, in _syncdb_local
// 'sent' (a pushRecord), the last change id it sends (recordSent), and a
// push whose answer was lost still verifies. A server that showed one
// keeps chains: its mark will come with the chain, and the record, an
// fsync, is skipped.

// pushRecord is _syncdb_local 'pushed': the server has the changes of pull
// generation Gen up to change id ID, pushed under client id Client. A
// record of another client id (the replica took a new one: home.go) or
// generation says nothing.
type pushRecord struct {
	Client string `json:"client"`
	Gen    int64  `json:"gen"`
	ID     int64  `json:"id"`
}

// pushedState is what is known of the local pull generation's pushes.
type pushedState struct {
	Gen      int64 // the local pull generation
	After    int64 // the last change id of it the server is known to have
	Recorded bool  // a push of this generation and client id is known
	Time     int64 // the last push's unix time as the database records it (0: none)
}

type rowQuerier interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// lastPushed reads what the database and m's hints say the server has of
// the local pull generation, through q (the writer, or a read-only
// connection of another process's replica).
func lastPushed(ctx context.Context, q rowQuerier, m *messages.Meta) (pushedState, error) {
	var st pushedState
	var rec sql.NullString
	err := q.QueryRowContext(ctx, `SELECT
		coalesce((SELECT value FROM _syncdb_local WHERE key = 'pull_gen'), 0),
		(SELECT value FROM _syncdb_local WHERE key = 'pushed'),
		coalesce((SELECT value FROM _syncdb_local WHERE key = 'push_time'), 0)`).Scan(&st.Gen, &rec, &st.Time)
	if err != nil {
		return st, err
	}
	if m.LastPushedPullGenHint == st.Gen {
		st.After, st.Recorded = m.LastPushedChangeIDHint, true
	}
	if rec.Valid {
		var r pushRecord
		if err := json.Unmarshal([]byte(rec.String), &r); err != nil {
			return st, fmt.Errorf("the push record: %w", err)
		}
		if r.Client == m.ClientUniqueID && r.Gen == st.Gen {
			st.After, st.Recorded = max(st.After, r.ID), true
		}
	}
	return st, nil
}

// UnpushedChanges counts the local changes the server is not known to
// have (see lastPushed), and returns the last push's time as the database
// records it (0 if it does not), reading through q (the writer, or a
// read-only connection of another process's replica).
func UnpushedChanges(ctx context.Context, q rowQuerier, m *messages.Meta) (n, lastPush int64, err error) {
	st, err := lastPushed(ctx, q, m)
	if err != nil {
		return 0, 0, err
	}
	err = q.QueryRowContext(ctx, "SELECT count(*) FROM _syncdb_changes WHERE change_id > ?", st.After).Scan(&n)
	return n, st.Time, err
}

// recordPush answers RecordPush: in one transaction, the push record and
// time, and the pushed changes dropped from the change log with the push
// chain continued over them and the floor kept ('trimmed'), so that later
// change ids stay above it.
func (a *dbActor) recordPush(ctx context.Context, gen, upTo, now int64) error {
	if cur, err := a.localPullGen(ctx); err != nil || cur != gen {
		return err // a pull started a new generation meanwhile: nothing to record
	}
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	rec, err := json.Marshal(pushRecord{Client: a.meta.ClientUniqueID, Gen: gen, ID: upTo})
	if err != nil {
		return err
	}
	if _, err := a.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err = func() error {
		if _, err := a.own().ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('pushed', ?), ('push_time', ?)", string(rec), now); err != nil {
			return err
		}
		if upTo <= 0 {
			return nil
		}
		// The push chain continues over what leaves the log.
		st, ok, err := a.chainAt(ctx, upTo)
		if err != nil || !ok {
			return err // not all of it is here (nothing to trim)
		}
		if err := a.storeChain(ctx, st); err != nil {
			return err
		}
		q := "DELETE FROM _syncdb_changes WHERE change_id <= ?"
		args := []any{upTo}
		for t := range a.ignored {
			q += " AND table_name IS NOT ?"
			args = append(args, t)
		}
		if _, err := a.own().ExecContext(ctx, q, args...); err != nil {
			return err
		}
		_, err = a.own().ExecContext(ctx, `INSERT INTO _syncdb_local(key, value) VALUES('trimmed', ?)
			ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)`, upTo)
		return err
	}()
	if err == nil {
		_, err = a.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT")
	}
	if err != nil {
		a.rollback()
		a.endTxn(false)
		return fmt.Errorf("record the push: %w", err)
	}
	a.endTxn(true)
	a.noteWAL()
	return nil
}

// recordSent answers PendingChanges{RecordSent}: before the changes of
// pull generation gen up to upTo go to the server, the database records
// that they were sent ('sent'), durably, in one commit that also makes the
// earlier local commits durable (what syncLocal does for every push).
func (a *dbActor) recordSent(ctx context.Context, gen, upTo int64) error {
	prev, err := a.sentRecord(ctx, gen)
	if err != nil {
		return err
	}
	if prev >= upTo { // sent before (a retry): on record already
		return a.syncLocal(ctx)
	}
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	rec, err := json.Marshal(pushRecord{Client: a.meta.ClientUniqueID, Gen: gen, ID: upTo})
	if err != nil {
		return err
	}
	write := func() error {
		_, err := a.own().ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('sent', ?)", string(rec))
		return err
	}
	if mutation.unsyncedPush {
		err = write()
	} else {
		err = a.durable(ctx, write)
	}
	a.noteWAL()
	if err != nil {
		return fmt.Errorf("record the changes a push sends: %w", err)
	}
	if !mutation.unsyncedPush {
		a.unsynced = false
	}
	return nil
}

// sentRecord reads the 'sent' record's last change id of pull generation
// gen under this client id (0: none).
func (a *dbActor) sentRecord(ctx context.Context, gen int64) (int64, error) {
	var v string
	err := a.own().QueryRowContext(ctx, "SELECT value FROM _syncdb_local WHERE key = 'sent'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var r pushRecord
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return 0, fmt.Errorf("the sent record: %w", err)
	}
	if r.Client != a.meta.ClientUniqueID || r.Gen != gen {
		return 0, nil
	}
	return r.ID, nil
}

// sentUpTo is the last change id of the local pull generation that this
// replica is known to have sent under its client id: the 'sent' record,
// the pushes known to have committed (lastPushed: a fork's settling sets
// its hints to the new id's first mark) or the trimmed changes (stored,
// the push chain kept), whichever is last.
func (a *dbActor) sentUpTo(ctx context.Context, stored chainState) (int64, error) {
	// A fork's settling moves the hints in -info without this actor: read
	// them fresh.
	m, err := a.cfg.Meta.Get(ctx)
	if err != nil {
		return 0, err
	}
	pushed, err := lastPushed(ctx, a.own(), m)
	if err != nil {
		return 0, err
	}
	sent, err := a.sentRecord(ctx, pushed.Gen)
	if err != nil {
		return 0, err
	}
	return max(sent, pushed.After, stored.ID), nil
}
