package sqlitex

import (
	"errors"
	"fmt"
	"reflect"

	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// NotStored is PreUpdate's value for a column its row does not hold (a
// VIRTUAL generated column, computed when read): never a column's data.
var NotStored = notStored{}

type notStored struct{}

// PreUpdate reads the old or new row of a preupdate hook call exactly.
//
// modernc's own SQLitePreUpdateData.Old/New lose information: an empty blob
// comes back as nil (indistinguishable from NULL) and text is cut at its
// first NUL byte. PreUpdate reads the values with their lengths, like
// Stmt.Column. Call it only inside the hook, with the data the hook got.
//
// It returns Count() values, one per column of the table (cid order):
// int64, float64, string, []byte (never nil), nil for NULL, or NotStored
// for a VIRTUAL generated column.
func PreUpdate(d *sqlite.SQLitePreUpdateData, newRow bool) ([]any, error) {
	v := reflect.ValueOf(d).Elem()
	ftls, fcsr := fieldByName(v, "tls"), fieldByName(v, "pCsr")
	if !ftls.IsValid() || ftls.Type() != tlsType || !fcsr.IsValid() || fcsr.Kind() != reflect.Uintptr {
		return nil, errors.New("sqlitex: SQLitePreUpdateData has no fields tls *libc.TLS and pCsr uintptr: " +
			"modernc.org/sqlite internals changed, update sqlitex")
	}
	tls := (*libc.TLS)(ftls.UnsafePointer())
	csr := uintptr(fcsr.Uint())
	n := int(sqlite3.Xsqlite3_preupdate_count(tls, csr))
	pp := libc.Xmalloc(tls, 8)
	if pp == 0 {
		return nil, errors.New("sqlitex: out of memory")
	}
	defer libc.Xfree(tls, pp)
	out := make([]any, n)
	for i := 0; i < n; i++ {
		var rc int32
		if newRow {
			rc = sqlite3.Xsqlite3_preupdate_new(tls, csr, int32(i), pp)
		} else {
			rc = sqlite3.Xsqlite3_preupdate_old(tls, csr, int32(i), pp)
		}
		if rc == sqlite3.SQLITE_RANGE {
			// The hook's columns are the table's, but its record holds the
			// stored ones only: SQLite refuses a virtual column's index.
			out[i] = NotStored
			continue
		}
		if rc != sqlite3.SQLITE_OK {
			return nil, fmt.Errorf("sqlitex: preupdate value %d: result code %d", i, rc)
		}
		out[i] = valueOf(tls, *cptr[uintptr](pp))
	}
	return out, nil
}

// valueOf converts an sqlite3_value exactly.
func valueOf(tls *libc.TLS, p uintptr) any {
	switch sqlite3.Xsqlite3_value_type(tls, p) {
	case sqlite3.SQLITE_INTEGER:
		return sqlite3.Xsqlite3_value_int64(tls, p)
	case sqlite3.SQLITE_FLOAT:
		return sqlite3.Xsqlite3_value_double(tls, p)
	case sqlite3.SQLITE_TEXT:
		z := sqlite3.Xsqlite3_value_text(tls, p)
		n := int(sqlite3.Xsqlite3_value_bytes(tls, p))
		if z == 0 || n == 0 {
			return ""
		}
		return string(cbytes(z, n))
	case sqlite3.SQLITE_BLOB:
		z := sqlite3.Xsqlite3_value_blob(tls, p)
		n := int(sqlite3.Xsqlite3_value_bytes(tls, p))
		b := make([]byte, n)
		if n > 0 {
			copy(b, cbytes(z, n))
		}
		return b
	}
	return nil
}
