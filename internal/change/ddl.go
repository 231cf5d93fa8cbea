package change

import (
	"fmt"
	"strings"
)

// CreateIfNotExists makes a CREATE statement idempotent by inserting IF NOT
// EXISTS after the object type: "CREATE TABLE x(...)" becomes "CREATE TABLE
// IF NOT EXISTS x(...)". It handles TABLE, INDEX, UNIQUE INDEX, VIEW, TRIGGER
// and VIRTUAL TABLE, with keywords in any case and white space or comments
// between them (TEMP/TEMPORARY is accepted too, though sqlite_schema never
// holds it). A statement that already says IF NOT EXISTS is returned
// unchanged. Anything else is an error. The rest of the text is kept byte for
// byte.
func CreateIfNotExists(sql string) (string, error) {
	l := lexer{s: sql}
	if !l.keyword("CREATE") {
		return "", fmt.Errorf("change: not a CREATE statement: %.60q", sql)
	}
	if !l.keyword("TEMP") {
		l.keyword("TEMPORARY")
	}
	switch {
	case l.keyword("TABLE"), l.keyword("VIEW"), l.keyword("TRIGGER"), l.keyword("INDEX"):
	case l.keyword("UNIQUE"):
		if !l.keyword("INDEX") {
			return "", fmt.Errorf("change: CREATE UNIQUE without INDEX: %.60q", sql)
		}
	case l.keyword("VIRTUAL"):
		if !l.keyword("TABLE") {
			return "", fmt.Errorf("change: CREATE VIRTUAL without TABLE: %.60q", sql)
		}
	default:
		return "", fmt.Errorf("change: unsupported CREATE statement: %.60q", sql)
	}
	at := l.pos
	if l.keyword("IF") && l.keyword("NOT") && l.keyword("EXISTS") {
		return sql, nil
	}
	ins := " IF NOT EXISTS"
	if at == len(sql) || !isSpace(sql[at]) {
		ins += " "
	}
	return sql[:at] + ins + sql[at:], nil
}

// DropIfExists returns `DROP <TYPE> IF EXISTS "name"` for objType table,
// index, view or trigger (any case), with the name quoted. For any other
// objType it returns "" (which Statements rejects as a schema change).
func DropIfExists(objType, name string) string {
	switch t := strings.ToUpper(objType); t {
	case "TABLE", "INDEX", "VIEW", "TRIGGER":
		return "DROP " + t + " IF EXISTS " + QuoteIdent(name)
	}
	return ""
}

// IsAddColumn reports whether sql is ALTER TABLE [schema.]name ADD [COLUMN]
// column-def. ADD CONSTRAINT and ADD CHECK (table constraints, which SQLite 3.54
// accepts) are not column additions.
func IsAddColumn(sql string) bool {
	l := lexer{s: sql}
	if !l.keyword("ALTER") || !l.keyword("TABLE") || !l.name() {
		return false
	}
	save := l.pos
	l.skip()
	if l.pos < len(l.s) && l.s[l.pos] == '.' {
		l.pos++
		if !l.name() {
			return false
		}
	} else {
		l.pos = save
	}
	if !l.keyword("ADD") {
		return false
	}
	save = l.pos
	if l.keyword("CONSTRAINT") || l.keyword("CHECK") {
		return false
	}
	l.pos = save
	l.skip()
	return l.pos < len(l.s) // a column definition follows
}

// lexer reads just enough SQL to recognise leading keywords and names.
type lexer struct {
	s   string
	pos int
}

// skip moves past white space and comments.
func (l *lexer) skip() {
	for l.pos < len(l.s) {
		switch c := l.s[l.pos]; {
		case isSpace(c):
			l.pos++
		case strings.HasPrefix(l.s[l.pos:], "--"):
			if i := strings.IndexByte(l.s[l.pos:], '\n'); i >= 0 {
				l.pos += i + 1
			} else {
				l.pos = len(l.s)
			}
		case strings.HasPrefix(l.s[l.pos:], "/*"):
			if i := strings.Index(l.s[l.pos+2:], "*/"); i >= 0 {
				l.pos += i + 4
			} else {
				l.pos = len(l.s)
			}
		default:
			return
		}
	}
}

// isIDChar reports whether c may appear in an unquoted identifier; SQLite
// treats every byte >= 0x80 as such.
func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// word reads an unquoted word after white space; "" if none.
func (l *lexer) word() string {
	l.skip()
	start := l.pos
	for l.pos < len(l.s) && isIDChar(l.s[l.pos]) {
		l.pos++
	}
	return l.s[start:l.pos]
}

// keyword consumes kw (any ASCII case) and reports whether it was there;
// otherwise the position is unchanged.
func (l *lexer) keyword(kw string) bool {
	save := l.pos
	if w := l.word(); len(w) == len(kw) && foldASCII(w) == foldASCII(kw) {
		return true
	}
	l.pos = save
	return false
}

// name consumes an identifier: a bare word or one quoted with "", “, [] or
// ”.
func (l *lexer) name() bool {
	l.skip()
	if l.pos >= len(l.s) {
		return false
	}
	var end byte
	switch l.s[l.pos] {
	case '"', '`', '\'':
		end = l.s[l.pos]
	case '[':
		end = ']'
	default:
		return l.word() != ""
	}
	for i := l.pos + 1; i < len(l.s); i++ {
		if l.s[i] != end {
			continue
		}
		if end != ']' && i+1 < len(l.s) && l.s[i+1] == end {
			i++ // doubled quote
			continue
		}
		l.pos = i + 1
		return true
	}
	return false
}
