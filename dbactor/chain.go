package dbactor

import (
	"context"

	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/syncdb/syncdb/messages"
)

// The push chain
//
// The server knows what a client pushed only as a high-water mark: the
// last change id of its pull generation. Two copies of one replica (a
// restored backup, a cloned machine) share the client id and the change
// ids, so the mark alone cannot tell one's changes from the other's, and
// the second copy would take the first one's changes for its own and drop
// its own. So every push also records a fingerprint of the changes up to
// its mark: a hash chain over the change records, next to the mark in
// turso_sync_last_change_id under the id "<client id>:chain" (the column
// change_id holds its first 8 bytes). A replica whose own chain at the
// server's mark differs is a copy (ErrClientCloned). A mark with no chain
// row (a server that keeps none, or one that forged the mark) is taken only
// up to what this replica has sent (pushed.go).
//
// The chain restarts with each pull generation. The changes a push trims
// from the change log are folded into the chain value kept in
// _syncdb_local ('push_chain'), so that it can be continued.

// ChainSuffix makes the client id under which the chain value is kept.
const ChainSuffix = ":chain"

// chainState is the chain value after change id ID (0 and no hash: empty).
type chainState struct {
	ID   int64  `json:"id"`
	Hash []byte `json:"hash,omitempty"`
}

// chainStep folds one change record into the chain.
func chainStep(h []byte, id int64, record []byte) []byte {
	s := sha256.New()
	s.Write(h)
	s.Write(binary.BigEndian.AppendUint64(nil, uint64(id)))
	s.Write(record)
	return s.Sum(nil)
}

// ChainValue is the number the server keeps for a chain hash.
func ChainValue(h []byte) int64 {
	if len(h) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(h))
}

// fold continues st over entries (in id order), up to id upTo. ok is false
// if the entries do not hold every change id in (st.ID, upTo].
func fold(st chainState, entries []journalEntry, upTo int64) (chainState, bool) {
	for _, e := range entries {
		if e.ID <= st.ID || e.ID > upTo {
			continue
		}
		if e.ID != st.ID+1 {
			return st, false
		}
		st = chainState{ID: e.ID, Hash: chainStep(st.Hash, e.ID, e.Record)}
	}
	return st, st.ID == upTo
}

// storedChain reads the chain value kept for the trimmed changes.
func (a *dbActor) storedChain(ctx context.Context) (chainState, error) {
	var st chainState
	var v []byte
	err := a.own().QueryRowContext(ctx, "SELECT value FROM _syncdb_local WHERE key = 'push_chain'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(v, &st)
}

func (a *dbActor) storeChain(ctx context.Context, st chainState) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = a.own().ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('push_chain', ?)", v)
	return err
}

// chainAt computes the chain of the current generation up to change id n.
func (a *dbActor) chainAt(ctx context.Context, n int64) (chainState, bool, error) {
	st, err := a.storedChain(ctx)
	if err != nil {
		return st, false, err
	}
	if n < st.ID {
		return st, false, nil
	}
	entries, err := a.changeLogRange(ctx, st.ID, n)
	if err != nil {
		return st, false, err
	}
	st, ok := fold(st, entries, n)
	return st, ok, nil
}

// changeLogRange reads the change log in (after, upTo].
func (a *dbActor) changeLogRange(ctx context.Context, after, upTo int64) ([]journalEntry, error) {
	rows, err := a.own().QueryContext(ctx, "SELECT change_id, txn, record FROM _syncdb_changes WHERE change_id > ? AND change_id <= ? ORDER BY change_id", after, upTo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []journalEntry
	for rows.Next() {
		var e journalEntry
		if err := rows.Scan(&e.ID, &e.Txn, &e.Record); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ErrClientCloned reports a replica that is a copy of another one using
// the same client id (a cloned machine, a file-system snapshot restored in
// place, a backup restored where syncdb could not tell): the server holds
// changes under this id that this replica did not make. Continuing would
// drop writes; Config.Recover (syncdb recover PATH) gives the replica an
// id of its own, keeping its changes.
var ErrClientCloned = errors.New("this replica is a copy of another one that uses the same client id")

// clonedReason reads why this replica was found to be a copy ("" if it
// was not).
func (a *dbActor) clonedReason(ctx context.Context) (string, error) {
	var why string
	err := a.own().QueryRowContext(ctx, "SELECT value FROM _syncdb_local WHERE key = 'cloned'").Scan(&why)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return why, err
}

// ClonedError is the error every pull and push of a replica found to be a
// copy returns until it is recovered.
func ClonedError(path, why string) error {
	return fmt.Errorf("%w (%s): its local changes are kept, but it cannot push or pull under that id; "+
		"run: syncdb recover %s (or open it with Config.Recover) to give it an id of its own", ErrClientCloned, why, path)
}

// markCloned records durably that this replica is a copy.
func (a *dbActor) markCloned(ctx context.Context, why string) error {
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	_, err := a.own().ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('cloned', ?)", why)
	a.noteWAL()
	return err
}

// checkMarks answers CheckMarks.
func (a *dbActor) checkMarks(ctx context.Context, server messages.Mark, chain *messages.Mark) (string, error) {
	gen, err := a.localPullGen(ctx)
	if err != nil {
		return "", err
	}
	stored, err := a.storedChain(ctx)
	if err != nil {
		return "", err
	}
	var log []journalEntry
	if server.Gen == gen && server.ID > stored.ID {
		if log, err = a.changeLogRange(ctx, stored.ID, server.ID); err != nil {
			return "", err
		}
	}
	sent, err := a.sentUpTo(ctx, stored)
	if err != nil {
		return "", err
	}
	var c *mark
	if chain != nil {
		c = &mark{chain.Gen, chain.ID}
	}
	return clonedWhy(gen, stored, log, sent, mark{server.Gen, server.ID}, c), nil
}
