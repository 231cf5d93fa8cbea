package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The shell's output modes (.mode). "aligned" is the shell's own default;
// the others print what the sqlite3 command prints in the mode of the same
// name (version 3.40, as Debian ships it), byte for byte: cmd/syncdb's
// tests compare them with the sqlite3 binary.

// modes lists the output modes, for .mode and .help.
var modes = []string{"aligned", "box", "column", "csv", "html", "insert", "json", "line", "list", "markdown", "quote", "table", "tabs"}

// output is the shell's output settings.
type output struct {
	mode    string
	headers bool   // .headers (list, csv, tabs, column, quote, insert, html); aligned, table, box, markdown always show them
	sep     string // .separator: between columns (list)
	rowSep  string // .separator's second argument: after each row (list)
	null    string // .nullvalue
	table   string // the table of insert mode
}

func defaultOutput() output {
	return output{mode: "aligned", sep: "|", rowSep: "\n", table: "table"}
}

// setMode switches to mode; sqlite3 resets the separators for list, csv
// and tabs.
func (o *output) setMode(mode string, args []string) error {
	found := false
	for _, m := range modes {
		if m == mode {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("unknown mode %q; modes: %s", mode, strings.Join(modes, ", "))
	}
	o.mode = mode
	switch mode {
	case "list":
		o.sep, o.rowSep = "|", "\n"
	case "csv":
		o.sep, o.rowSep = ",", "\r\n"
	case "tabs":
		o.sep, o.rowSep = "\t", "\n"
	case "insert":
		o.table = "table"
		if len(args) > 0 {
			o.table = args[0]
		}
	}
	return nil
}

// queryResult is a query's columns and raw values (nil, int64, float64,
// string, []byte, time.Time or bool, as database/sql hands them).
type queryResult struct {
	cols []string
	rows [][]any
}

// print writes res in the current mode. Like sqlite3, it prints nothing,
// not even headers, for a result without rows (the aligned mode says "(0
// rows)").
func (o *output) print(w io.Writer, res *queryResult) {
	if len(res.rows) == 0 && o.mode != "aligned" {
		return
	}
	switch o.mode {
	case "aligned":
		alignedResult(res).print(w)
	case "list", "csv", "tabs":
		o.printList(w, res)
	case "line":
		o.printLine(w, res)
	case "column", "table", "box", "markdown":
		o.printColumnar(w, res)
	case "json":
		printJSON(w, res)
	case "quote":
		o.printQuote(w, res)
	case "insert":
		o.printInsert(w, res)
	case "html":
		o.printHTML(w, res)
	}
}

// alignedResult formats res for the aligned mode.
func alignedResult(res *queryResult) *resultSet {
	rs := &resultSet{}
	for _, c := range res.cols {
		rs.cols = append(rs.cols, escapeText(c))
	}
	for _, r := range res.rows {
		row := make([]string, len(r))
		num := make([]bool, len(r))
		for i, v := range r {
			row[i], num[i] = formatValue(v)
		}
		rs.rows = append(rs.rows, row)
		rs.numeric = append(rs.numeric, num)
	}
	return rs
}

// text is a value as sqlite3_column_text gives it, which sqlite3 prints;
// ok is false for NULL.
func text(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return sqliteFloat(v, 15), true
	case string:
		return v, true
	case []byte:
		// Printed with %s: it ends at a NUL byte.
		s := string(v)
		if i := strings.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return s, true
	case time.Time:
		return sqliteTime(v), true
	case bool:
		if v {
			return "1", true
		}
		return "0", true
	}
	return fmt.Sprint(v), true
}

// sqliteTime prints a time that modernc.org/sqlite parsed from a DATE,
// DATETIME or TIMESTAMP column in SQLite's own format (what datetime()
// stores); the text as stored is not available through database/sql.
func sqliteTime(t time.Time) string {
	layout := "2006-01-02 15:04:05"
	if t.Nanosecond() != 0 {
		layout += ".999999999"
	}
	if _, off := t.Zone(); off != 0 {
		layout += "-07:00"
	}
	return t.Format(layout)
}

func (o *output) textOrNull(v any) string {
	if s, ok := text(v); ok {
		return s
	}
	return o.null
}

// ---- list, csv, tabs

