package dbactor

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/messages"
)

// Conflicts
//
// A conflict is a local change that meets a remote change it never saw. The
// replay of a pull (T2) checks every replayed change against the row it
// finds (precondition); a push checks the same on the server (change.Guard)
// and, refused, pulls so that the replay sees it. A conflict is recorded in
// _syncdb_conflicts in the transaction that finds it, with the local change
// and every later local change of the same row (they were made on top of
// it and share its fate), and the policy decides: keep "local", keep
// "remote", move the local row to a new key ("rekeyed", the default for an
// insert-insert on a key SQLite assigned), or "" (the default otherwise):
// the changes wait, refused, until DB.ResolveConflict. Records travel
// through pulls in the replay journal, so their ids stay.

// The kinds of conflict.
const (
	KindInsertInsert  = "insert-insert"  // an insert meets another row with its key
	KindUpdateDeleted = "update-deleted" // an update of a row deleted remotely
	KindDeleteUpdated = "delete-updated" // a delete of a row changed remotely
	KindConstraint    = "constraint"     // a change the database refuses (UNIQUE, CHECK, a table gone)
)

// The resolutions.
const (
	KeepLocal  = "local"
	KeepRemote = "remote"
	Rekeyed    = "rekeyed"
)

// ErrConflict is wrapped by the error of a pull or push after which local
// changes still wait, refused, for a conflict to be resolved.
var ErrConflict = errors.New("local changes wait for a conflict to be resolved")

const conflictSchema = `
CREATE TABLE IF NOT EXISTS _syncdb_conflicts(
	id INTEGER PRIMARY KEY,
	time INTEGER NOT NULL,
	revision TEXT NOT NULL,
	base TEXT NOT NULL,
	kind TEXT NOT NULL,
	table_name TEXT NOT NULL,
	remote BLOB,
	changes BLOB NOT NULL,
	error TEXT NOT NULL,
	new_key INTEGER,
	resolved TEXT NOT NULL,
	resolved_time INTEGER);
`

// OnConflict decides a conflict: KeepLocal, KeepRemote, "rekey" (an
// insert-insert on a rowid key) or "" to leave it waiting. It runs inside
// the pull's transaction, on the database actor: it must not use the
// database.
type OnConflict func(ctx context.Context, c messages.Conflict) (keep string, err error)

// conflictRecord is one row of _syncdb_conflicts; it is also how the
// replay journal carries the rows through a pull.
type conflictRecord struct {
	ID           int64    `json:"id"`
	Time         int64    `json:"time"`
	Revision     string   `json:"revision"`
	Base         string   `json:"base"`
	Kind         string   `json:"kind"`
	Table        string   `json:"table"`
	Remote       []byte   `json:"remote,omitempty"` // an encoded Insert whose After is the remote row
	Changes      [][]byte `json:"changes"`          // encoded local changes, the conflicting one first
	Error        string   `json:"error,omitempty"`
	NewKey       *int64   `json:"new_key,omitempty"`
	Resolved     string   `json:"resolved,omitempty"`
	ResolvedTime int64    `json:"resolved_time,omitempty"`
}

func joinFramed(parts [][]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = appendFramed(b, p)
	}
	return b
}

func splitFramed(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		p, rest, err := nextFrame(b)
		if err != nil {
			return nil, err
		}
		out, b = append(out, p), rest
	}
	return out, nil
}

// precondition decides what a replayed change c meets in the row cur (nil:
// there is none; c's columns only): "" when it applies, skip when the row
// is already as c leaves it, or the kind of conflict. unknownSet reports
// that a column of the row c does not know (added after c was captured)
// holds something other than its default: someone wrote it after c's
// view of the row, which a delete would drop. It is the rule of
// change.Guard, made exact where the guard cannot see the column.
func precondition(c change.Change, cur []any, unknownSet bool) (kind string, skip bool) {
	switch c.Op {
	case change.Insert:
		switch {
		case cur == nil:
			return "", false
		case sameRow(cur, c.After):
			return "", true
		}
		return KindInsertInsert, false
	case change.Update:
		if cur == nil || mutation.falseConflicts {
			return KindUpdateDeleted, false
		}
	case change.Delete:
		switch {
		case cur == nil:
			return "", true
		case (!sameRow(cur, c.Before) || unknownSet) && !mutation.blindDeletes:
			return KindDeleteUpdated, false
		}
	}
	return "", false
}

