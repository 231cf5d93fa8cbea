package server

import (
	"errors"
	"fmt"
	"strings"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/syncdb/syncdb/internal/sqlitex"
)

// The statement sandbox. Every connection that runs a client's SQL (the
// pipeline's writer connection, the query selector's connection) has it:
// SQLite itself, through an authorizer, refuses whatever could reach
// outside the database's rows and schema or change how the server keeps the
// database, whatever the SQL text looks like. On top of the authorizer:
// no attached databases at all (SQLITE_LIMIT_ATTACHED = 0), the defensive
// flag (no writes to the schema table, sqlite_dbpage or shadow tables, no
// schema_version writes), and a cap on the size of one value.
//
// Refused: creating, altering, dropping, writing, indexing or putting a
// trigger on anything named with syncdb's reserved prefix (_syncdb_,
// reservedPrefix), ATTACH and DETACH (and so VACUUM, which attaches its target),
// sqlite_dbpage, extension loading, virtual table modules other than the
// full-text and R-tree ones, and every PRAGMA but those in pragmaRules.
// Read-only sandboxes (the query selector) allow reading only.
//
// Connection state a client may still change (temporary objects, an open
// transaction, the PRAGMAs marked set in pragmaRules, last_insert_rowid) is
// put back by resetSession after each request.

// pragmaUse is what a client may do with a PRAGMA.
type pragmaUse int

const (
	pragmaRead pragmaUse = iota // only without a value: PRAGMA x, pragma_x()
	pragmaArg                   // with any argument: it names a table or index, or bounds a check
	pragmaSet                   // read and set; connection state that resetSession puts back, or database content
)

// pragmaRules lists the PRAGMAs clients may run: the read-only ones that
// ORMs and migration tools send to inspect a schema, and the few settings
// that are part of the database (user_version, application_id) or that
// resetSession restores after each request (foreign_keys,
// defer_foreign_keys). database_list is not here: it shows server paths.
var pragmaRules = map[string]pragmaUse{
	"table_info":         pragmaArg,
	"table_xinfo":        pragmaArg,
	"table_list":         pragmaArg,
	"index_list":         pragmaArg,
	"index_info":         pragmaArg,
	"index_xinfo":        pragmaArg,
	"foreign_key_list":   pragmaArg,
	"foreign_key_check":  pragmaArg,
	"integrity_check":    pragmaArg,
	"quick_check":        pragmaArg,
	"collation_list":     pragmaRead,
	"function_list":      pragmaRead,
	"module_list":        pragmaRead,
	"pragma_list":        pragmaRead,
	"compile_options":    pragmaRead,
	"schema_version":     pragmaRead,
	"data_version":       pragmaRead,
	"page_count":         pragmaRead,
	"page_size":          pragmaRead,
	"freelist_count":     pragmaRead,
	"encoding":           pragmaRead,
	"journal_mode":       pragmaRead,
	"auto_vacuum":        pragmaRead,
	"recursive_triggers": pragmaRead,
	"legacy_alter_table": pragmaRead,
	"user_version":       pragmaSet,
	"application_id":     pragmaSet,
	"foreign_keys":       pragmaSet,
	"defer_foreign_keys": pragmaSet,
}

// resetPragmas puts the settable connection PRAGMAs back to the values the
// server opens its connections with.
const resetPragmas = "PRAGMA foreign_keys = 0; PRAGMA defer_foreign_keys = 0"

// vtabModules are the virtual table modules a client may create tables
// with. The others (dbstat, sqlite_dbpage, json_each, ...) are eponymous
// or internal.
var vtabModules = map[string]bool{"fts3": true, "fts4": true, "fts5": true, "rtree": true, "rtree_i32": true, "geopoly": true}

// deniedFunctions are SQL functions no client may call.
var deniedFunctions = map[string]bool{"load_extension": true, "fts3_tokenizer": true}

// maxAttached is 0: no ATTACH, whatever the authorizer says.
const maxAttached = 0

