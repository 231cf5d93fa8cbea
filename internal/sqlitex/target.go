package sqlitex

import "strings"

// Write is what an INSERT, REPLACE, UPDATE or DELETE statement writes.
type Write struct {
	// Schema and Table name the table (or view) written, unquoted; Schema
	// is "" unless the statement names one. Table is "" for any other
	// statement, or one WriteTarget cannot read.
	Schema, Table string
	Op            string // INSERT (REPLACE too), UPDATE or DELETE
	// Upsert: an INSERT with ON CONFLICT ... DO UPDATE, which may update
	// rows of Table too.
	Upsert bool
}

// WriteTarget returns what a statement writes: "INSERT OR IGNORE INTO
// main."t x" ..." is {main, t x, INSERT}. A leading WITH clause is skipped.
// It reads the statement's tokens only; it does not check that they are
// valid SQL.
func WriteTarget(stmt string) Write {
	tk := targetTokens{s: stmt}
	t := tk.next()
	if t.is("WITH") {
		if !tk.skipCTEs() {
			return Write{}
		}
		t = tk.next()
	}
	var w Write
	switch {
	case t.is("INSERT"):
		w.Op = "INSERT"
		t = tk.next()
		if t.is("OR") {
			tk.next() // the conflict algorithm
			t = tk.next()
		}
		if !t.is("INTO") {
			return Write{}
		}
	case t.is("REPLACE"):
		w.Op = "INSERT"
		if !tk.next().is("INTO") {
			return Write{}
		}
	case t.is("UPDATE"):
		w.Op = "UPDATE"
		if tk.peek().is("OR") {
			tk.next()
			tk.next()
		}
	case t.is("DELETE"):
		w.Op = "DELETE"
		if !tk.next().is("FROM") {
			return Write{}
		}
	default:
		return Write{}
	}
	first := tk.next()
	if !first.ident() {
		return Write{}
	}
	w.Table = first.name()
	if tk.peek().text == "." {
		tk.next()
		second := tk.next()
		if !second.ident() {
			return Write{}
		}
		w.Schema, w.Table = w.Table, second.name()
	}
	if w.Op == "INSERT" {
		// DO is a keyword: DO UPDATE can only be an upsert's.
		for prev := (targetToken{}); ; {
			t := tk.next()
			if t.text == "" {
				break
			}
			if prev.is("DO") && t.is("UPDATE") {
				w.Upsert = true
				break
			}
			prev = t
		}
	}
	return w
}

// targetToken is a bare word, a quoted identifier or string, or one other
// character; "" at the end of the text.
type targetToken struct {
	text   string
	quoted byte // the opening quote: " ` [ or '; 0 for a bare word or punctuation
}

func (t targetToken) is(kw string) bool { return t.quoted == 0 && strings.EqualFold(t.text, kw) }

// ident reports a token that can name a table.
func (t targetToken) ident() bool { return t.quoted != 0 || t.text != "" && isWordByte(t.text[0]) }

// name is the identifier the token spells.
func (t targetToken) name() string {
	switch t.quoted {
	case 0:
		return t.text
	case '[':
		return t.text[1 : len(t.text)-1]
	}
	q := string(t.quoted)
	return strings.ReplaceAll(t.text[1:len(t.text)-1], q+q, q)
}

type targetTokens struct {
	s      string
	peeked *targetToken
}

func (tk *targetTokens) peek() targetToken {
	if tk.peeked == nil {
		t := tk.scan()
		tk.peeked = &t
	}
	return *tk.peeked
}

func (tk *targetTokens) next() targetToken {
	t := tk.peek()
	tk.peeked = nil
	return t
}

func (tk *targetTokens) scan() targetToken {
	s := tk.s[skipBlankNoSemicolon(tk.s):]
	if s == "" {
		tk.s = ""
		return targetToken{}
	}
	n := 1
	var quoted byte
	switch c := s[0]; {
	case c == '"' || c == '`' || c == '\'' || c == '[':
		quoted = c
		end := c
		if c == '[' {
			end = ']'
		}
		n = len(s) // unterminated: the rest
		for i := 1; i < len(s); i++ {
			if s[i] != end {
				continue
			}
			if end != ']' && i+1 < len(s) && s[i+1] == end {
				i++ // a doubled quote
				continue
			}
			n = i + 1
			break
		}
		if n < 2 || s[n-1] != end {
			tk.s = ""
			return targetToken{}
		}
	case isWordByte(c):
		for n < len(s) && isWordByte(s[n]) {
			n++
		}
	}
	tk.s = s[n:]
	return targetToken{text: s[:n], quoted: quoted}
}

