package change

import (
	"fmt"
	"strings"
)

// Stmt is one SQL statement with positional arguments.
type Stmt struct {
	SQL  string
	Args []any
	// Tolerated, when non-empty, marks an expected failure: an error whose
	// message contains this substring must be ignored (e.g. "duplicate
	// column name" for ALTER TABLE ... ADD COLUMN replayed on a database
	// that already has the column).
	Tolerated string
}

// TolerateDuplicateColumn is the Tolerated substring of an ADD COLUMN
// statement: SQLite's message when the column already exists. Matched as
// text on purpose: SQLite has no code for it (plain SQLITE_ERROR), and
// from a server it arrives as a Hrana step error, a message whose code
// says no more (SQLITE_UNKNOWN).
const TolerateDuplicateColumn = "duplicate column name"

// Statements returns the SQL that applies c to another database with the same
// schema, to be run in order inside one transaction. It returns no
// statements for an Update that changed no value, and an error for a change
// that fails Validate or cannot be applied (a table without a declared
// primary key whose rowid names are all shadowed by columns).
//
// Arguments are the change's values. An empty BLOB is always passed as a
// non-nil []byte{}, because some drivers (modernc.org/sqlite among them) bind
// a nil []byte as NULL.
func Statements(c Change) ([]Stmt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Op == Schema {
		st := Stmt{SQL: c.SQL}
		if IsAddColumn(c.SQL) {
			st.Tolerated = TolerateDuplicateColumn
		}
		return []Stmt{st}, nil
	}
	if len(c.PK) == 0 {
		return rowidStatements(&c)
	}
	before, after, err := keyedImages(&c)
	if err != nil {
		return nil, err
	}
	switch c.Op {
	case Insert:
		return insertByKey(&c, after), nil
	case Update:
		return updateByKey(&c, before, after), nil
	default: // Delete
		var b strings.Builder
		b.WriteString("DELETE FROM ")
		b.WriteString(QuoteIdent(c.Table))
		args := whereKey(&b, &c, before, nil)
		return []Stmt{{SQL: b.String(), Args: args}}, nil
	}
}

// keyedImages returns the images with empty BLOBs made non-nil and, for a
// rowid alias, a NULL key value replaced by the rowid (the column can never
// hold NULL; a NULL there can only stand for the rowid). A non-NULL alias
// value must be the rowid itself.
func keyedImages(c *Change) (before, after []any, err error) {
	before = args(c.Before)
	after = args(c.After)
	if !c.RowidAlias {
		return before, after, nil
	}
	k := c.PK[0]
	fix := func(img []any, rowid int64, name string) error {
		if img == nil {
			return nil
		}
		switch v := img[k].(type) {
		case nil:
			img[k] = rowid
		case int64:
			if v != rowid {
				return fmt.Errorf("change: %v on %q: rowid alias %q is %d in the %s image but the rowid is %d", c.Op, c.Table, c.Columns[k], v, name, rowid)
			}
		default:
			return fmt.Errorf("change: %v on %q: rowid alias %q holds a %T in the %s image", c.Op, c.Table, c.Columns[k], v, name)
		}
		return nil
	}
	if err := fix(before, c.OldRowid, "before"); err != nil {
		return nil, nil, err
	}
	if err := fix(after, c.NewRowid, "after"); err != nil {
		return nil, nil, err
	}
	return before, after, nil
}

// args copies img as statement arguments, making empty BLOBs non-nil.
func args(img []any) []any {
	if img == nil {
		return nil
	}
	out := make([]any, len(img))
	for i, v := range img {
		if b, ok := v.([]byte); ok && b == nil {
			v = []byte{}
		}
		out[i] = v
	}
	return out
}

// hasNullKey reports whether a key value in img is NULL. SQLite's upsert
// never detects a conflict on a NULL key, so such rows need other shapes.
func hasNullKey(c *Change, img []any) bool {
	for _, k := range c.PK {
		if img[k] == nil {
			return true
		}
	}
	return false
}

// insertByKey: an upsert writing every column (row-level last writer wins),
// or, for a key with a NULL component, a delete of the key followed by a
// plain insert.
func insertByKey(c *Change, after []any) []Stmt {
	if hasNullKey(c, after) {
		var d strings.Builder
		d.WriteString("DELETE FROM ")
		d.WriteString(QuoteIdent(c.Table))
		dargs := whereKey(&d, c, after, nil)
		return []Stmt{{SQL: d.String(), Args: dargs}, {SQL: insertValues(c), Args: after}}
	}
	var b strings.Builder
	b.WriteString(insertValues(c))
	b.WriteString(" ON CONFLICT(")
	for i, k := range c.PK {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(QuoteIdent(c.Columns[k]))
	}
	b.WriteString(") DO UPDATE SET ")
	for i, col := range c.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		q := QuoteIdent(col)
		b.WriteString(q)
		b.WriteString(" = excluded.")
		b.WriteString(q)
	}
	return []Stmt{{SQL: b.String(), Args: after}}
}

