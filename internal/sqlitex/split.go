package sqlitex

import (
	"strings"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// SplitStatements splits a script into its statements without preparing or
// running them. A statement ends at the first ';' at which the text so far
// is complete for sqlite3_complete, so semicolons inside strings, quoted
// identifiers, comments and CREATE TRIGGER ... BEGIN ...; END bodies do not
// split. Each statement runs from its first token to its ';': the
// whitespace, comments and empty statements before it are dropped, as is
// trailing whitespace. Pieces with no statement are dropped; text after the
// last complete statement is returned as a final statement even without a
// ';'. The script is read up to its first NUL byte, if any, as SQLite would.
func SplitStatements(sql string) []string {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	// The common case, one statement with at most a final ';', needs no
	// completeness checks.
	if i := strings.IndexByte(sql, ';'); i < 0 || blank(sql[i+1:]) && !strings.Contains(sql[:i], "--") && !strings.Contains(sql[:i], "/*") &&
		!strings.ContainsAny(sql[:i], "'\"`[") {
		if blank(sql) {
			return nil
		}
		if i >= 0 {
			sql = sql[:i+1]
		}
		return []string{stmtText(sql)}
	}
	tls := libc.NewTLS()
	defer tls.Close()
	buf := libc.Xmalloc(tls, libc.Tsize_t(len(sql)+1))
	if buf == 0 {
		panic("sqlitex: out of memory")
	}
	defer libc.Xfree(tls, buf)
	b := cbytes(buf, len(sql)+1)
	copy(b, sql)
	b[len(sql)] = 0

	var stmts []string
	add := func(s string) {
		if !blank(s) {
			stmts = append(stmts, stmtText(s))
		}
	}
	start := 0
	for i := 0; i < len(sql); i++ {
		if sql[i] != ';' {
			continue
		}
		// Ask about sql[start:i+1] by ending the C copy there for the call.
		save := b[i+1]
		b[i+1] = 0
		complete := sqlite3.Xsqlite3_complete(tls, buf+uintptr(start)) != 0
		b[i+1] = save
		if complete {
			add(sql[start : i+1])
			start = i + 1
		}
	}
	add(sql[start:])
	return stmts
}

// isSpace reports SQLite's whitespace characters.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// trimSpace trims SQLite's whitespace at both ends: a vertical tab only
// within a run that a whitespace character starts (see skipBlanks).
func trimSpace(s string) string {
	for inSpace := false; len(s) > 0 && (isSpace(s[0]) || inSpace && s[0] == '\v'); {
		inSpace = true
		s = s[1:]
	}
	end := len(s)
	for end > 0 && (isSpace(s[end-1]) || s[end-1] == '\v') {
		end--
	}
	// s[end:] is the trailing run; it is whitespace from its first
	// whitespace character on (vertical tabs before it are tokens).
	for end < len(s) && s[end] == '\v' {
		end++
	}
	return s[:end]
}

// blank reports whether s holds nothing but whitespace, comments and
// semicolons, i.e. no statement.
func blank(s string) bool { return skipBlank(s) == len(s) }

// stmtText returns the statement in s without the whitespace, comments and
// empty statements before it and the whitespace after it.
func stmtText(s string) string { return trimSpace(s[skipBlank(s):]) }

// skipBlank returns the offset of the first byte of s that is not
// whitespace, a semicolon or inside a comment; len(s) if there is none.
func skipBlank(s string) int { return skipBlanks(s, true) }

// skipBlanks skips whitespace and comments, and semicolons too if
// semicolons is set. A vertical tab cannot start a token of SQLite's
// whitespace (it is an illegal character there), but one that follows
// whitespace is part of it (the run goes on over sqlite3Isspace): " \vBEGIN"
// is BEGIN for SQLite, "\vBEGIN" an error.
func skipBlanks(s string, semicolons bool) int {
	i := 0
	inSpace := false // s[i-1] ends a run of whitespace
	for i < len(s) {
		switch {
		case s[i] == '\v' && inSpace:
			i++
		case semicolons && s[i] == ';':
			i++
			inSpace = false
		case isSpace(s[i]):
			i++
			inSpace = true
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return len(s)
			}
			i += j + 1 // the newline, which starts a run of whitespace
			inSpace = true
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return len(s) // SQLite ends an unterminated comment at the end of input
			}
			i += 2 + j + 2
			inSpace = false
		default:
			return i
		}
	}
	return i
}
