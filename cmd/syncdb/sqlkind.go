package main

import (
	"strings"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqlComplete reports whether text ends a complete SQL statement, by
// SQLite's own rules (sqlite3_complete): it ends with a semicolon that is
// not inside a string, identifier, comment or CREATE TRIGGER body.
func sqlComplete(text string) bool {
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	tls := libc.NewTLS()
	defer tls.Close()
	cs, err := libc.CString(text)
	if err != nil {
		panic(err)
	}
	defer libc.Xfree(tls, cs)
	return sqlite3.Xsqlite3_complete(tls, cs) != 0
}

// isKeyword reports whether SQLite treats s as a keyword
// (sqlite3_keyword_check), which sqlite3 quotes as an identifier.
func isKeyword(s string) bool {
	tls := libc.NewTLS()
	defer tls.Close()
	cs, err := libc.CString(s)
	if err != nil {
		panic(err)
	}
	defer libc.Xfree(tls, cs)
	return sqlite3.Xsqlite3_keyword_check(tls, cs, int32(len(s))) != 0
}

// stmtKind is how the shell runs a statement.
type stmtKind int

const (
	kindExec     stmtKind = iota // DDL and the rest: DB.Exec, prints nothing
	kindQuery                    // SELECT, VALUES, EXPLAIN, reading PRAGMAs, WITH ... SELECT: DB.Query
	kindWrite                    // INSERT, UPDATE, DELETE, REPLACE: DB.Exec, prints rows affected
	kindBegin                    // BEGIN: opens a shell transaction
	kindCommit                   // COMMIT, END
	kindRollback                 // ROLLBACK (not ROLLBACK TO)
)

// stmtInfo classifies one statement.
type stmtInfo struct {
	kind stmtKind
	// returning: a write with a RETURNING clause, run so that its rows can
	// be printed.
	returning bool
	keyword   string // the first keyword, upper case
	pragma    string // the pragma's name, lower case, for PRAGMA
}

// token is a word (upper-cased keyword or bare identifier), a quoted
// identifier or string, or one punctuation character.
type token struct {
	text   string
	word   bool // a bare word: text is upper case
	quoted bool // a string literal or quoted identifier
	depth  int  // parenthesis depth at the token
}

// tokens splits a statement into tokens, skipping whitespace and comments.
// Numbers and blob literals come out as words (harmless for classifying).
func tokens(s string) []token {
	var out []token
	depth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return out
			}
			i += j + 1
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return out
			}
			i += j + 4
		case c == '\'' || c == '"' || c == '`' || c == '[':
			end := byte(c)
			if c == '[' {
				end = ']'
			}
			j := i + 1
			for j < len(s) {
				if s[j] == end {
					if end != ']' && j+1 < len(s) && s[j+1] == end { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			out = append(out, token{text: s[i:min(j+1, len(s))], quoted: true, depth: depth})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			out = append(out, token{text: strings.ToUpper(s[i:j]), word: true, depth: depth})
			i = j
		default:
			if c == ')' {
				depth--
			}
			out = append(out, token{text: string(c), depth: depth})
			if c == '(' {
				depth++
			}
			i++
		}
	}
	return out
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// Pragmas that take an argument in parentheses and only read.
var readingPragmasWithArg = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true, "index_info": true, "index_xinfo": true,
	"index_list": true, "foreign_key_list": true, "foreign_key_check": true, "integrity_check": true,
	"quick_check": true,
}

// Pragmas that act even without an argument.
var actingPragmas = map[string]bool{
	"wal_checkpoint": true, "optimize": true, "incremental_vacuum": true, "shrink_memory": true,
}

// classify decides how the shell runs a statement.
func classify(stmt string) stmtInfo {
	toks := tokens(stmt)
	if len(toks) == 0 || !toks[0].word {
		return stmtInfo{kind: kindExec}
	}
	info := stmtInfo{keyword: toks[0].text}
	wordAt := func(i int) string {
		if i < len(toks) && toks[i].word {
			return toks[i].text
		}
		return ""
	}
	hasReturning := func(from int) bool {
		for _, t := range toks[from:] {
			if t.word && t.depth == 0 && t.text == "RETURNING" {
				return true
			}
		}
		return false
	}
	switch info.keyword {
	case "SELECT", "VALUES", "EXPLAIN":
		info.kind = kindQuery
	case "INSERT", "UPDATE", "DELETE", "REPLACE":
		info.kind = kindWrite
		info.returning = hasReturning(1)
	case "WITH":
		info.kind = kindExec
	scan:
		for i, t := range toks[1:] {
			if !t.word || t.depth != 0 {
				continue
			}
			switch t.text {
			case "SELECT", "VALUES":
				info.kind = kindQuery
			case "INSERT", "UPDATE", "DELETE", "REPLACE":
				info.kind = kindWrite
				info.returning = hasReturning(i + 2)
			default:
				continue
			}
			break scan
		}
	case "PRAGMA":
		i := 1
		if wordAt(2) == "" && i+2 < len(toks) && toks[2].text == "." { // schema.name
			i = 3
		}
		info.pragma = strings.ToLower(wordAt(i))
		info.kind = kindQuery
		if i+1 < len(toks) {
			switch toks[i+1].text {
			case "=":
				info.kind = kindExec
			case "(":
				if !readingPragmasWithArg[info.pragma] {
					info.kind = kindExec
				}
			}
		}
		if actingPragmas[info.pragma] {
			info.kind = kindExec
		}
	case "BEGIN":
		info.kind = kindBegin
	case "COMMIT", "END":
		info.kind = kindCommit
	case "ROLLBACK":
		info.kind = kindRollback
		if w := wordAt(1); w == "TO" || w == "TRANSACTION" && wordAt(2) == "TO" {
			info.kind = kindExec // ROLLBACK TO a savepoint
		}
	default:
		info.kind = kindExec
	}
	return info
}