// updateByKey: an UPDATE of the changed columns only (column-level last
// writer wins). A row deleted elsewhere meanwhile is a conflict, found by
// Guard or the replay's preconditions, not brought back.
func updateByKey(c *Change, before, after []any) []Stmt {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(QuoteIdent(c.Table))
	b.WriteString(" SET ")
	var sargs []any
	for i, col := range c.Columns {
		if sameValue(before[i], after[i]) {
			continue
		}
		if sargs != nil {
			b.WriteString(", ")
		}
		b.WriteString(QuoteIdent(col))
		b.WriteString(" = ?")
		sargs = append(sargs, after[i])
	}
	if sargs == nil {
		return nil
	}
	sargs = whereKey(&b, c, before, sargs)
	return []Stmt{{SQL: b.String(), Args: sargs}}
}

// whereKey appends ` WHERE "k1" IS ? AND ...` and the key values of img to
// args.
func whereKey(b *strings.Builder, c *Change, img []any, args []any) []any {
	b.WriteString(" WHERE ")
	for i, k := range c.PK {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(QuoteIdent(c.Columns[k]))
		b.WriteString(" IS ?")
		args = append(args, img[k])
	}
	return args
}

// insertValues returns `INSERT INTO "t"("c1",...) VALUES (?,...)`.
func insertValues(c *Change) string {
	return "INSERT INTO " + QuoteIdent(c.Table) + columnList(c) + " VALUES (" + placeholders(len(c.Columns)) + ")"
}

// Guard returns a read that fails (SQLite's json() of a non-JSON text) when
// the row c expects on the other side is not there: for an Insert, a row
// with the key that differs from c's; for an Update, no row with the old
// key; for a Delete, a row with the key that differs from c's before image,
// or any row with the key while the table has a column c does not know.
// A push runs it before c's statements, so that a change made without
// knowing of another client's change to the same row is refused instead
// of overwriting it. ok is false for changes without one (schema changes,
// tables without a key).
//
// An Insert's upsert and an Update write only c's columns, so a column
// added elsewhere after c was captured keeps its value and is not
// compared. A Delete would drop it, and SQL cannot name a column the
// guard does not know, to compare it with its default: the guard refuses
// such a delete, and the pull that follows a refused push replays it on
// the server's schema, where that comparison is made (and the delete is
// captured again with every column).
func Guard(c Change) (st Stmt, ok bool, err error) {
	if c.Op == Schema || len(c.PK) == 0 {
		return Stmt{}, false, nil
	}
	before, after, err := keyedImages(&c)
	if err != nil {
		return Stmt{}, false, err
	}
	var b strings.Builder
	var args []any
	b.WriteString("SELECT json(CASE WHEN ")
	switch c.Op {
	case Insert, Delete:
		img := after
		if c.Op == Delete {
			img = before
		}
		b.WriteString("NOT EXISTS (SELECT 1 FROM ")
		b.WriteString(QuoteIdent(c.Table))
		args = whereKey(&b, &c, img, args)
		b.WriteString(" AND (NOT (")
		args = sameRowCond(&b, &c, img, args)
		b.WriteString(")")
		if c.Op == Delete && !mutation.blindAddedColumns {
			b.WriteString(" OR ")
			args = unknownColumnCond(&b, &c, args)
		}
		b.WriteString("))")
	case Update:
		b.WriteString("EXISTS (SELECT 1 FROM ")
		b.WriteString(QuoteIdent(c.Table))
		args = whereKey(&b, &c, before, args)
		b.WriteString(")")
	}
	// The alias names the result column: otherwise the server answers
	// each guard step with the whole expression as its column's name.
	b.WriteString(" THEN '0' ELSE 'syncdb: conflict' END) AS guard")
	return Stmt{SQL: b.String(), Args: args}, true, nil
}

// unknownColumnCond appends a condition that holds while c's table has a
// stored column (pragma_table_xinfo's hidden 0: not generated) that is not
// one of c's columns, compared as SQLite compares names (ASCII case
// folded).
func unknownColumnCond(b *strings.Builder, c *Change, args []any) []any {
	b.WriteString("EXISTS (SELECT 1 FROM pragma_table_xinfo(?, 'main') WHERE hidden = 0 AND name COLLATE NOCASE NOT IN (")
	b.WriteString(placeholders(len(c.Columns)))
	b.WriteString("))")
	args = append(args, c.Table)
	for _, col := range c.Columns {
		args = append(args, col)
	}
	return args
}