// reservedPrefix starts the names of the tables a replica keeps for
// itself inside its database file (dbactor's _syncdb_local,
// _syncdb_changes, ...). A pull overwrites the replica's file with the
// server's pages, so such a table on the server would reach every replica
// in the place of its own bookkeeping. Reading stays allowed: no
// legitimate server database has one, and reading one an older server
// let in shows what is there without changing it.
const reservedPrefix = "_syncdb_"

// reserved reports whether name starts with reservedPrefix; SQLite's
// names are ASCII case-insensitive.
func reserved(name string) bool {
	return len(name) >= len(reservedPrefix) && strings.EqualFold(name[:len(reservedPrefix)], reservedPrefix)
}

// ErrRefused wraps the error of a statement the sandbox refused.
var ErrRefused = errors.New("not allowed on this server")

// sandbox is the authorizer of one connection.
type sandbox struct {
	readOnly bool
	// readOnlyTx: inside a READONLY transaction (a Hrana stream's): only
	// reading and ending the transaction are allowed.
	readOnlyTx bool
	refused    string // what the authorizer denied in the statement being compiled ("" = nothing)
	selects    int    // SELECT actions seen (the query selector needs one)
	// sql is the text being compiled, set by the executor: the authorizer
	// is not told the new name of an ALTER TABLE ... RENAME.
	sql string
}

// newSandbox installs a sandbox on c. maxValue caps the size of one string
// or blob (SQLITE_LIMIT_LENGTH). Remove it with c.SetAuthorizer(nil)
// before the connection closes.
func newSandbox(c *sqlitex.Conn, readOnly bool, maxValue int) (*sandbox, error) {
	sb := &sandbox{readOnly: readOnly}
	c.SetLimit(sqlite3.SQLITE_LIMIT_ATTACHED, maxAttached)
	if got := c.SetLimit(sqlite3.SQLITE_LIMIT_ATTACHED, -1); got != maxAttached {
		return nil, fmt.Errorf("sandbox: attach limit is %d", got)
	}
	if maxValue > 0 {
		c.SetLimit(sqlite3.SQLITE_LIMIT_LENGTH, maxValue)
	}
	if err := c.SetDefensive(true); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := c.SetAuthorizer(sb.authorize); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return sb, nil
}

func (sb *sandbox) deny(format string, args ...any) sqlitex.AuthResult {
	sb.refused = fmt.Sprintf(format, args...)
	return sqlitex.AuthDeny
}

// authorize is the policy, action by action.
func (sb *sandbox) authorize(a sqlitex.Action) sqlitex.AuthResult {
	if db := actionDB(a); db != "" && db != "main" && db != "temp" {
		return sb.deny("using database %q", db)
	}
	switch a.Code {
	case sqlite3.SQLITE_SELECT:
		sb.selects++
		return sqlitex.AuthOK
	case sqlite3.SQLITE_READ:
		if strings.EqualFold(a.Arg1, "sqlite_dbpage") {
			return sb.deny("reading sqlite_dbpage")
		}
		return sqlitex.AuthOK
	case sqlite3.SQLITE_RECURSIVE:
		return sqlitex.AuthOK
	case sqlite3.SQLITE_FUNCTION:
		if deniedFunctions[strings.ToLower(a.Arg2)] {
			return sb.deny("the function %s()", a.Arg2)
		}
		return sqlitex.AuthOK
	case sqlite3.SQLITE_PRAGMA:
		return sb.pragma(a)
	case sqlite3.SQLITE_ATTACH:
		return sb.deny("ATTACH (and VACUUM, which attaches its target)")
	case sqlite3.SQLITE_DETACH:
		return sb.deny("DETACH")
	}
	if sb.readOnlyTx && (a.Code == sqlite3.SQLITE_TRANSACTION || a.Code == sqlite3.SQLITE_SAVEPOINT) {
		return sqlitex.AuthOK
	}
	if sb.readOnly || sb.readOnlyTx {
		return sb.deny("anything but reading (a read-only statement is required)")
	}
	if a.Code == sqlite3.SQLITE_ALTER_TABLE && strings.Contains(strings.ToLower(sb.sql), reservedPrefix) {
		// Possibly a rename to a reserved name: refused whenever the text
		// names the prefix at all (SQLite has no escapes in identifiers).
		return sb.deny("ALTER TABLE in SQL text naming %q: names starting with %q are reserved for syncdb's replicas", reservedPrefix, reservedPrefix)
	}
	if name, ok := reservedTarget(a); ok {
		return sb.deny("%s %q: names starting with %q are reserved for syncdb's replicas", actionNames[a.Code], name, reservedPrefix)
	}
	switch a.Code {
	case sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE:
		if strings.EqualFold(a.Arg1, "sqlite_dbpage") {
			return sb.deny("writing sqlite_dbpage")
		}
	case sqlite3.SQLITE_CREATE_VTABLE:
		if !vtabModules[strings.ToLower(a.Arg2)] {
			return sb.deny("virtual tables of module %q (allowed: fts3, fts4, fts5, rtree, rtree_i32, geopoly)", a.Arg2)
		}
	}
	return sqlitex.AuthOK
}

