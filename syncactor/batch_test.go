package syncactor

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire/hrana"
)

// The push batch, as scenarios (and a fork's, see forkCase): testdata/push/*.txt give the captured
// changes of one batch (as dbactor's PendingChanges hands them over) and
// the server's high-water mark; the output is the server transaction
// buildBatch plans, step by step with its role and the condition it runs
// under. go test ./syncactor -run TestPushBatch -rewrite rewrites them
// (cockroachdb/datadriven's format: a command, its input, "----", the
// output).
//
// The case's command:
//
//	push client=ID gen=N [mark=G/ID] [chain=V|chain=unknown] [ignored=T,...]
//
// gen is the local pull generation, mark the server's high-water mark for
// the client (none if absent). Input lines: "table NAME (COL, ...) [pk=COL,...]
// [rowid]" declares a table's columns, key and whether the key is a rowid
// alias; a change is "ID txn=TXN OP TABLE [rowid=R|rowid=OLD>NEW] [assigned]
// [old=(V, ...)] [new=(V, ...)]" or "ID txn=TXN schema TABLE SQL...". Values
// are SQL literals: 1, 1.5, 'text', x'00ff', NULL.
func TestPushBatch(t *testing.T) {
	datadriven.Walk(t, "testdata/push", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, c *datadriven.TestData) string { return pushCase(t, c) })
	})
}

func pushCase(t *testing.T, c *datadriven.TestData) string {
	switch c.Cmd {
	case "fork":
		return forkCase(t, c)
	case "push":
	default:
		t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
	}
	cs, err := parseChanges(strings.Split(c.Input, "\n"))
	if err != nil {
		t.Fatalf("%s: %v", c.Pos, err)
	}
	if len(cs) == 0 {
		// pushOnce sends no batch for nothing: it only records the push.
		return "no batch: nothing to push"
	}
	id := arg(c, "client", "c1")
	gen := mustInt(t, c, arg(c, "gen", "1"))
	var hw *messages.Mark
	if m := arg(c, "mark", ""); m != "" {
		g, i, _ := strings.Cut(m, "/")
		hw = &messages.Mark{Gen: mustInt(t, c, g), ID: mustInt(t, c, i)}
	}
	ci := messages.ChainInfo{OK: true, Value: 7}
	switch v := arg(c, "chain", "7"); v {
	case "unknown":
		ci = messages.ChainInfo{}
	default:
		ci.Value = mustInt(t, c, v)
	}
	ignored := map[string]bool{}
	if c.HasArg("ignored") {
		for _, name := range strings.Split(arg(c, "ignored", ""), ",") {
			ignored[name] = true
		}
	}
	floor := pushFloor(hw, gen)
	var out strings.Builder
	if hw == nil {
		fmt.Fprintf(&out, "floor %d (the server has no mark for %s)\n", floor, id)
	} else {
		fmt.Fprintf(&out, "floor %d (the server's mark for %s is generation %d, change %d)\n", floor, id, hw.Gen, hw.ID)
	}
	b, err := buildBatch(id, gen, floor, cs, ignored, ci)
	if err != nil {
		return out.String() + "error: " + err.Error()
	}
	out.WriteString(describeBatch(b))
	return out.String()
}

// forkCase: "fork client=NEW old=OLD gen=G last=L [oldmark=G/ID]" is a
// copy that took the client id NEW and inherited the changes of
// generation G up to L made under OLD, whose mark on the server is oldmark
// (none if absent); the output is forkClaim's decision and forkBatch's
// transaction (the chain values are 7 up to L, 5 up to the new floor).
func forkCase(t *testing.T, c *datadriven.TestData) string {
	o := messages.Origin{ClientID: arg(c, "old", "c1"), PullGen: mustInt(t, c, arg(c, "gen", "1")), Last: mustInt(t, c, arg(c, "last", "0"))}
	id := arg(c, "client", "c2")
	var old *messages.Mark
	if m := arg(c, "oldmark", ""); m != "" {
		g, i, _ := strings.Cut(m, "/")
		old = &messages.Mark{Gen: mustInt(t, c, g), ID: mustInt(t, c, i)}
	}
	claim, floor := forkClaim(o, old)
	var out strings.Builder
	if claim == nil {
		fmt.Fprintf(&out, "%s keeps the inherited changes; %s starts after change %d\n", o.ClientID, id, floor)
	} else {
		fmt.Fprintf(&out, "%s takes the inherited changes after %d of generation %d; %s's mark moves from %d to %d\n",
			id, claim.ID, o.PullGen, o.ClientID, claim.ID, o.Last)
	}
	out.WriteString(describeBatch(forkBatch(id, o, claim, floor, messages.ChainInfo{OK: true, Value: 7}, messages.ChainInfo{OK: true, Value: 5})))
	return out.String()
}

