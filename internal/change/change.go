package change

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Op is the kind of a change. The row operations use the values of Turso's
// CDC change_type column.
type Op int8

const (
	Delete Op = -1
	Update Op = 0
	Insert Op = 1
	Schema Op = 2
)

func (o Op) String() string {
	switch o {
	case Delete:
		return "delete"
	case Update:
		return "update"
	case Insert:
		return "insert"
	case Schema:
		return "schema"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

func (o Op) valid() bool { return o >= Delete && o <= Schema }

// Change is one captured row change or schema change.
type Change struct {
	ID  int64 // local change id (assigned by the capture table; not part of Encode)
	Txn int64 // id of the first change of the local transaction (not part of Encode)
	Op  Op
	// Table is the table name; for Schema, the object's table or name
	// (informational only).
	Table string

	// Row changes.

	// Columns are the names of the table's stored, non-generated columns,
	// in table order, at capture time.
	Columns []string
	// PK holds indexes into Columns of the declared PRIMARY KEY, in key
	// order; empty means the table has no declared key.
	PK []int
	// RowidAlias reports that the key is a single INTEGER PRIMARY KEY
	// column, an alias of the rowid.
	RowidAlias bool
	// KeyAssigned reports an Insert whose rowid alias key SQLite chose (the
	// statement named no value for it): on a collision with another
	// replica's row the key may move (see the conflict rules).
	KeyAssigned        bool
	OldRowid, NewRowid int64
	// Before (Update, Delete) and After (Insert, Update) are the row images,
	// aligned with Columns. Each value is nil, int64, float64, string or
	// []byte.
	Before, After []any

	// Schema changes.

	// SQL is the statement to replay: already idempotent (CREATE ... IF NOT
	// EXISTS, DROP ... IF EXISTS) or an ALTER TABLE.
	SQL string
}

// Validate reports whether c is consistent enough to generate correct SQL
// from: a known Op; for a schema change, non-blank SQL; for a row change, a
// table name, distinct column names, primary key indexes in range and
// distinct, images present exactly for the op and as long as Columns, and
// only the five supported value types.
func (c *Change) Validate() error {
	if !c.Op.valid() {
		return fmt.Errorf("change: invalid op %d", int(c.Op))
	}
	if c.Op == Schema {
		if blank(c.SQL) {
			return errors.New("change: schema change without SQL")
		}
		return nil
	}
	if c.Table == "" {
		return fmt.Errorf("change: %v without a table name", c.Op)
	}
	n := len(c.Columns)
	if n == 0 {
		return fmt.Errorf("change: %v on %q without columns", c.Op, c.Table)
	}
	seen := make(map[string]bool, n)
	for _, name := range c.Columns {
		k := foldASCII(name)
		if seen[k] {
			return fmt.Errorf("change: %v on %q: duplicate column %q", c.Op, c.Table, name)
		}
		seen[k] = true
	}
	inKey := make([]bool, n)
	for _, i := range c.PK {
		if i < 0 || i >= n {
			return fmt.Errorf("change: %v on %q: primary key index %d out of range [0,%d)", c.Op, c.Table, i, n)
		}
		if inKey[i] {
			return fmt.Errorf("change: %v on %q: column %q twice in the primary key", c.Op, c.Table, c.Columns[i])
		}
		inKey[i] = true
	}
	if c.RowidAlias && len(c.PK) != 1 {
		return fmt.Errorf("change: %v on %q: rowid alias needs a one-column primary key, have %d", c.Op, c.Table, len(c.PK))
	}
	needBefore := c.Op == Update || c.Op == Delete
	needAfter := c.Op == Update || c.Op == Insert
	if err := c.checkImage("before", c.Before, needBefore); err != nil {
		return err
	}
	return c.checkImage("after", c.After, needAfter)
}

func (c *Change) checkImage(name string, img []any, need bool) error {
	if !need {
		if len(img) != 0 {
			return fmt.Errorf("change: %v on %q has a %s image", c.Op, c.Table, name)
		}
		return nil
	}
	if len(img) != len(c.Columns) {
		return fmt.Errorf("change: %v on %q: %s image has %d values for %d columns", c.Op, c.Table, name, len(img), len(c.Columns))
	}
	for i, v := range img {
		if err := checkValue(v); err != nil {
			return fmt.Errorf("change: %v on %q: %s value of column %q: %w", c.Op, c.Table, name, c.Columns[i], err)
		}
	}
	return nil
}

// checkValue accepts exactly SQLite's storage classes as Go types.
func checkValue(v any) error {
	switch v.(type) {
	case nil, int64, float64, string, []byte:
		return nil
	}
	return fmt.Errorf("unsupported value type %T (want nil, int64, float64, string or []byte)", v)
}

// sameValue reports whether a and b are the same SQLite value: same storage
// class and same content. Floats compare by bit pattern, so 0.0 and -0.0
// differ and a NaN equals itself; int64(1) and float64(1) differ. An empty
// BLOB equals any other empty BLOB, nil or not.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return false
}

// foldASCII lower-cases ASCII letters only, as SQLite does when it compares
// identifiers.
func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}

func blank(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			return false
		}
	}
	return true
}

// isSpace is SQLite's notion of white space in SQL text.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}