func (o *output) printList(w io.Writer, res *queryResult) {
	field := func(s string, isNull bool) string {
		if o.mode == "csv" && !isNull {
			return csvQuote(s, o.sep)
		}
		return s
	}
	var b strings.Builder
	if o.headers {
		for i, c := range res.cols {
			if i > 0 {
				b.WriteString(o.sep)
			}
			b.WriteString(field(c, false))
		}
		b.WriteString(o.rowSep)
	}
	for _, r := range res.rows {
		for i, v := range r {
			if i > 0 {
				b.WriteString(o.sep)
			}
			s, ok := text(v)
			if !ok {
				s = o.null
			}
			b.WriteString(field(s, !ok))
		}
		b.WriteString(o.rowSep)
	}
	io.WriteString(w, b.String())
}

// csvQuote quotes a CSV field as sqlite3 does: when it is empty or holds a
// control character, space, quote, apostrophe, DEL, a non-ASCII byte or
// the separator.
func csvQuote(s, sep string) string {
	need := s == "" || strings.Contains(s, sep)
	for i := 0; i < len(s) && !need; i++ {
		c := s[i]
		need = c <= ' ' || c == '"' || c == '\'' || c >= 0x7f
	}
	if !need {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// ---- line

func (o *output) printLine(w io.Writer, res *queryResult) {
	width := 5
	for _, c := range res.cols {
		width = max(width, utf8.RuneCountInString(c))
	}
	var b strings.Builder
	for n, r := range res.rows {
		if n > 0 {
			b.WriteString("\n")
		}
		for i, v := range r {
			name := res.cols[i]
			b.WriteString(strings.Repeat(" ", max(0, width-utf8.RuneCountInString(name))))
			b.WriteString(name)
			b.WriteString(" = ")
			b.WriteString(o.textOrNull(v))
			b.WriteString("\n")
		}
	}
	io.WriteString(w, b.String())
}

// ---- column, table, box, markdown

// displayLines turns a value into the lines a columnar mode shows: tabs
// expand to the next multiple of 8, other control characters end a line.
func displayLines(s string) []string {
	var lines []string
	var b strings.Builder
	col := 0
	for i, r := range s {
		switch {
		case r == '\r' && i+1 < len(s) && s[i+1] == '\n':
			// CR LF is one line break.
		case r == '\t':
			n := 8 - col%8
			b.WriteString(strings.Repeat(" ", n))
			col += n
		case r < ' ':
			lines = append(lines, b.String())
			b.Reset()
			col = 0
		default:
			b.WriteRune(r)
			col++
		}
	}
	return append(lines, b.String())
}

func (o *output) printColumnar(w io.Writer, res *queryResult) {
	if len(res.rows) == 0 {
		return
	}
	n := len(res.cols)
	headers := o.headers || o.mode != "column"
	widths := make([]int, n)
	head := make([][]string, n)
	for i, c := range res.cols {
		head[i] = displayLines(c)
		for _, l := range head[i] { // even when they are not shown
			widths[i] = max(widths[i], utf8.RuneCountInString(l))
		}
	}
	cells := make([][][]string, len(res.rows))
	multi := false
	for r, row := range res.rows {
		cells[r] = make([][]string, n)
		for i, v := range row {
			lines := displayLines(o.textOrNull(v))
			cells[r][i] = lines
			multi = multi || len(lines) > 1
			for _, l := range lines {
				widths[i] = max(widths[i], utf8.RuneCountInString(l))
			}
		}
	}
	pad := func(s string, wd int) string {
		return s + strings.Repeat(" ", max(0, wd-utf8.RuneCountInString(s)))
	}
	center := func(s string, wd int) string {
		gap := max(0, wd-utf8.RuneCountInString(s))
		return strings.Repeat(" ", gap/2) + s + strings.Repeat(" ", gap-gap/2)
	}
	var b strings.Builder
	// line writes one row of cells (each a slice of lines), line by line.
	line := func(row [][]string, fit func(string, int) string, left, mid, right string) {
		height := 1
		for _, c := range row {
			height = max(height, len(c))
		}
		for l := 0; l < height; l++ {
			b.WriteString(left)
			for i, c := range row {
				if i > 0 {
					b.WriteString(mid)
				}
				s := ""
				if l < len(c) {
					s = c[l]
				}
				b.WriteString(fit(s, widths[i]))
			}
			b.WriteString(right)
			b.WriteString("\n")
		}
	}
	rule := func(left, fill, mid, right string, extra int) {
		b.WriteString(left)
		for i, wd := range widths {
			if i > 0 {
				b.WriteString(mid)
			}
			b.WriteString(strings.Repeat(fill, wd+extra))
		}
		b.WriteString(right)
		b.WriteString("\n")
	}
	switch o.mode {
	case "column":
		if headers {
			line(head, pad, "", "  ", "")
			rule("", "-", "  ", "", 0)
		}
		for r, row := range cells {
			if r > 0 && multi {
				b.WriteString("\n")
			}
			line(row, pad, "", "  ", "")
		}
	case "table", "box":
		// The border characters: top, middle and bottom rules, and the
		// vertical line.
		bd := [4][4]string{{"+", "-", "+", "+"}, {"+", "-", "+", "+"}, {"+", "-", "+", "+"}, {"|"}}
		if o.mode == "box" {
			bd = [4][4]string{{"┌", "─", "┬", "┐"}, {"├", "─", "┼", "┤"}, {"└", "─", "┴", "┘"}, {"│"}}
		}
		v := bd[3][0]
		rule(bd[0][0], bd[0][1], bd[0][2], bd[0][3], 2)
		line(head, center, v+" ", " "+v+" ", " "+v)
		rule(bd[1][0], bd[1][1], bd[1][2], bd[1][3], 2)
		for r, row := range cells {
			if r > 0 && multi {
				rule(bd[1][0], bd[1][1], bd[1][2], bd[1][3], 2)
			}
			line(row, pad, v+" ", " "+v+" ", " "+v)
		}
		rule(bd[2][0], bd[2][1], bd[2][2], bd[2][3], 2)
	case "markdown":
		line(head, center, "| ", " | ", " |")
		rule("|", "-", "|", "|", 2)
		for _, row := range cells {
			line(row, pad, "| ", " | ", " |")
		}
	}
	io.WriteString(w, b.String())
}

// ---- json

func printJSON(w io.Writer, res *queryResult) {
	if len(res.rows) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("[")
	for r, row := range res.rows {
		if r > 0 {
			b.WriteString(",\n")
		}
		b.WriteString("{")
		for i, v := range row {
			if i > 0 {
				b.WriteString(",")
			}
			jsonString(&b, res.cols[i])
			b.WriteString(":")
			switch v := v.(type) {
			case nil:
				b.WriteString("null")
			case int64, bool:
				s, _ := text(v)
				b.WriteString(s)
			case float64:
				switch {
				case math.IsInf(v, 1):
					b.WriteString("1e999")
				case math.IsInf(v, -1):
					b.WriteString("-1e999")
				default:
					b.WriteString(sqliteReal(v))
				}
			case []byte:
				jsonString(&b, string(v))
			default:
				s, _ := text(v)
				jsonString(&b, s)
			}
		}
		b.WriteString("}")
	}
	b.WriteString("]\n")
	io.WriteString(w, b.String())
}

// jsonString writes s as sqlite3 does: quote and backslash escaped,
// control characters as \b \f \n \r \t or \u00XX, everything else as is.
func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < ' ' {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// ---- quote, insert

// sqliteReal prints a REAL as sqlite3's quote, insert, json modes and
// .dump do: an integral value as "N.0", others with 20 significant digits.
func sqliteReal(v float64) string {
	if v >= -9.2e18 && v <= 9.2e18 && v == math.Trunc(v) {
		return strconv.FormatInt(int64(v), 10) + ".0"
	}
	return sqliteFloat(v, 20)
}

// sqlLiteral is a value as an SQL literal; escapeNewlines writes newlines
// and carriage returns as replace(...) calls, as .dump and insert mode do.
func sqlLiteral(v any, escapeNewlines bool) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return sqliteFloat(v, 20)
		}
		return sqliteReal(v)
	case []byte:
		return "X'" + hex.EncodeToString(v) + "'"
	case string:
		return quoteText(v, escapeNewlines)
	case time.Time:
		return quoteText(sqliteTime(v), escapeNewlines)
	}
	s, _ := text(v)
	return s
}

