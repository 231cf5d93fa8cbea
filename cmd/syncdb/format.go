package main

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxBlobBytes is how many bytes of a blob a table shows.
const maxBlobBytes = 16

// resultSet is a query result, formatted for printing.
type resultSet struct {
	cols    []string
	rows    [][]string
	numeric [][]bool // right-aligned cells
}

// collectResult reads all rows, keeping the raw values.
func collectResult(rows *sql.Rows) (*queryResult, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	res := &queryResult{cols: cols}
	ptrs := make([]any, len(cols))
	for rows.Next() {
		vals := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		res.rows = append(res.rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// formatValue renders one SQLite value for a table, and whether it is a
// number.
func formatValue(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "NULL", false
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return formatFloat(v), true
	case []byte:
		return formatBlob(v), false
	case string:
		return escapeText(v), false
	case time.Time:
		// modernc.org/sqlite parses text in DATE/DATETIME/TIMESTAMP columns.
		return v.Format("2006-01-02 15:04:05.999999999Z07:00"), false
	case bool:
		if v {
			return "1", true
		}
		return "0", true
	default:
		return escapeText(fmt.Sprint(v)), false
	}
}

// formatFloat prints a REAL the way SQLite does: always with a decimal
// point or exponent.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

// formatBlob prints a blob as an x'..' literal, truncated after
// maxBlobBytes bytes.
func formatBlob(b []byte) string {
	if len(b) <= maxBlobBytes {
		return "x'" + hex.EncodeToString(b) + "'"
	}
	return fmt.Sprintf("x'%s...' (%d bytes)", hex.EncodeToString(b[:maxBlobBytes]), len(b))
}

// escapeText makes control characters visible so that a value stays on
// one line of the table.
func escapeText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// width is the display width of s (one column per rune).
func width(s string) int { return utf8.RuneCountInString(s) }

// print writes the result as an aligned table:
//
//	 id | body
//	----+-------
//	  1 | hello
//	  2 | NULL
//	(2 rows)
func (rs *resultSet) print(w io.Writer) {
	widths := make([]int, len(rs.cols))
	for i, c := range rs.cols {
		widths[i] = width(c)
	}
	for _, row := range rs.rows {
		for i, v := range row {
			widths[i] = max(widths[i], width(v))
		}
	}
	var b strings.Builder
	line := func(cells []string, right []bool) {
		b.Reset()
		for i, v := range cells {
			if i > 0 {
				b.WriteString(" |")
			}
			b.WriteByte(' ')
			pad := strings.Repeat(" ", widths[i]-width(v))
			if right != nil && right[i] {
				b.WriteString(pad + v)
			} else {
				b.WriteString(v + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	if len(rs.cols) > 0 {
		line(rs.cols, nil)
		b.Reset()
		for i, wd := range widths {
			if i > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.Repeat("-", wd+2))
		}
		fmt.Fprintln(w, b.String())
	}
	for i, row := range rs.rows {
		line(row, rs.numeric[i])
	}
	fmt.Fprintf(w, "(%s)\n", plural(len(rs.rows), "row"))
}

// plural formats "1 row", "2 rows".
func plural[T int64OrInt](n T, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

type int64OrInt interface{ ~int | ~int64 }

// humanBytes formats a byte count with binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if math.Abs(f) < unit || u == "TiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	panic("unreachable")
}

// humanTime formats a Unix time as RFC 3339 and how long ago it was.
func humanTime(unix int64, now time.Time) string {
	if unix == 0 {
		return "never"
	}
	t := time.Unix(unix, 0)
	return fmt.Sprintf("%s (%s)", t.Format(time.RFC3339), ago(now.Sub(t)))
}

// ago says how long ago a duration was, roughly.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return plural(int(d/time.Second), "second") + " ago"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	default:
		return plural(int(d/(24*time.Hour)), "day") + " ago"
	}
}

// seconds formats a duration for humans.
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