// sameRowCond appends `"c1" IS ? AND ...` over every column of img. A TEXT
// value is sent as a BLOB of its bytes and cast back, because the JSON of
// the pipeline protocol cannot carry text that is not valid UTF-8 exactly.
func sameRowCond(b *strings.Builder, c *Change, img []any, args []any) []any {
	for i, col := range c.Columns {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(QuoteIdent(col))
		if s, ok := img[i].(string); ok {
			b.WriteString(" IS CAST(? AS TEXT)")
			args = append(args, []byte(s))
			continue
		}
		b.WriteString(" IS ?")
		args = append(args, img[i])
	}
	return args
}

// Key returns the primary key values of c's row: from the after image of
// an Insert, the before image otherwise (an Update's old key).
func Key(c Change) []any {
	img := c.Before
	if c.Op == Insert {
		img = c.After
	}
	if img == nil || len(c.PK) == 0 {
		return nil
	}
	k := make([]any, len(c.PK))
	for i, p := range c.PK {
		k[i] = img[p]
	}
	if c.RowidAlias && k[0] == nil {
		k[0] = map[bool]int64{true: c.NewRowid, false: c.OldRowid}[c.Op == Insert]
	}
	return k
}

func columnList(c *Change) string {
	var b strings.Builder
	b.WriteString("(")
	for i, col := range c.Columns {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(QuoteIdent(col))
	}
	b.WriteString(")")
	return b.String()
}

func placeholders(n int) string {
	if n == 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

// rowidStatements handles a table without a declared primary key: rows are
// identified by rowid, which is only meaningful when replaying into the same
// database lineage.
func rowidStatements(c *Change) ([]Stmt, error) {
	rowid, err := RowidName(c.Columns)
	if err != nil {
		return nil, fmt.Errorf("change: %v on %q: %w", c.Op, c.Table, err)
	}
	t := QuoteIdent(c.Table)
	switch c.Op {
	case Insert:
		var b strings.Builder
		b.WriteString("INSERT OR REPLACE INTO ")
		b.WriteString(t)
		b.WriteString("(")
		b.WriteString(rowid)
		for _, col := range c.Columns {
			b.WriteString(",")
			b.WriteString(QuoteIdent(col))
		}
		b.WriteString(") VALUES (")
		b.WriteString(placeholders(len(c.Columns) + 1))
		b.WriteString(")")
		return []Stmt{{SQL: b.String(), Args: append([]any{c.NewRowid}, args(c.After)...)}}, nil
	case Update:
		after := args(c.After)
		var b strings.Builder
		b.WriteString("UPDATE ")
		b.WriteString(t)
		b.WriteString(" SET ")
		var sargs []any
		for i, col := range c.Columns {
			if sameValue(c.Before[i], after[i]) {
				continue
			}
			if sargs != nil {
				b.WriteString(", ")
			}
			b.WriteString(QuoteIdent(col))
			b.WriteString(" = ?")
			sargs = append(sargs, after[i])
		}
		if c.OldRowid != c.NewRowid {
			if sargs != nil {
				b.WriteString(", ")
			}
			b.WriteString(rowid)
			b.WriteString(" = ?")
			sargs = append(sargs, c.NewRowid)
		}
		if sargs == nil {
			return nil, nil
		}
		b.WriteString(" WHERE ")
		b.WriteString(rowid)
		b.WriteString(" = ?")
		return []Stmt{{SQL: b.String(), Args: append(sargs, c.OldRowid)}}, nil
	default: // Delete
		return []Stmt{{SQL: "DELETE FROM " + t + " WHERE " + rowid + " = ?", Args: []any{c.OldRowid}}}, nil
	}
}

// RowidName returns the name by which SQL can reach the rowid of a table
// with the given columns: the first of rowid, _rowid_ and oid that is not
// also a column name (compared as SQLite does, ignoring ASCII case). It fails
// if all three are shadowed.
func RowidName(columns []string) (string, error) {
	for _, name := range [...]string{"rowid", "_rowid_", "oid"} {
		shadowed := false
		for _, col := range columns {
			if foldASCII(col) == name {
				shadowed = true
				break
			}
		}
		if !shadowed {
			return name, nil
		}
	}
	return "", fmt.Errorf("columns named rowid, _rowid_ and oid shadow the rowid")
}

// QuoteIdent returns name as an SQL identifier: in double quotes, with
// embedded double quotes doubled.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