func quoteText(s string, escapeNewlines bool) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if !escapeNewlines || !strings.ContainsAny(s, "\n\r") {
		return q
	}
	nl, cr := strings.Contains(s, "\n"), strings.Contains(s, "\r")
	if nl {
		q = strings.ReplaceAll(q, "\n", `\n`)
	}
	if cr {
		q = strings.ReplaceAll(q, "\r", `\r`)
		q = "replace(" + q + ",'\\r',char(13))"
	}
	if nl {
		q = "replace(" + q + ",'\\n',char(10))"
	}
	return q
}

func (o *output) printQuote(w io.Writer, res *queryResult) {
	var b strings.Builder
	if o.headers {
		for i, c := range res.cols {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(quoteText(c, false))
		}
		b.WriteString("\n")
	}
	for _, r := range res.rows {
		for i, v := range r {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(sqlLiteral(v, false))
		}
		b.WriteString("\n")
	}
	io.WriteString(w, b.String())
}

// quoteIdent quotes an identifier when it needs it, as sqlite3 does.
func quoteIdent(s string) string {
	plain := s != "" && !(s[0] >= '0' && s[0] <= '9') && !isKeyword(s)
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func (o *output) printInsert(w io.Writer, res *queryResult) {
	var b strings.Builder
	for _, r := range res.rows {
		b.WriteString("INSERT INTO ")
		b.WriteString(quoteIdent(o.table))
		if o.headers {
			b.WriteString("(")
			for i, c := range res.cols {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(quoteIdent(c))
			}
			b.WriteString(")")
		}
		b.WriteString(" VALUES(")
		for i, v := range r {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(sqlLiteral(v, true))
		}
		b.WriteString(");\n")
	}
	io.WriteString(w, b.String())
}

// ---- html

func (o *output) printHTML(w io.Writer, res *queryResult) {
	var b strings.Builder
	row := func(tag string, vals []string) {
		b.WriteString("<TR>")
		for i, v := range vals {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "<%s>%s</%s>", tag, htmlEscape(v), tag)
		}
		b.WriteString("\n</TR>\n")
	}
	if o.headers {
		row("TH", res.cols)
	}
	for _, r := range res.rows {
		vals := make([]string, len(r))
		for i, v := range r {
			vals[i] = o.textOrNull(v)
		}
		row("TD", vals)
	}
	io.WriteString(w, b.String())
}