// actionDB is the database an action is about. SQLite passes it as the
// authorizer's 5th argument (a.DB) for every action but ALTER TABLE, whose
// database is its 3rd (Arg1), and whose 5th is the column of a DROP COLUMN
// (sqlite3AlterDropColumn) or of an ALTER COLUMN ... SET NOT NULL / DROP
// NOT NULL, NULL otherwise.
//
// A decision, then: every form of ALTER TABLE this SQLite has (3.54.1,
// modernc v1.61.1) is allowed on main and temp, under the same rules as
// any other schema change (a write token, no READONLY transaction, no
// reserved name): ADD/DROP/RENAME COLUMN, RENAME TO, ALTER COLUMN SET/DROP
// NOT NULL (which were refused, as `using database "COLUMN"`, until
// actionDB), ADD/DROP CONSTRAINT. Besides their ALTER_TABLE action they
// ask only for SQLITE_FUNCTION (sqlite_fail, sqlite_add_constraint,
// sqlite_drop_constraint, sqlite_find_constraint), SELECT, and READ of the
// table's column and of sqlite_master/sqlite_temp_master (probed): SET NOT
// NULL reads the table's rows and fails if one holds a NULL there. The
// schema change reaches replicas as any other does (WAL frames of
// sqlite_schema).
func actionDB(a sqlitex.Action) string {
	if a.Code == sqlite3.SQLITE_ALTER_TABLE {
		return a.Arg1
	}
	return a.DB
}

// actionNames names the actions reservedTarget checks, for the refusal.
var actionNames = map[int]string{
	sqlite3.SQLITE_CREATE_INDEX: "creating index", sqlite3.SQLITE_CREATE_TEMP_INDEX: "creating index",
	sqlite3.SQLITE_CREATE_TABLE: "creating table", sqlite3.SQLITE_CREATE_TEMP_TABLE: "creating table",
	sqlite3.SQLITE_CREATE_TRIGGER: "creating trigger", sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "creating trigger",
	sqlite3.SQLITE_CREATE_VIEW: "creating view", sqlite3.SQLITE_CREATE_TEMP_VIEW: "creating view",
	sqlite3.SQLITE_CREATE_VTABLE: "creating virtual table",
	sqlite3.SQLITE_DROP_INDEX:    "dropping index", sqlite3.SQLITE_DROP_TEMP_INDEX: "dropping index",
	sqlite3.SQLITE_DROP_TABLE: "dropping table", sqlite3.SQLITE_DROP_TEMP_TABLE: "dropping table",
	sqlite3.SQLITE_DROP_TRIGGER: "dropping trigger", sqlite3.SQLITE_DROP_TEMP_TRIGGER: "dropping trigger",
	sqlite3.SQLITE_DROP_VIEW: "dropping view", sqlite3.SQLITE_DROP_TEMP_VIEW: "dropping view",
	sqlite3.SQLITE_DROP_VTABLE: "dropping virtual table",
	sqlite3.SQLITE_INSERT:      "writing", sqlite3.SQLITE_UPDATE: "writing", sqlite3.SQLITE_DELETE: "writing",
	sqlite3.SQLITE_ALTER_TABLE: "altering table", sqlite3.SQLITE_REINDEX: "reindexing", sqlite3.SQLITE_ANALYZE: "analyzing",
}

