package dbactor

import (
	"testing"

	"modernc.org/sqlite"
)

// TestPragmaSetNoted: the authorizer notes a pragma a user statement sets
// (the next pull then replaces the writer connection, refreshWriter), not
// one that only reads, nor syncdb's own.
func TestPragmaSetNoted(t *testing.T) {
	for _, c := range []struct {
		user        bool
		pragma, arg string
		want        bool
	}{
		{true, "recursive_triggers", "1", true},
		{true, "case_sensitive_like", "ON", true},
		{true, "busy_timeout", "5", true},
		{true, "recursive_triggers", "", false},
		{true, "table_info", "t", false},
		{true, "TABLE_XINFO", "t", false},
		{true, "foreign_key_check", "t", false},
		{false, "synchronous", "FULL", false},
	} {
		a := &dbActor{user: c.user}
		if rc := a.authorize(sqlite.AuthPragma, c.pragma, c.arg, "main", ""); rc != sqlite.AuthorizerOK {
			t.Errorf("%+v: authorize %v", c, rc)
		}
		if a.pragmaSet != c.want {
			t.Errorf("%+v: pragmaSet %v", c, a.pragmaSet)
		}
	}
}