func htmlEscape(s string) string {
	return strings.NewReplacer("<", "&lt;", "&", "&amp;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

// ---- numbers

// sqliteFloat formats v as SQLite's printf formats it with "%!.Ng"
// (precision 15 for sqlite3_column_text, 20 for quote and json): the
// digits come from its long double arithmetic, which big.Float at 64 bits
// of precision reproduces, so that even the digits beyond a double's
// precision are the ones sqlite3 prints.
func sqliteFloat(v float64, precision int) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	prefix := ""
	if v < 0 {
		v, prefix = -v, "-"
	}
	if math.IsInf(v, 0) {
		return prefix + "Inf"
	}
	ld := func(x float64) *big.Float { return new(big.Float).SetPrec(64).SetFloat64(x) }
	mul := func(x *big.Float, y float64) *big.Float { return x.Mul(x, ld(y)) }
	real := ld(v)
	precision-- // %g counts the digit before the point
	rounder := []float64{5.0e-01, 5.0e-02, 5.0e-03, 5.0e-04, 5.0e-05, 5.0e-06, 5.0e-07, 5.0e-08, 5.0e-09, 5.0e-10}[precision%10]
	for i := precision; i >= 10; i -= 10 {
		rounder *= 1.0e-10
	}
	exp := 0
	if real.Sign() > 0 {
		scale := ld(1)
		for _, step := range []struct {
			f float64
			e int
		}{{1e100, 100}, {1e10, 10}, {10, 1}} {
			for exp <= 350 && new(big.Float).SetPrec(64).Mul(ld(step.f), scale).Cmp(real) <= 0 {
				mul(scale, step.f)
				exp += step.e
			}
		}
		real.Quo(real, scale)
		for real.Cmp(ld(1e-8)) < 0 {
			mul(real, 1e8)
			exp -= 8
		}
		for real.Cmp(ld(1)) < 0 {
			mul(real, 10)
			exp--
		}
		if exp > 350 {
			return prefix + "Inf"
		}
	}
	real.Add(real, ld(rounder))
	if real.Cmp(ld(10)) >= 0 {
		mul(real, 0.1)
		exp++
	}
	expForm := exp < -4 || exp > precision
	e2 := exp
	if expForm {
		e2 = 0
	} else {
		precision -= exp
	}
	digits := 26 // SQLite's significant-digit limit with the "!" flag
	digit := func() byte {
		if digits <= 0 {
			return '0'
		}
		digits--
		d, _ := real.Int64()
		real.Sub(real, ld(float64(d)))
		mul(real, 10)
		return byte('0' + d)
	}
	var b strings.Builder
	b.WriteString(prefix)
	if e2 < 0 {
		b.WriteByte('0')
	}
	for ; e2 >= 0; e2-- {
		b.WriteByte(digit())
	}
	b.WriteByte('.')
	for e2++; e2 < 0; e2++ {
		b.WriteByte('0')
		precision--
	}
	for ; precision > 0; precision-- {
		b.WriteByte(digit())
	}
	s := strings.TrimRight(b.String(), "0")
	if strings.HasSuffix(s, ".") {
		s += "0"
	}
	if expForm {
		sign := '+'
		if exp < 0 {
			sign, exp = '-', -exp
		}
		s += fmt.Sprintf("e%c%02d", sign, exp)
	}
	return s
}
