package syncdb

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"reflect"
	"unicode"
	"unicode/utf8"
)

// resolveArgs converts the arguments of a statement as database/sql would
// (Go 1.26, for a driver without its own argument checks, as modernc's),
// once any of them has a driver.Valuer's Value to call (or a pointer that
// may lead to one): the caller runs it on its own goroutine, before any
// frame of database/sql or message to the database actor.
//
// database/sql calls Value while holding locks that it releases without a
// deferred call (queryDC's releaseConn, Stmt.ExecContext's), so a panic or
// runtime.Goexit in Value left them held: the writer's connection then
// never closed, a transaction's rollback waited forever, and on the actor's
// goroutine (DB.Exec) the panic failed the actor. Here a panic or Goexit in
// Value happens before all of that, with nothing held.
//
// The rules are database/sql's: the arguments in order; a sql.NamedArg's
// name must begin with a letter; a value that is already a driver.Value
// stays as it is; a Valuer's Value is called (a nil pointer to a type whose
// Value has a value receiver is nil, callValuerValue), and must return a
// driver.Value; a pointer is followed. The errors read as database/sql's
// ("sql: converting argument $1 type: ..."), and the first one stops
// the conversion, so no later argument's Value is called, as there. The
// arguments come back converted (sql.NamedArg keeping its name), so that
// database/sql, called with them, has nothing left to call. When no
// argument has a Valuer or a pointer, they come back as they are (the
// common case costs no allocation).
func resolveArgs(args []any) ([]any, error) {
	if !anyValuer(args) {
		return args, nil
	}
	out := make([]any, len(args))
	for i, arg := range args {
		name := ""
		if na, ok := arg.(sql.NamedArg); ok {
			if err := validateName(na.Name); err != nil {
				return nil, err
			}
			name, arg = na.Name, na.Value
		}
		v, err := driver.DefaultParameterConverter.ConvertValue(arg)
		if err != nil {
			what := fmt.Sprintf("$%d", i+1)
			if name != "" {
				what = fmt.Sprintf("with name %q", name)
			}
			return nil, fmt.Errorf("sql: converting argument %s type: %w", what, err)
		}
		if name != "" {
			out[i] = sql.Named(name, v)
		} else {
			out[i] = v
		}
	}
	return out, nil
}

// anyValuer reports whether converting some argument may call a Value
// method: a driver.Valuer that is not already a driver.Value, or a
// pointer (database/sql follows it, and it may point to one).
func anyValuer(args []any) bool {
	for _, arg := range args {
		if na, ok := arg.(sql.NamedArg); ok {
			arg = na.Value
		}
		if driver.IsValue(arg) {
			continue
		}
		if _, ok := arg.(driver.Valuer); ok {
			return true
		}
		if reflect.TypeOf(arg).Kind() == reflect.Pointer {
			return true
		}
	}
	return false
}

// validateName is database/sql's validateNamedValueName.
func validateName(name string) error {
	if len(name) == 0 {
		return nil
	}
	r, _ := utf8.DecodeRuneInString(name)
	if unicode.IsLetter(r) {
		return nil
	}
	return fmt.Errorf("name %q does not begin with a letter", name)
}