// reservedTarget returns the reserved name a changing action is about, if
// any: the object (index, table, trigger, view) and the table it is on.
// A virtual table's shadow tables are named after it plus "_suffix"
// (fts5's x_data), so a virtual table named "_syncdb" is reserved too.
// Savepoints are not objects: the server's own _syncdb_returning is one.
func reservedTarget(a sqlitex.Action) (string, bool) {
	if _, ok := actionNames[a.Code]; !ok {
		return "", false
	}
	names := []string{a.Arg1, a.Arg2}
	switch a.Code {
	case sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE:
		names = names[:1] // Arg2 of an UPDATE is a column
	case sqlite3.SQLITE_ALTER_TABLE:
		names = names[1:] // Arg1 is the database
	case sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE:
		names = []string{a.Arg1 + "_"} // Arg2 is the module
	}
	for _, n := range names {
		if reserved(n) {
			return strings.TrimSuffix(n, "_"), true
		}
	}
	return "", false
}

func (sb *sandbox) pragma(a sqlitex.Action) sqlitex.AuthResult {
	name := strings.ToLower(a.Arg1)
	use, ok := pragmaRules[name]
	switch {
	case !ok:
		return sb.deny("PRAGMA %s (only schema inspection and foreign_keys, defer_foreign_keys, user_version, application_id are allowed)", name)
	case use == pragmaRead && a.HasArg2:
		return sb.deny("setting PRAGMA %s", name)
	case use == pragmaSet && a.HasArg2 && sb.readOnly:
		return sb.deny("setting PRAGMA %s in a read-only statement", name)
	}
	return sqlitex.AuthOK
}

// refusal rewrites the error of a statement whose action the authorizer
// denied into one that names what was refused. SQLite reports most such
// errors as SQLITE_AUTH, but not a denied function: resolve.c words that
// one itself ("not authorized to use function: X") and its code becomes
// SQLITE_ERROR. So the sandbox's own record decides, not the message:
// refused, set by deny and cleared before each statement is compiled.
func (sb *sandbox) refusal(err error) error {
	var se *sqlitex.Error
	if !errors.As(err, &se) {
		return err
	}
	if code := se.Code & 0xff; code != sqlite3.SQLITE_AUTH && (code != sqlite3.SQLITE_ERROR || sb.refused == "") {
		return err
	}
	what := sb.refused
	if what == "" {
		what = se.Msg
	}
	return &sqlitex.Error{Code: sqlite3.SQLITE_AUTH, Msg: fmt.Sprintf("%v: %s", ErrRefused, what)}
}

// resetSession puts the client connection back into the state every
// request starts from: no transaction, no temporary objects, the settable
// PRAGMAs at their defaults, last_insert_rowid 0.
func resetSession(c *sqlitex.Conn) error {
	var errs []error
	if !c.Autocommit() {
		errs = append(errs, c.Exec("ROLLBACK"))
	}
	rows, err := c.Query("SELECT type, name FROM temp.sqlite_schema WHERE type IN ('trigger', 'view', 'table') ORDER BY type = 'table', type = 'view'")
	errs = append(errs, err)
	for _, r := range rows {
		kind, name := r[0].(string), r[1].(string)
		// A dropped table takes its triggers along; IF EXISTS covers them.
		errs = append(errs, c.Exec(fmt.Sprintf("DROP %s IF EXISTS temp.%s", strings.ToUpper(kind), quoteIdent(name))))
	}
	errs = append(errs, c.Exec(resetPragmas))
	c.SetLastInsertRowid(0)
	return errors.Join(errs...)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
