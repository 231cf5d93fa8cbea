package dbactor

import (
	"fmt"
	"strings"

	"modernc.org/sqlite"
)

// protectedName reports the tables user statements must not change:
// syncdb's own bookkeeping, the push high-water table (the server's record
// of what each client pushed) and SQLite's raw page table, through which
// the synced base is written.
func protectedName(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "_syncdb_") || l == "turso_sync_last_change_id" || l == "sqlite_dbpage"
}

// mentionsProtected reports SQL text that names a protected table (a
// trigger or view body, whose statements the authorizer sees only when
// they run).
func mentionsProtected(sql string) bool {
	l := strings.ToLower(sql)
	return strings.Contains(l, "_syncdb_") || strings.Contains(l, "turso_sync_last_change_id") || strings.Contains(l, "sqlite_dbpage")
}

// readsOnly reports the pragmas that take an argument only to say what to
// read: they change nothing on the connection. Any other pragma with an
// argument (or a value) may set something a new connection would not have
// (see refreshWriter).
func readsOnly(pragma string) bool {
	switch strings.ToLower(pragma) {
	case "table_info", "table_xinfo", "table_list", "index_info", "index_xinfo", "index_list",
		"foreign_key_list", "foreign_key_check", "integrity_check", "quick_check":
		return true
	}
	return false
}

// authorize is the writer connection's SQLite authorizer: while a user
// statement is prepared (a.user), or inside any trigger or view, it denies
// changes to protected tables. syncdb's own statements pass.
func (a *dbActor) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, _, triggerOrView string) sqlite.AuthorizerReturnCode {
	if action == sqlite.AuthPragma && a.user && arg2 != "" && !readsOnly(arg1) {
		a.pragmaSet = true // the next pull replaces the connection
	}
	var names []string
	switch action {
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete, sqlite.AuthDropTable, sqlite.AuthCreateTable,
		sqlite.AuthCreateView, sqlite.AuthDropView:
		names = []string{arg1}
	case sqlite.AuthCreateIndex, sqlite.AuthDropIndex, sqlite.AuthCreateTrigger, sqlite.AuthDropTrigger:
		names = []string{arg1, arg2} // the object and its table
	case sqlite.AuthAlterTable:
		names = []string{arg2} // arg1 is the database
	default:
		return sqlite.AuthorizerOK
	}
	if !a.user && triggerOrView == "" {
		return sqlite.AuthorizerOK
	}
	for _, n := range names {
		if protectedName(n) {
			a.denied = n
			return sqlite.AuthorizerDeny
		}
	}
	return sqlite.AuthorizerOK
}

// refusedProtected is the error of a user statement that tried to change a
// protected table. It is a capture error: the transaction cannot commit.
func refusedProtected(name string) error {
	return captureError{fmt.Errorf("%w: %s is syncdb's own table (reading it is fine; changing it would lose or corrupt synced changes)",
		ErrUnsupportedStatement, name)}
}