// skipCTEs skips the common table expressions after WITH: [RECURSIVE]
// name [(columns)] AS [[NOT] MATERIALIZED] (select), ... It reports
// whether it read them.
func (tk *targetTokens) skipCTEs() bool {
	if tk.peek().is("RECURSIVE") {
		tk.next()
	}
	for {
		if !tk.next().ident() {
			return false
		}
		t := tk.next()
		if t.text == "(" {
			if !tk.skipParens() {
				return false
			}
			t = tk.next()
		}
		if !t.is("AS") {
			return false
		}
		t = tk.next()
		if t.is("NOT") {
			t = tk.next()
		}
		if t.is("MATERIALIZED") {
			t = tk.next()
		}
		if t.text != "(" || !tk.skipParens() {
			return false
		}
		if tk.peek().text != "," {
			return true
		}
		tk.next()
	}
}

// skipParens skips to the parenthesis that closes one just read.
func (tk *targetTokens) skipParens() bool {
	for depth := 1; depth > 0; {
		t := tk.next()
		switch {
		case t.text == "":
			return false
		case t.quoted != 0:
		case t.text == "(":
			depth++
		case t.text == ")":
			depth--
		}
	}
	return true
}

// skipBlankNoSemicolon is skipBlank without skipping semicolons: one ends
// the statement.
func skipBlankNoSemicolon(s string) int {
	i := 0
	for i < len(s) {
		switch {
		case isSpace(s[i]):
			i++
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return len(s)
			}
			i += j + 1
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return len(s)
			}
			i += 2 + j + 2
		default:
			return i
		}
	}
	return i
}

// isWordByte reports the bytes of a bare identifier or keyword (bytes of
// UTF-8 sequences included, as SQLite takes them).
func isWordByte(c byte) bool {
	return c == '_' || c == '$' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80
}

// InsertsOmit reports whether every INSERT (or REPLACE) into table that
// text holds (the bodies of triggers) provably gives no value to any of
// cols: it names its columns, none of them in cols (case-insensitively),
// or it is DEFAULT VALUES. An insert without a column list, or one it
// cannot read, gives them a value. A table qualified by another schema
// than main is another table; an unqualified name may be either.
func InsertsOmit(text, table string, cols ...string) bool {
	tk := targetTokens{s: text}
	for {
		t := tk.next()
		switch {
		case t.text == "":
			return true
		case t.is("INSERT"):
			if tk.peek().is("OR") {
				tk.next()
				tk.next()
			}
			if !tk.peek().is("INTO") {
				continue // INSTEAD OF INSERT ON v, BEFORE INSERT ON t
			}
		case t.is("REPLACE"):
			if !tk.peek().is("INTO") {
				continue // replace(x, y, z)
			}
		default:
			continue
		}
		tk.next() // INTO
		name := tk.next()
		if !name.ident() {
			return false
		}
		schema := ""
		if tk.peek().text == "." {
			tk.next()
			schema = name.name()
			if name = tk.next(); !name.ident() {
				return false
			}
		}
		if !strings.EqualFold(name.name(), table) || schema != "" && !strings.EqualFold(schema, "main") {
			continue
		}
		t = tk.next()
		if t.is("AS") {
			tk.next()
			t = tk.next()
		}
		if t.is("DEFAULT") {
			continue
		}
		if t.text != "(" {
			return false
		}
		for {
			col := tk.next()
			if !col.ident() {
				return false
			}
			for _, c := range cols {
				if strings.EqualFold(col.name(), c) {
					return false
				}
			}
			if sep := tk.next(); sep.text == ")" {
				break
			} else if sep.text != "," {
				return false
			}
		}
	}
}