// defaultKeep is the default policy: an insert that collides on a rowid
// key SQLite assigned moves to a new key (nobody chose that key, and both
// rows are the users'); everything else waits for the user.
func defaultKeep(kind string, c change.Change) string {
	if kind == KindInsertInsert && c.RowidAlias && c.KeyAssigned {
		return "rekey"
	}
	return ""
}

// keyString identifies a row: its table and key values.
func keyString(table string, key []any) string {
	var b strings.Builder
	b.WriteString(table)
	for _, v := range key {
		fmt.Fprintf(&b, "\x00%T:%v", v, v)
	}
	return b.String()
}

// currentRow reads the row with c's key (its old key for an update or
// delete), the captured columns only; nil if there is none.
func (a *dbActor) currentRow(ctx context.Context, c change.Change, key []any) ([]any, error) {
	if len(key) != len(c.PK) {
		return nil, fmt.Errorf("key of %d values for %d key columns", len(key), len(c.PK))
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, col := range c.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(change.QuoteIdent(col))
	}
	b.WriteString(" FROM ")
	b.WriteString(change.QuoteIdent(c.Table))
	writeWhereKey(&b, c)
	return a.rawRow(ctx, b.String(), key...)
}

// writeWhereKey appends the WHERE clause that selects c's row by its
// key, one placeholder per key column.
func writeWhereKey(b *strings.Builder, c change.Change) {
	b.WriteString(" WHERE ")
	for i, k := range c.PK {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(change.QuoteIdent(c.Columns[k]))
		b.WriteString(" IS ?")
	}
}

// unknownColumns are the stored columns of a row that a change does not
// know (added after it was captured), and what the row holds in them.
type unknownColumns struct {
	names []string
	vals  []any
	// set: one holds something other than its default (NULL if it has
	// none; compared as SQLite compares, byte for byte for text).
	set bool
}