// arg is the command's value for key (its values joined by ","), or def.
func arg(c *datadriven.TestData, key, def string) string {
	for _, a := range c.CmdArgs {
		if a.Key == key {
			return strings.Join(a.Vals, ",")
		}
	}
	return def
}

// describeBatch prints one step a line: its number, the condition it
// runs under ("open": the transaction is, not autocommit; "ok N", "failed
// N": step N's outcome; step 0 runs always), its role and its statement.
func describeBatch(b *batch) string {
	isMark := map[int]bool{}
	for _, i := range b.marks {
		isMark[i] = true
	}
	var out strings.Builder
	for i, st := range b.steps {
		sql := *st.Stmt.SQL
		args := values(st.Stmt.Args)
		var role string
		switch c, ok := b.changeAt[i]; {
		case isMark[i] && len(st.Stmt.Args) == 3:
			role, sql, args = "continuity", fmt.Sprintf("the server's mark for %s is generation %s, change %s",
				literal(st.Stmt.Args[0].V), literal(st.Stmt.Args[1].V), literal(st.Stmt.Args[2].V)), ""
		case ok && b.guards[i]:
			role = fmt.Sprintf("guard %d", c.ID)
		case ok:
			role = fmt.Sprintf("change %d", c.ID)
		case sql == "BEGIN IMMEDIATE", sql == "COMMIT":
			role = strings.ToLower(strings.Fields(sql)[0])
		case sql == highWaterTable:
			role = "mark table"
		case sql == highWaterUpsert && len(st.Stmt.Args) == 3:
			role, sql = "mark", "set the mark for %s to generation %s, change %s"
			if s, _ := st.Stmt.Args[0].V.(string); strings.HasSuffix(s, dbactor.ChainSuffix) {
				role, sql = "chain", "set the push chain %s to generation %s, value %s"
			}
			sql, args = fmt.Sprintf(sql, literal(st.Stmt.Args[0].V), literal(st.Stmt.Args[1].V), literal(st.Stmt.Args[2].V)), ""
		default:
			role = "?"
		}
		when := "always"
		if st.Condition != nil {
			when = cond(*st.Condition)
		}
		line := fmt.Sprintf("%2d %-16s %-10s %s", i, when, role, sql)
		if args != "" {
			line += " " + args
		}
		if tol, ok := b.tolerated[i]; ok {
			line += fmt.Sprintf(" (may fail with %q)", tol)
		}
		out.WriteString(line + "\n")
	}
	return out.String()
}

func cond(c hrana.BatchCond) string {
	join := func(op string) string {
		parts := make([]string, len(c.Conds))
		for i, x := range c.Conds {
			parts[i] = cond(x)
			if len(x.Conds) > 1 {
				parts[i] = "(" + parts[i] + ")"
			}
		}
		return strings.Join(parts, op)
	}
	switch c.Type {
	case hrana.CondOK:
		return fmt.Sprintf("ok %d", c.Step)
	case hrana.CondError:
		return fmt.Sprintf("failed %d", c.Step)
	case hrana.CondIsAutocommit:
		return "autocommit"
	case hrana.CondNot:
		if c.Cond.Type == hrana.CondIsAutocommit {
			return "open"
		}
		return "not " + cond(*c.Cond)
	case hrana.CondAnd:
		return join(" & ")
	case hrana.CondOr:
		return join(" | ")
	}
	return fmt.Sprintf("?%v", c.Type)
}

func values(vs []hrana.Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = literal(v.V)
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func literal(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0"
		}
		return s
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case []byte:
		return "x'" + hex.EncodeToString(v) + "'"
	}
	return fmt.Sprintf("?%T(%v)", v, v)
}

func mustInt(t *testing.T, c *datadriven.TestData, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", c.Pos, err)
	}
	return n
}

type table struct {
	cols  []string
	pk    []int
	alias bool
}

