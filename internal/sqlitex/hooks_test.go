package sqlitex

import (
	"errors"
	"testing"

	sqlite3 "modernc.org/sqlite/lib"
)

// The authorizer sees every action with its exact arguments (a PRAGMA
// without a value has a NULL Arg2, with an empty string an empty one), a denial fails
// the statement with SQLITE_AUTH, and removing it restores everything.
// The WAL hook sees every commit and nothing else.
func TestAuthorizerAndWALHook(t *testing.T) {
	db, _ := openDB(t, "_pragma=journal_mode(WAL)")
	run(t, db, func(c *Conn) error {
		var seen []Action
		if err := c.SetAuthorizer(func(a Action) AuthResult {
			seen = append(seen, a)
			if a.Code == sqlite3.SQLITE_PRAGMA && a.Arg1 == "user_version" && a.HasArg2 {
				return AuthDeny
			}
			return AuthOK
		}); err != nil {
			return err
		}
		commits := 0
		c.SetWALHook(func(db string, frames int) {
			if db == "main" && frames > 0 {
				commits++
			}
		})
		for _, q := range []string{"CREATE TABLE t(a)", "PRAGMA user_version", "INSERT INTO t VALUES(1)", "SELECT * FROM t"} {
			if err := c.Exec(q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
		for _, q := range []string{"PRAGMA user_version = 1", "PRAGMA user_version = ''"} {
			if err := c.Exec(q); !errors.Is(err, &Error{Code: sqlite3.SQLITE_AUTH}) {
				t.Errorf("%s: %v, want SQLITE_AUTH", q, err)
			}
		}
		var reads, pragmaNull, pragmaEmpty bool
		for _, a := range seen {
			switch {
			case a.Code == sqlite3.SQLITE_READ && a.Arg1 == "t" && a.Arg2 == "a" && a.DB == "main":
				reads = true
			case a.Code == sqlite3.SQLITE_PRAGMA && a.Arg1 == "user_version" && !a.HasArg2:
				pragmaNull = true
			case a.Code == sqlite3.SQLITE_PRAGMA && a.Arg1 == "user_version" && a.HasArg2 && a.Arg2 == "":
				pragmaEmpty = true
			}
		}
		if !reads || !pragmaNull || !pragmaEmpty {
			t.Errorf("actions seen: read %v, pragma without value %v, pragma with '' %v", reads, pragmaNull, pragmaEmpty)
		}
		if commits != 2 {
			t.Errorf("WAL hook saw %d commits, want 2", commits)
		}
		if err := errors.Join(c.SetAuthorizer(nil), c.SetWALHook(nil)); err != nil {
			return err
		}
		if err := c.Exec("PRAGMA user_version = 1; INSERT INTO t VALUES(2)"); err != nil {
			t.Errorf("after removing the authorizer: %v", err)
		}
		if commits != 2 {
			t.Errorf("a removed WAL hook was called")
		}
		hooks.RLock()
		defer hooks.RUnlock()
		if len(hooks.auth) != 0 || len(hooks.wal) != 0 {
			t.Errorf("hooks left registered: %d %d", len(hooks.auth), len(hooks.wal))
		}
		return nil
	})
}
