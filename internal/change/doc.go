// Package change is the vocabulary shared by change capture, push and local
// replay: the record of one captured change, its binary encoding, and the SQL
// statements that apply the change to another database with the same schema.
// It does no I/O.
//
// # Changes
//
// A Change is one row change (Insert, Update, Delete) or one schema change
// (Schema). The client captures row changes with SQLite's preupdate hook, in
// the same transaction as the write that caused them. A row change carries
// the table name, the names of the table's stored, non-generated columns at
// capture time, which of them form the declared PRIMARY KEY, the old and new
// rowids, and the before and/or after image of the row. Values are exactly
// SQLite's five storage classes: nil (NULL), int64, float64, string (TEXT)
// and []byte (BLOB; an empty or nil []byte is an empty BLOB, never NULL). A
// schema change carries an SQL statement that is safe to run again: CREATE
// ... IF NOT EXISTS, DROP ... IF EXISTS, or an ALTER TABLE (see
// CreateIfNotExists, DropIfExists and IsAddColumn).
//
// # Encoding
//
// Change.Encode produces a compact, self-delimiting binary record and Decode
// reads it back. The first byte is the format version (currently 1), so that
// the format can evolve while records written by an older client are still
// sitting in a capture table; Decode rejects versions it does not know. The
// layout of version 1 is:
//
//	version  byte  = 1
//	op       byte  = the Op as a two's complement int8
//	flags    byte  : bit 0 RowidAlias; bits 1..4 mark Columns, PK, Before,
//	                 After as non-nil; other bits must be zero
//	table    str
//	sql      str
//	oldRowid svarint
//	newRowid svarint
//	columns  [uvarint n, n × str]  if flag bit 1
//	pk       [uvarint n, n × svarint] if flag bit 2
//	before   [uvarint n, n × value] if flag bit 3
//	after    [uvarint n, n × value] if flag bit 4
//
//	str     = uvarint byte length, bytes
//	svarint = zig-zag varint (encoding/binary.PutVarint)
//	value   = tag byte, then: 0 NULL (nothing), 1 INTEGER (svarint),
//	          2 REAL (8 bytes, IEEE 754 bits, little endian), 3 TEXT (str),
//	          4 BLOB (str)
//
// Varints must be minimal and nothing may follow the last field, so the
// encoding is canonical: Encode(Decode(b)) == b whenever Decode accepts b.
// ID and Txn are not encoded; they are the capture table's business.
// Decode never panics, allocates in proportion to its input (no count may
// exceed the bytes left), and every error it returns wraps ErrCorrupt.
//
// # Conflict semantics of the generated SQL
//
// Statements turns a change into SQL in the shapes of Turso's sync engine, so
// that clients of both kinds sharing one database see the same
// last-writer-wins (LWW) behaviour where two changes do not conflict:
//
//   - Insert is an upsert by primary key that writes every column.
//   - Update sets only the columns whose value changed, by primary key: the
//     last writer wins per column, and concurrent changes to other columns of
//     the same row survive.
//   - Delete deletes by primary key.
//
// Guard is the precondition a push checks before a change's statements
// (the replay of a pull checks the same ones locally): an Insert must not
// meet another row with its key, an Update must find its row, a Delete
// must find its row as it was or not at all (not at all while the table
// has a column the Delete does not know: SQL cannot name that column, the
// replay compares it with its default). A change that fails it met a
// change it never saw (a conflict) and is not applied by the statements'
// last-writer-wins alone.
//
// Identity predicates use "IS ?", never "= ?", so that keys with NULL
// components (possible in rowid tables whose PRIMARY KEY is not an INTEGER
// PRIMARY KEY) match. Tables without a declared primary key are keyed by
// rowid; that is only meaningful for replay into the same local database
// lineage, never for push, because rowids are not stable across databases.
package change