func parseChanges(lines []string) ([]change.Change, error) {
	tables := map[string]table{}
	var cs []change.Change
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "table "); ok {
			name, rest, _ := strings.Cut(rest, " ")
			open, close := strings.Index(rest, "("), strings.Index(rest, ")")
			if open < 0 || close < open {
				return nil, fmt.Errorf("%q: no column list", l)
			}
			var tb table
			for _, c := range strings.Split(rest[open+1:close], ",") {
				tb.cols = append(tb.cols, strings.TrimSpace(c))
			}
			for _, w := range strings.Fields(rest[close+1:]) {
				switch k, v, _ := strings.Cut(w, "="); k {
				case "pk":
					for _, name := range strings.Split(v, ",") {
						i := index(tb.cols, name)
						if i < 0 {
							return nil, fmt.Errorf("%q: no column %q", l, name)
						}
						tb.pk = append(tb.pk, i)
					}
				case "rowid":
					tb.alias = true
				default:
					return nil, fmt.Errorf("%q: unknown word %q", l, w)
				}
			}
			tables[name] = tb
			continue
		}
		c, err := parseChange(l, tables)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", l, err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func index(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func parseChange(l string, tables map[string]table) (change.Change, error) {
	var c change.Change
	words := strings.SplitN(l, " ", 4)
	if len(words) < 4 {
		return c, fmt.Errorf("want: ID txn=TXN OP TABLE ...")
	}
	var err error
	if c.ID, err = strconv.ParseInt(words[0], 10, 64); err != nil {
		return c, err
	}
	txn, ok := strings.CutPrefix(words[1], "txn=")
	if !ok {
		return c, fmt.Errorf("no txn=")
	}
	if c.Txn, err = strconv.ParseInt(txn, 10, 64); err != nil {
		return c, err
	}
	name, rest, _ := strings.Cut(words[3], " ")
	c.Table = name
	switch words[2] {
	case "insert":
		c.Op = change.Insert
	case "update":
		c.Op = change.Update
	case "delete":
		c.Op = change.Delete
	case "schema":
		c.Op, c.SQL = change.Schema, rest
		return c, nil
	default:
		return c, fmt.Errorf("unknown op %q", words[2])
	}
	tb, ok := tables[name]
	if !ok {
		return c, fmt.Errorf("table %q not declared", name)
	}
	c.Columns, c.PK, c.RowidAlias = tb.cols, tb.pk, tb.alias
	for rest != "" {
		var w string
		w, rest, err = nextWord(rest)
		if err != nil {
			return c, err
		}
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "rowid":
			o, n, moved := strings.Cut(v, ">")
			if !moved {
				n = o
			}
			if c.OldRowid, err = strconv.ParseInt(o, 10, 64); err != nil {
				return c, err
			}
			if c.NewRowid, err = strconv.ParseInt(n, 10, 64); err != nil {
				return c, err
			}
			if c.Op == change.Insert {
				c.OldRowid = 0
			}
			if c.Op == change.Delete {
				c.NewRowid = 0
			}
		case "assigned":
			c.KeyAssigned = true
		case "old", "new":
			img, err := parseTuple(v)
			if err != nil {
				return c, err
			}
			if k == "old" {
				c.Before = img
			} else {
				c.After = img
			}
		default:
			return c, fmt.Errorf("unknown word %q", w)
		}
	}
	return c, nil
}

// nextWord cuts the next word off s: up to a space outside parentheses
// and quotes.
func nextWord(s string) (word, rest string, err error) {
	s = strings.TrimLeft(s, " ")
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '\'':
			quoted = !quoted
		case quoted:
		case ch == '(':
			depth++
		case ch == ')':
			depth--
		case ch == ' ' && depth == 0:
			return s[:i], strings.TrimLeft(s[i:], " "), nil
		}
	}
	if depth != 0 || quoted {
		return "", "", fmt.Errorf("unbalanced %q", s)
	}
	return s, "", nil
}

// parseTuple reads "(v, ...)" of SQL literals.
func parseTuple(s string) ([]any, error) {
	inner, ok := strings.CutPrefix(s, "(")
	if ok {
		inner, ok = strings.CutSuffix(inner, ")")
	}
	if !ok {
		return nil, fmt.Errorf("%q is not a (tuple)", s)
	}
	var vals []any
	for inner = strings.TrimSpace(inner); inner != ""; {
		var lit string
		if inner[0] == '\'' {
			i := 1
			for ; i < len(inner); i++ {
				if inner[i] == '\'' {
					if i+1 < len(inner) && inner[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
			if i == len(inner) {
				return nil, fmt.Errorf("unterminated text in %q", s)
			}
			lit, inner = inner[:i+1], inner[i+1:]
		} else {
			j := strings.IndexByte(inner, ',')
			if j < 0 {
				j = len(inner)
			}
			lit, inner = strings.TrimSpace(inner[:j]), inner[j:]
		}
		v, err := parseLiteral(lit)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		inner = strings.TrimSpace(inner)
		if inner != "" {
			if inner[0] != ',' {
				return nil, fmt.Errorf("want , in %q", s)
			}
			inner = strings.TrimSpace(inner[1:])
		}
	}
	return vals, nil
}

func parseLiteral(s string) (any, error) {
	switch {
	case strings.EqualFold(s, "NULL"):
		return nil, nil
	case strings.HasPrefix(s, "'"):
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case strings.HasPrefix(s, "x'"), strings.HasPrefix(s, "X'"):
		return hex.DecodeString(strings.TrimSuffix(s[2:], "'"))
	case strings.ContainsAny(s, ".eE"):
		return strconv.ParseFloat(s, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}
