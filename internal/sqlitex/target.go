package sqlitex

import (
	"strconv"
	"strings"
)

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
func skipBlankNoSemicolon(s string) int { return skipBlanks(s, false) }

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

// Insert is what the text of an INSERT (or REPLACE) statement tells of
// the values it gives its row.
type Insert struct {
	Read          bool     // false: not an INSERT, or one ReadInsert cannot read
	DefaultValues bool     // DEFAULT VALUES
	Columns       []string // the column list, unquoted; nil without one
	// Select: the rows come from a query (SELECT, or anything but VALUES).
	Select bool
	Rows   [][]Value // the rows of a VALUES list
}

// Value is one value of a VALUES row: the literal NULL, a parameter
// alone, or (neither) any other expression.
type Value struct {
	Null bool
	// Param is the parameter as written ("?", "?2", ":id", "@id", "$id");
	// N its number as SQLite numbers them: ?NNN is NNN, ? the largest
	// number so far plus one, a name its first occurrence's number or
	// else the largest so far plus one.
	Param string
	N     int
}

// ReadInsert reads an INSERT statement's text (a leading WITH clause
// skipped, and anything after its values: ON CONFLICT, RETURNING). It
// numbers the parameters of the whole text, as SQLite does, left to
// right. A TCL-style parameter ($a::b, $a(x)) makes it unreadable: the
// numbering of the rest would be a guess.
func ReadInsert(stmt string) Insert {
	toks, ok := paramTokens(stmt)
	if !ok {
		return Insert{}
	}
	i := 0
	next := func() paramToken {
		if i >= len(toks) {
			return paramToken{}
		}
		i++
		return toks[i-1]
	}
	peek := func() paramToken {
		if i >= len(toks) {
			return paramToken{}
		}
		return toks[i]
	}
	t := next()
	if t.is("WITH") {
		// The CTEs' bodies are parenthesized: the first INSERT or
		// REPLACE outside parentheses is the statement's.
		for depth := 0; ; {
			t = next()
			if t.text == "" {
				return Insert{}
			} else if t.quoted != 0 {
				continue
			}
			if t.text == "(" {
				depth++
			} else if t.text == ")" {
				depth--
			} else if depth == 0 && (t.is("INSERT") || t.is("REPLACE")) {
				break
			}
		}
	}
	switch {
	case t.is("INSERT"):
		if peek().is("OR") {
			next()
			next()
		}
	case t.is("REPLACE"):
	default:
		return Insert{}
	}
	if !next().is("INTO") || !next().ident() {
		return Insert{}
	}
	if peek().text == "." {
		next()
		if !next().ident() {
			return Insert{}
		}
	}
	t = next()
	if t.is("AS") {
		if !next().ident() {
			return Insert{}
		}
		t = next()
	}
	ins := Insert{Read: true}
	if t.is("DEFAULT") {
		if !next().is("VALUES") {
			return Insert{}
		}
		ins.DefaultValues = true
		return ins
	}
	if t.text == "(" && t.quoted == 0 {
		for {
			col := next()
			if !col.ident() || col.param != "" {
				return Insert{}
			}
			ins.Columns = append(ins.Columns, col.name())
			if sep := next(); sep.text == ")" {
				break
			} else if sep.text != "," {
				return Insert{}
			}
		}
		t = next()
	}
	if !t.is("VALUES") {
		ins.Select = true
		return ins
	}
	for {
		if next().text != "(" {
			return Insert{}
		}
		var row []Value
	values:
		for {
			// One value: the tokens up to a comma or the closing
			// parenthesis outside parentheses.
			var val []paramToken
			for depth := 0; ; {
				t := next()
				if t.text == "" {
					return Insert{}
				}
				if t.quoted == 0 && depth == 0 && (t.text == "," || t.text == ")") {
					var v Value
					if len(val) == 1 && val[0].param != "" {
						v.Param, v.N = val[0].param, val[0].n
					} else if len(val) == 1 && val[0].is("NULL") {
						v.Null = true
					}
					row = append(row, v)
					if t.text == ")" {
						break values
					}
					break
				}
				if t.quoted == 0 && t.text == "(" {
					depth++
				} else if t.quoted == 0 && t.text == ")" {
					depth--
				}
				val = append(val, t)
			}
		}
		ins.Rows = append(ins.Rows, row)
		switch t := peek(); {
		case t.text == ",":
			next()
		case t.text == "" || t.is("ON") || t.is("RETURNING"):
			return ins
		default:
			// A compound (VALUES ... UNION [ALL] SELECT ... or UNION
			// VALUES ...) inserts the rows of its other arms too, and
			// ORDER BY or LIMIT may come with one: the rows are a query's.
			ins.Select = true
			return ins
		}
	}
}

// paramToken is a token of ReadInsert's; param is set for a parameter.
type paramToken struct {
	targetToken
	param string
	n     int
}

// paramTokens splits a statement (up to a semicolon) into tokens, its
// parameters numbered. It reports false for a parameter it cannot number
// with certainty.
func paramTokens(stmt string) ([]paramToken, bool) {
	tk := targetTokens{s: stmt}
	var toks []paramToken
	names := map[string]int{}
	largest := 0
	for {
		t := paramToken{targetToken: tk.scan()}
		if t.text == "" || t.quoted == 0 && t.text == ";" {
			return toks, true
		}
		if t.quoted == 0 {
			switch c := t.text[0]; {
			case c == '?':
				digits := 0
				for digits < len(tk.s) && '0' <= tk.s[digits] && tk.s[digits] <= '9' {
					digits++
				}
				if digits == 0 {
					largest++
					t.param, t.n = "?", largest
					break
				}
				n, err := strconv.Atoi(tk.s[:digits])
				if err != nil || n < 1 {
					return nil, false
				}
				t.param, t.n = "?"+tk.s[:digits], n
				tk.s = tk.s[digits:]
				largest = max(largest, n)
			case c == ':' || c == '@' || c == '#' || c == '$':
				if c != '$' {
					if tk.s == "" || !isWordByte(tk.s[0]) {
						break // not a parameter: a syntax error
					}
					w := tk.scan()
					t.text += w.text
				} else if len(t.text) == 1 {
					break
				}
				if strings.HasPrefix(tk.s, "(") || strings.HasPrefix(tk.s, "::") {
					return nil, false
				}
				if n, ok := names[t.text]; ok {
					t.n = n
				} else {
					largest++
					t.n, names[t.text] = largest, largest
				}
				t.param = t.text
			}
		}
		toks = append(toks, t)
	}
}