// unknownColumns reads the columns of c's table that c does not know in
// the row with key. A row that predates the column reads as its default,
// as does one where it was never written.
func (a *dbActor) unknownColumns(ctx context.Context, c change.Change, key []any) (unknownColumns, error) {
	var u unknownColumns
	if mutation.blindAddedColumns {
		return u, nil
	}
	args := []any{c.Table}
	for _, col := range c.Columns {
		args = append(args, col)
	}
	rows, err := a.conn.QueryContext(ctx, "SELECT name, dflt_value FROM pragma_table_xinfo(?, 'main') WHERE hidden = 0 AND name COLLATE NOCASE NOT IN ("+
		strings.TrimSuffix(strings.Repeat("?,", len(c.Columns)), ",")+") ORDER BY cid", args...)
	if err != nil {
		return u, err
	}
	var sel, same []string
	for rows.Next() {
		var name string
		var dflt sql.NullString
		if err := rows.Scan(&name, &dflt); err != nil {
			rows.Close()
			return u, err
		}
		u.names = append(u.names, name)
		q := change.QuoteIdent(name)
		sel = append(sel, q)
		if dflt.Valid {
			same = append(same, q+" IS ("+dflt.String+") COLLATE BINARY")
		} else {
			same = append(same, q+" IS NULL")
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil || len(u.names) == 0 {
		return u, err
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(strings.Join(sel, ", "))
	b.WriteString(", ")
	b.WriteString(strings.Join(same, " AND "))
	b.WriteString(" FROM ")
	b.WriteString(change.QuoteIdent(c.Table))
	writeWhereKey(&b, c)
	row, err := a.rawRow(ctx, b.String(), key...)
	if err != nil || row == nil {
		return u, err
	}
	n := len(u.names)
	u.vals = row[:n]
	u.set = row[n] != int64(1)
	return u, nil
}

// rawRow runs a one-row query with exact values (no DATETIME conversions).
func (a *dbActor) rawRow(ctx context.Context, query string, args ...any) ([]any, error) {
	var row []any
	err := sqlitex.Raw(ctx, a.conn, func(c *sqlitex.Conn) error {
		st, _, err := c.Prepare(query)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.BindAll(args...); err != nil {
			return err
		}
		ok, err := st.Step()
		if err != nil || !ok {
			return err
		}
		row = make([]any, st.ColumnCount())
		for i := range row {
			row[i] = st.Column(i)
		}
		return nil
	})
	return row, err
}

var uniqueRE = regexp.MustCompile(`UNIQUE constraint failed: (.*?)(?: \(\d+\))?$`)

// blockingRow finds the row that made c fail a UNIQUE constraint (err is
// SQLite's message, "UNIQUE constraint failed: t.a, t.b"): the one holding
// c's values of those columns. It parses the message on purpose: SQLite
// names the constraint's columns nowhere else (the extended code,
// SQLITE_CONSTRAINT_UNIQUE, says only which kind of constraint failed).
func (a *dbActor) blockingRow(ctx context.Context, c change.Change, err error) []any {
	img := c.After
	m := uniqueRE.FindStringSubmatch(err.Error())
	if m == nil || img == nil {
		return nil
	}
	var where []string
	var args []any
	for _, qual := range strings.Split(m[1], ", ") {
		col := qual[strings.LastIndexByte(qual, '.')+1:]
		i := -1
		for j, name := range c.Columns {
			if strings.EqualFold(name, col) {
				i = j
			}
		}
		if i < 0 {
			return nil
		}
		where = append(where, change.QuoteIdent(c.Columns[i])+" IS ?")
		args = append(args, img[i])
	}
	cols := make([]string, len(c.Columns))
	for i, col := range c.Columns {
		cols[i] = change.QuoteIdent(col)
	}
	row, qerr := a.rawRow(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+change.QuoteIdent(c.Table)+" WHERE "+strings.Join(where, " AND "), args...)
	if qerr != nil {
		return nil
	}
	return row
}

// remoteRecord encodes a remote row of c's table.
func remoteRecord(c change.Change, row []any) ([]byte, error) {
	if row == nil {
		return nil, nil
	}
	r := change.Change{Op: change.Insert, Table: c.Table, Columns: c.Columns, PK: c.PK, RowidAlias: c.RowidAlias, After: row}
	if c.RowidAlias {
		if id, ok := row[c.PK[0]].(int64); ok {
			r.NewRowid = id
		}
	}
	return r.Encode()
}

// replayer carries the conflict state of one replay (T2): the conflicts it
// recorded, the rows they hold, and the keys it moved.
type replayer struct {
	a        *dbActor
	revision string
	base     string
	records  []*conflictRecord
	held     map[string]*conflictRecord // row (keyString) -> the conflict whose changes it joins
	rekeyed  map[string]int64           // row (keyString) -> its new rowid
	fks      map[string][]foreignKey    // child table -> its single-column references
	// taken is, per table, the highest rowid a local change of this
	// replay uses: a moved row goes above it, not onto a row the replay
	// is about to insert.
	taken map[string]int64
}

type foreignKey struct{ from, parent string }

func (a *dbActor) newReplayer(revision, base string) *replayer {
	return &replayer{a: a, revision: revision, base: base, held: map[string]*conflictRecord{}, rekeyed: map[string]int64{},
		fks: map[string][]foreignKey{}, taken: map[string]int64{}}
}

// reserve notes the rowids a change that the replay will apply uses.
func (rp *replayer) reserve(c change.Change) {
	if c.Op != change.Schema {
		rp.taken[c.Table] = max(rp.taken[c.Table], c.NewRowid, c.OldRowid)
	}
}

// apply replays one local change with the conflict rules. Only capture
// errors (the transaction cannot commit) are returned.
func (rp *replayer) apply(ctx context.Context, c change.Change) error {
	a := rp.a
	if c.Op == change.Schema || len(c.PK) == 0 || a.ignored[c.Table] {
		if err := a.replayOne(ctx, c); err != nil {
			if isCaptureError(err) {
				return err
			}
			return rp.record(ctx, c, KindConstraint, nil, err)
		}
		return nil
	}
	if err := rp.remap(ctx, &c); err != nil {
		return err
	}
	key := change.Key(c)
	if rec := rp.held[keyString(c.Table, key)]; rec != nil {
		return rp.hold(rec, c)
	}
	cur, err := a.currentRow(ctx, c, key)
	if err != nil {
		// The table or a column is gone: the statements will say.
		cur = nil
	}
	var unknown unknownColumns
	if c.Op == change.Delete && cur != nil {
		var uerr error
		if unknown, uerr = a.unknownColumns(ctx, c, key); uerr != nil {
			// Whatever the columns hold, the delete waits rather than
			// dropping them unseen.
			return rp.record(ctx, c, KindDeleteUpdated, cur, uerr)
		}
	}
	kind, skip := precondition(c, cur, unknown.set)
	if err != nil {
		kind, skip = "", false
	}
	if skip {
		return nil
	}
	if kind == "" {
		err := a.replayOne(ctx, c)
		if err == nil || isCaptureError(err) {
			return err
		}
		return rp.record(ctx, c, KindConstraint, a.blockingRow(ctx, c, err), err)
	}
	if unknown.names != nil {
		// The remote side shows the row whole, the columns c did not know
		// included.
		return rp.recordRow(ctx, c, kind, append(slices.Clone(c.Columns), unknown.names...), append(slices.Clone(cur), unknown.vals...), nil)
	}
	return rp.record(ctx, c, kind, cur, nil)
}

// hold adds a later change of a conflicting row to its conflict. A key
// change moves the hold to the new key.
func (rp *replayer) hold(rec *conflictRecord, c change.Change) error {
	enc, err := c.Encode()
	if err != nil {
		return captureError{err}
	}
	rec.Changes = append(rec.Changes, enc)
	if c.Op == change.Update {
		after := c
		after.Op = change.Insert
		rp.held[keyString(c.Table, change.Key(after))] = rec
	}
	return nil
}

// record records a conflict of c and applies the policy's decision;
// remote is the row c met, in c's columns.
func (rp *replayer) record(ctx context.Context, c change.Change, kind string, remote []any, cause error) error {
	return rp.recordRow(ctx, c, kind, c.Columns, remote, cause)
}

// recordRow is record with the remote row in columns of its own (c's
// first, in their order).
func (rp *replayer) recordRow(ctx context.Context, c change.Change, kind string, remoteCols []string, remote []any, cause error) error {
	a := rp.a
	enc, err := c.Encode()
	if err != nil {
		return captureError{err}
	}
	rec := &conflictRecord{Time: a.now().Unix(), Revision: rp.revision, Base: rp.base, Kind: kind, Table: c.Table, Changes: [][]byte{enc}}
	rc := c
	rc.Columns = remoteCols
	if rec.Remote, err = remoteRecord(rc, remote); err != nil {
		return captureError{err}
	}
	if cause != nil {
		rec.Error = cause.Error()
	}
	rp.records = append(rp.records, rec)
	key := keyString(c.Table, change.Key(c))

	keep := defaultKeep(kind, c)
	if f := a.cfg.OnConflict; f != nil {
		view, verr := rec.view()
		if verr != nil {
			return captureError{verr}
		}
		if keep, err = f(ctx, view); err != nil {
			a.cfg.Logger.Warn("Config.OnConflict failed: the conflict waits", "table", c.Table, "kind", kind, "err", err)
			keep = ""
		}
	}
	switch keep {
	case KeepRemote:
		rec.Resolved, rec.ResolvedTime = KeepRemote, rec.Time
		rp.held[key] = rec // its later changes share its fate
	case KeepLocal:
		if err := a.keepLocal(ctx, rec, c); err != nil {
			if isCaptureError(err) {
				return err
			}
			a.cfg.Logger.Warn("keeping the local side of a conflict failed: it waits", "table", c.Table, "err", err)
			rp.held[key] = rec
			break
		}
		rec.Resolved, rec.ResolvedTime = KeepLocal, rec.Time
	case "rekey":
		if kind != KindInsertInsert || !c.RowidAlias {
			a.cfg.Logger.Warn("a conflict cannot be rekeyed: it waits", "table", c.Table, "kind", kind)
			rp.held[key] = rec
			break
		}
		if err := rp.rekey(ctx, rec, c, key); err != nil {
			return err
		}
	case "":
		rp.held[key] = rec
	default:
		a.cfg.Logger.Warn("Config.OnConflict answered an unknown resolution: the conflict waits", "keep", keep)
		rp.held[key] = rec
	}
	if rec.Resolved == "" {
		a.cfg.Logger.Warn("a local change conflicts with the server and waits for DB.ResolveConflict", "table", c.Table, "kind", rec.Kind)
	} else {
		a.cfg.Logger.Info("a conflict was resolved", "table", c.Table, "kind", rec.Kind, "resolved", rec.Resolved)
	}
	return nil
}

// rekey inserts c's row at a new rowid, past every row there is, and
// remembers the move so that later changes of the row, and their foreign
// keys to it, follow. If the row cannot go in even there (another
// constraint), the conflict becomes a constraint conflict and waits.
func (rp *replayer) rekey(ctx context.Context, rec *conflictRecord, c change.Change, key string) error {
	a := rp.a
	row, err := a.rawRow(ctx, "SELECT coalesce(max(rowid), 0) + 1 FROM "+change.QuoteIdent(c.Table))
	if err != nil {
		return captureError{err}
	}
	id := max(row[0].(int64), rp.taken[c.Table]+1)
	rp.taken[c.Table] = id
	moved := c
	moved.After = append([]any(nil), c.After...)
	moved.After[c.PK[0]] = id
	moved.NewRowid = id
	if err := a.replayOne(ctx, moved); err != nil {
		if isCaptureError(err) {
			return err
		}
		rec.Kind, rec.Error = KindConstraint, err.Error()
		if r, rerr := remoteRecord(c, a.blockingRow(ctx, moved, err)); rerr == nil && r != nil {
			rec.Remote = r
		}
		rp.held[key] = rec
		return nil
	}
	rec.Resolved, rec.ResolvedTime, rec.NewKey = Rekeyed, rec.Time, &id
	rp.rekeyed[key] = id
	return nil
}

// remap rewrites a later change for the keys this replay moved: the row's
// own key, and single-column foreign keys to a moved row.
func (rp *replayer) remap(ctx context.Context, c *change.Change) error {
	if len(rp.rekeyed) == 0 {
		return nil
	}
	if c.RowidAlias {
		for _, img := range []*[]any{&c.Before, &c.After} {
			if *img == nil {
				continue
			}
			k := []any{(*img)[c.PK[0]]}
			if k[0] == nil {
				k[0] = map[bool]int64{true: c.NewRowid, false: c.OldRowid}[img == &c.After]
			}
			if id, ok := rp.rekeyed[keyString(c.Table, k)]; ok {
				*img = append([]any(nil), (*img)...)
				(*img)[c.PK[0]] = id
				if img == &c.After {
					c.NewRowid = id
				} else {
					c.OldRowid = id
				}
			}
		}
	}
	fks, err := rp.foreignKeys(ctx, c.Table)
	if err != nil {
		return err
	}
	for _, fk := range fks {
		col := -1
		for i, name := range c.Columns {
			if strings.EqualFold(name, fk.from) {
				col = i
			}
		}
		if col < 0 {
			continue
		}
		for _, img := range []*[]any{&c.Before, &c.After} {
			if *img == nil {
				continue
			}
			if id, ok := rp.rekeyed[keyString(fk.parent, []any{(*img)[col]})]; ok {
				*img = append([]any(nil), (*img)...)
				(*img)[col] = id
			}
		}
	}
	return nil
}

// foreignKeys lists the single-column foreign keys of table (cached for
// the replay).
func (rp *replayer) foreignKeys(ctx context.Context, table string) ([]foreignKey, error) {
	if fks, ok := rp.fks[table]; ok {
		return fks, nil
	}
	rows, err := rp.a.conn.QueryContext(ctx, `SELECT "table", "from", count(*) OVER (PARTITION BY id) FROM pragma_foreign_key_list(?)`, table)
	if err != nil {
		return nil, captureError{err}
	}
	defer rows.Close()
	var fks []foreignKey
	for rows.Next() {
		var fk foreignKey
		var n int
		if err := rows.Scan(&fk.parent, &fk.from, &n); err != nil {
			return nil, captureError{err}
		}
		if n == 1 {
			fks = append(fks, fk)
		}
	}
	rp.fks[table] = fks
	return fks, rows.Err()
}

// keepLocal applies the local side of a conflict: c, the conflicting
// change, as its kind needs, then the changes the conflict holds after it.
func (a *dbActor) keepLocal(ctx context.Context, rec *conflictRecord, c change.Change) error {
	switch rec.Kind {
	case KindUpdateDeleted:
		// The row is gone: bring it back as the update left it.
		c = change.Change{Op: change.Insert, Table: c.Table, Columns: c.Columns, PK: c.PK, RowidAlias: c.RowidAlias,
			NewRowid: c.NewRowid, After: c.After}
	case KindConstraint:
		// The row that holds the unique values gives way.
		if rec.Remote != nil {
			r, err := change.Decode(rec.Remote)
			if err != nil {
				return err
			}
			if change.Key(r) != nil && keyString(r.Table, change.Key(r)) != keyString(c.Table, change.Key(c)) {
				del := change.Change{Op: change.Delete, Table: r.Table, Columns: r.Columns, PK: r.PK, RowidAlias: r.RowidAlias,
					OldRowid: r.NewRowid, Before: r.After}
				if err := a.replayOne(ctx, del); err != nil {
					return err
				}
			}
		}
	}
	// Insert-insert: the insert's upsert overwrites the remote row;
	// delete-updated: the delete deletes it, whatever it holds now.
	if err := a.replayOne(ctx, c); err != nil {
		return err
	}
	for _, enc := range rec.Changes[1:] {
		d, err := change.Decode(enc)
		if err != nil {
			return err
		}
		if err := a.replayOne(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// view is the record as the facade shows it.
func (rec *conflictRecord) view() (messages.Conflict, error) {
	v := messages.Conflict{ID: rec.ID, Kind: rec.Kind, Table: rec.Table, Resolved: rec.Resolved, Error: rec.Error,
		Revision: rec.Revision, Base: rec.Base, Time: rec.Time, Changes: len(rec.Changes)}
	var first change.Change
	for i, enc := range rec.Changes {
		c, err := change.Decode(enc)
		if err != nil {
			return v, err
		}
		if i == 0 {
			first = c
			v.Key = change.Key(c)
		}
		switch c.Op {
		case change.Insert, change.Update:
			v.Local = rowMap(c.Columns, c.After)
		case change.Delete:
			v.Local = nil
		}
	}
	if rec.Remote != nil {
		r, err := change.Decode(rec.Remote)
		if err != nil {
			return v, err
		}
		v.Remote = rowMap(r.Columns, r.After)
	}
	if rec.NewKey != nil && first.RowidAlias {
		v.NewKey = []any{*rec.NewKey}
	}
	return v, nil
}

func rowMap(cols []string, img []any) map[string]any {
	if img == nil {
		return nil
	}
	m := make(map[string]any, len(cols))
	for i, c := range cols {
		m[c] = img[i]
	}
	return m
}

// readConflicts reads the recorded conflicts, oldest first; with
// unresolved, only those that wait. A database without the table (before
// the first write since this version) has none.
func (a *dbActor) readConflicts(ctx context.Context, unresolved bool) ([]*conflictRecord, error) {
	if ok, err := tableExists(ctx, a.own(), "_syncdb_conflicts"); err != nil || !ok {
		return nil, err
	}
	q := "SELECT id, time, revision, base, kind, table_name, remote, changes, error, new_key, resolved, coalesce(resolved_time, 0) FROM _syncdb_conflicts"
	if unresolved {
		q += " WHERE resolved = ''"
	}
	rows, err := a.own().QueryContext(ctx, q+" ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*conflictRecord
	for rows.Next() {
		rec := &conflictRecord{}
		var changes []byte
		var newKey sql.NullInt64
		if err := rows.Scan(&rec.ID, &rec.Time, &rec.Revision, &rec.Base, &rec.Kind, &rec.Table, &rec.Remote, &changes,
			&rec.Error, &newKey, &rec.Resolved, &rec.ResolvedTime); err != nil {
			return nil, err
		}
		if newKey.Valid {
			rec.NewKey = &newKey.Int64
		}
		if rec.Changes, err = splitFramed(changes); err != nil {
			return nil, fmt.Errorf("conflict %d: %w", rec.ID, err)
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// writeConflict inserts or replaces a record; a new one (ID 0) gets the
// next id. It runs inside the caller's transaction.
func (a *dbActor) writeConflict(ctx context.Context, rec *conflictRecord) error {
	var id any
	if rec.ID != 0 {
		id = rec.ID
	}
	var newKey any
	if rec.NewKey != nil {
		newKey = *rec.NewKey
	}
	var resolvedTime any
	if rec.ResolvedTime != 0 {
		resolvedTime = rec.ResolvedTime
	}
	res, err := a.own().ExecContext(ctx, `INSERT OR REPLACE INTO _syncdb_conflicts(id, time, revision, base, kind, table_name, remote, changes, error, new_key, resolved, resolved_time)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, rec.Time, rec.Revision, rec.Base, rec.Kind, rec.Table, rec.Remote, joinFramed(rec.Changes),
		rec.Error, newKey, rec.Resolved, resolvedTime)
	if err != nil {
		return fmt.Errorf("record a conflict: %w", err)
	}
	if rec.ID == 0 {
		rec.ID, _ = res.LastInsertId()
	}
	return nil
}

// listConflicts answers ListConflicts.
func (a *dbActor) listConflicts(ctx context.Context, all bool) ([]messages.Conflict, error) {
	_, _, recs, pending, err := a.pendingJournal(ctx)
	if err != nil {
		return nil, err
	}
	if pending { // the database may hold the server's pages
		if !all {
			recs = slices.DeleteFunc(recs, func(r *conflictRecord) bool { return r.Resolved != "" })
		}
	} else if recs, err = a.readConflicts(ctx, !all); err != nil {
		return nil, err
	}
	out := make([]messages.Conflict, 0, len(recs))
	for _, rec := range recs {
		v, err := rec.view()
		if err != nil {
			return nil, fmt.Errorf("conflict %d: %w", rec.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// ErrNoConflict reports a ResolveConflict of an id that names no conflict,
// or a resolution that cannot be.
var ErrNoConflict = errors.New("no such conflict")

// resolveConflict answers ResolveConflict in one local transaction: the
// local side's changes are captured like the user's, for the next push.
func (a *dbActor) resolveConflict(ctx context.Context, id int64, keep string) error {
	if keep != KeepLocal && keep != KeepRemote && keep != "rekey" {
		return fmt.Errorf("resolve conflict %d: keep must be %q or %q, not %q", id, KeepLocal, KeepRemote, keep)
	}
	return a.inTx(ctx, func() error {
		recs, err := a.readConflicts(ctx, false)
		if err != nil {
			return err
		}
		var rec *conflictRecord
		for _, r := range recs {
			if r.ID == id {
				rec = r
			}
		}
		switch {
		case rec == nil:
			return fmt.Errorf("%w: %d", ErrNoConflict, id)
		case rec.Resolved == keep || rec.Resolved == Rekeyed && keep == "rekey":
			return nil
		case rec.Resolved != "":
			return fmt.Errorf("conflict %d is resolved already (%s)", id, rec.Resolved)
		}
		c, err := change.Decode(rec.Changes[0])
		if err != nil {
			return err
		}
		switch keep {
		case KeepLocal:
			if err := a.keepLocal(ctx, rec, c); err != nil {
				return fmt.Errorf("conflict %d: the local change still cannot be applied (change or delete the other row first, or keep the remote side): %w", id, err)
			}
		case "rekey":
			rp := a.newReplayer(rec.Revision, rec.Base)
			if kind := rec.Kind; kind != KindInsertInsert || !c.RowidAlias {
				return fmt.Errorf("conflict %d (%s on %s) cannot be rekeyed", id, kind, rec.Table)
			}
			if err := rp.rekey(ctx, rec, c, keyString(c.Table, change.Key(c))); err != nil {
				return err
			}
			if rec.Resolved != Rekeyed {
				return fmt.Errorf("conflict %d: the row cannot take a new key either: %s", id, rec.Error)
			}
			for _, enc := range rec.Changes[1:] {
				d, err := change.Decode(enc)
				if err != nil {
					return err
				}
				if err := rp.remap(ctx, &d); err != nil {
					return err
				}
				if err := a.replayOne(ctx, d); err != nil {
					return err
				}
			}
		}
		if keep != "rekey" {
			rec.Resolved = keep
		}
		rec.ResolvedTime = a.now().Unix()
		return a.writeConflict(ctx, rec)
	})
}

// unresolvedConflicts counts the conflicts that wait.
func (a *dbActor) unresolvedConflicts(ctx context.Context) (int64, error) {
	recs, err := a.readConflicts(ctx, true)
	return int64(len(recs)), err
}

// assignedKey returns, for a user's statement and its arguments, whether
// the rowid of a row it inserts was SQLite's choice, given the table's key
// column and its position among the columns a VALUES row fills. Only when
// provably so (a false "no" makes a collision wait for the user; a false
// "yes" moves the user's row, and whatever refers to its key, silently to
// another key): DEFAULT VALUES, a column list without the key or a rowid
// name, or, in every row of a VALUES list, NULL or a parameter bound to
// nil where the key goes. A key from a query or an expression is the
// user's, whatever its number: it cannot be told from a chosen one. The
// arguments are read now: what the caller does with them after the
// statement does not change its rows. ins is the statement's text as
// sqlitex.ReadInsert reads it (readInsert keeps it by text).
func assignedKey(ins sqlitex.Insert, args []any) func(key string, pos int) bool {
	if !ins.Read || ins.Select && ins.Columns == nil {
		return nil
	}
	// null[i]: the i-th value of every row is NULL.
	var null []bool
	for r, row := range ins.Rows {
		if r > 0 && len(row) != len(null) {
			return nil // SQLite refuses the statement
		}
		if r == 0 {
			null = make([]bool, len(row))
			for i := range null {
				null[i] = true
			}
		}
		for i, v := range row {
			null[i] = null[i] && (v.Null || v.Param != "" && paramNil(args, v.Param, v.N))
		}
	}
	return func(key string, pos int) bool {
		if ins.DefaultValues {
			return true
		}
		if ins.Columns == nil {
			return pos < len(null) && null[pos]
		}
		for i, col := range ins.Columns {
			for _, k := range []string{key, "rowid", "oid", "_rowid_"} {
				if strings.EqualFold(col, k) {
					if ins.Select || i >= len(null) || !null[i] {
						return false
					}
				}
			}
		}
		return true
	}
}

// maxInserts bounds readInsert's map: past it, the map starts again.
// maxInsertText bounds the texts it keeps: a longer statement (a
// multi-megabyte INSERT of many rows) is read each time, as it would be
// anyway before it runs once more, and is not kept by the map after it
// has run.
const (
	maxInserts    = 256
	maxInsertText = 4 << 10
)

// readInsert is sqlitex.ReadInsert(stmt), read once per text: a statement
// run again (a loop of INSERTs with new arguments) is not tokenized again
// (issue 15: tokenizing it was a tenth of a one-row INSERT's CPU in a
// Tx). The result depends on the text only; assignedKey reads the
// arguments each time, and never changes what the map holds. The map
// keeps a copy of the text, and the Insert read from that copy (its
// strings are parts of the text): stmt may be one statement of a long
// script, and the map must not keep the whole script.
func (a *dbActor) readInsert(stmt string) sqlitex.Insert {
	if ins, ok := a.inserts[stmt]; ok {
		return ins
	}
	if len(stmt) > maxInsertText {
		return sqlitex.ReadInsert(stmt)
	}
	stmt = strings.Clone(stmt)
	ins := sqlitex.ReadInsert(stmt)
	if a.inserts == nil || len(a.inserts) >= maxInserts {
		a.inserts = make(map[string]sqlitex.Insert)
	}
	a.inserts[stmt] = ins
	return ins
}

// paramNil reports whether the parameter written param, numbered n,
// provably binds as NULL: every argument modernc (v1.61) may bind to it
// is nil as database/sql hands it to the driver (through driver.Valuer
// and driver.DefaultParameterConverter: a nil pointer, an invalid
// sql.Null*). Those are, for ?, the n-th; for ?NNN and $NNN, the NNN-th;
// for any name, a named argument of that name (case aside, to be safe).
// A parameter no argument binds fails the statement.
func paramNil(args []any, param string, n int) bool {
	var binds []any
	if param == "?" && n >= 1 && n <= len(args) {
		binds = append(binds, args[n-1])
	}
	// Only a number can be one (Atoi's error allocates: this runs for
	// every parameter of every INSERT).
	if s := param[1:]; s != "" && (s[0] >= '0' && s[0] <= '9' || s[0] == '+' || s[0] == '-') {
		if k, err := strconv.Atoi(s); err == nil && k >= 1 && k <= len(args) {
			binds = append(binds, args[k-1])
		}
	}
	for _, v := range args {
		if na, ok := v.(sql.NamedArg); ok && len(param) > 1 && strings.EqualFold(na.Name, param[1:]) {
			binds = append(binds, v)
		}
	}
	for _, v := range binds {
		if na, ok := v.(sql.NamedArg); ok {
			v = na.Value
		}
		if v, err := driver.DefaultParameterConverter.ConvertValue(v); err != nil || v != nil {
			return false
		}
	}
	return len(binds) > 0
}

// mutation holds deliberate bugs, off unless a build tag plants one
// (mutation_*.go; scripts/mutations.sh runs the simulator on each), to
// show that the simulator's invariants catch them.
var mutation struct {
	dropConflicts bool // conflicts found by a replay are not recorded
	replayPushed  bool // a replay also applies the last change the server already has
	splitTxns     bool // a push batch ends after its limit even inside a transaction
	// blindDeletes: a delete of a row another client changed is no
	// conflict at replay (syncactor's twin drops the push guard).
	blindDeletes   bool
	falseConflicts bool // a replayed update of a row that is there is an update-deleted conflict
	// blindAddedColumns: a replayed delete ignores the columns it does not
	// know (internal/change's twin drops them from the push guard).
	blindAddedColumns bool
	// unanchoredWAL: a pull records an empty WAL as its position before
	// T1 instead of anchoring it in a generation with a durable commit.
	unanchoredWAL bool
	// copiedUnanchored: a pull on a WAL a checkpoint copied whole takes
	// its end as Before, unanchored, though T1 restarts the WAL.
	copiedUnanchored bool
	// unsyncedAnchor: a SyncNormal pull takes a WAL with frames as its
	// anchor, unsynced (the bug 40176c9 fixed).
	unsyncedAnchor bool
	// unsyncedPush: a SyncNormal push sends local commits that may not be
	// on disk (the bug 7745b98 fixed).
	unsyncedPush bool
	// unsyncedLocalWAL: under SyncNormal, the record of a WAL
	// generation's first local commit is written before that commit is
	// on disk (recordLocalWAL).
	unsyncedLocalWAL bool
}
