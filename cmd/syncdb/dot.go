package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// The shell's dot-commands. Those sqlite3 also has behave as in sqlite3;
// .pull, .push, .sync, .stats and .checkpoint are syncdb's.

const dotHelp = `.pull                  apply the server's changes
.push                  send the local changes to the server
.sync                  push, then pull
.stats                 revision, last pull and push, unpushed changes, WAL sizes
.checkpoint            move the WAL into the database file
.tables [PATTERN]      list the tables and views (PATTERN as for LIKE)
.schema [PATTERN]      show the CREATE statements (of the tables PATTERN matches)
.indexes [TABLE]       list the indexes (of TABLE)
.mode [MODE [TABLE]]   set the output mode: aligned (the default), box, column,
                       csv, html, insert (INSERTs into TABLE), json, line, list,
                       markdown, quote, table, tabs; without MODE, show it
.headers on|off        show column names (list, csv, tabs, column, quote,
                       insert, html)
.separator COL [ROW]   the column (and row) separator of list mode
.nullvalue TEXT        how NULL is shown
.output [FILE]         send results to FILE (to the terminal without FILE)
.once FILE             send the next result to FILE
.print TEXT...         print TEXT
.read FILE             run the statements and commands in FILE
.import [--csv] [--skip N] FILE TABLE
                       insert the rows of FILE (CSV with --csv or in csv mode,
                       else split at the separator) into the existing TABLE
.dump [TABLE...]       print the schema and rows as SQL (the tables given)
.open [--url URL] PATH close this database and open PATH
.bail on|off           stop at the first error
.show                  show the settings
.help                  show this help
.quit, .exit [CODE]    leave the shell (Ctrl-D too)

SQL statements end with ";" and commit one by one; BEGIN ... COMMIT or
ROLLBACK groups them. Ctrl-C cancels the running statement.
`

// errQuit ends the shell (.quit, .exit).
type errQuit struct{ code int }

func (errQuit) Error() string { return "quit" }

// dotArgs splits a dot-command line into words as sqlite3 does: white
// space separates them, and '...' or "..." quote (inside "...", backslash
// escapes).
func dotArgs(line string) []string {
	var args []string
	for i := 0; i < len(line); {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		var b strings.Builder
		switch q := line[i]; q {
		case '\'', '"':
			i++
			for i < len(line) && line[i] != q {
				if q == '"' && line[i] == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(line[i])
					}
				} else {
					b.WriteByte(line[i])
				}
				i++
			}
			i++
		default:
			for i < len(line) && line[i] != ' ' && line[i] != '\t' {
				b.WriteByte(line[i])
				i++
			}
		}
		args = append(args, b.String())
	}
	return args
}

// dot runs a shell command (a line starting with "."). A quit is reported
// as errQuit.
func (sh *shell) dot(line string) error {
	fields := dotArgs(line)
	name, args := fields[0], fields[1:]
	argc := func(lo, hi int, usage string) error {
		if len(args) < lo || hi >= 0 && len(args) > hi {
			return fmt.Errorf("usage: %s %s", name, usage)
		}
		return nil
	}
	switch name {
	case ".quit", ".q":
		return errQuit{} // sqlite3 ignores what follows
	case ".exit":
		code := 0
		if len(args) > 0 {
			code, _ = strconv.Atoi(args[0])
		}
		return errQuit{code}
	case ".help", ".h":
		fmt.Fprint(sh.out, dotHelp)
		return nil
	case ".tables":
		if err := argc(0, 1, "[PATTERN]"); err != nil {
			return err
		}
		return sh.tables(args)
	case ".schema":
		if err := argc(0, 1, "[PATTERN]"); err != nil {
			return err
		}
		return sh.schema(args)
	case ".indexes", ".indices":
		if err := argc(0, 1, "[TABLE]"); err != nil {
			return err
		}
		return sh.indexes(args)
	case ".mode":
		if len(args) == 0 {
			fmt.Fprintf(sh.out, "current output mode: %s\n", sh.o.mode)
			return nil
		}
		return sh.o.setMode(args[0], args[1:])
	case ".headers", ".header":
		if err := argc(1, 1, "on|off"); err != nil {
			return err
		}
		on, err := onOff(args[0])
		sh.o.headers = on
		return err
	case ".bail":
		if err := argc(1, 1, "on|off"); err != nil {
			return err
		}
		on, err := onOff(args[0])
		sh.bail = on
		return err
	case ".separator":
		if err := argc(1, 2, "COL [ROW]"); err != nil {
			return err
		}
		sh.o.sep = args[0]
		if len(args) > 1 {
			sh.o.rowSep = args[1]
		}
		return nil
	case ".nullvalue":
		if err := argc(1, 1, "TEXT"); err != nil {
			return err
		}
		sh.o.null = args[0]
		return nil
	case ".print":
		fmt.Fprintln(sh.out, strings.Join(args, " "))
		return nil
	case ".output", ".once":
		if name == ".once" {
			if err := argc(1, 1, "FILE"); err != nil {
				return err
			}
		} else if err := argc(0, 1, "[FILE]"); err != nil {
			return err
		}
		return sh.redirect(args, name == ".once")
	case ".show":
		fmt.Fprintf(sh.out, "        mode: %s\n     headers: %s\n   nullvalue: %q\n   colseparator: %q\n   rowseparator: %q\n        bail: %s\n",
			sh.o.mode, map[bool]string{true: "on", false: "off"}[sh.o.headers], sh.o.null, sh.o.sep, sh.o.rowSep,
			map[bool]string{true: "on", false: "off"}[sh.bail])
		return nil
	case ".read":
		if err := argc(1, 1, "FILE"); err != nil {
			return err
		}
		return sh.read(args[0])
	case ".dump":
		return sh.dump(args)
	case ".import":
		return sh.importFile(args)
	case ".open":
		return sh.open(args)
	case ".pull", ".push", ".sync", ".stats", ".checkpoint":
		if err := argc(0, 0, ""); err != nil {
			return fmt.Errorf("%s takes no arguments", name)
		}
		if sh.tx != nil {
			return fmt.Errorf("%s cannot run inside a transaction: COMMIT or ROLLBACK first", name)
		}
		return sh.syncCommand(name)
	}
	return fmt.Errorf("unknown command %s (.help lists the commands; SQL statements need no dot)", name)
}

func onOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "yes", "true", "1":
		return true, nil
	case "off", "no", "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", s)
}

// syncCommand runs .pull, .push, .sync, .stats or .checkpoint.
func (sh *shell) syncCommand(name string) error {
	s := sh.s
	var text string
	err := sh.op(func(ctx context.Context) error {
		switch name {
		case ".pull":
			r, err := s.pull(ctx)
			text = r.text(s)
			return err
		case ".push":
			r, err := s.push(ctx)
			text = r.text()
			return err
		case ".sync":
			push, pull, err := s.sync(ctx)
			if err == nil {
				text = push.text() + pull.text(s)
			}
			return err
		case ".stats":
			st, err := s.stats(ctx)
			text = statsText(s, st, time.Now())
			return err
		case ".checkpoint":
			before, after, err := s.checkpoint(ctx)
			text = checkpointText(s.path, before, after)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprint(sh.out, text)
	return nil
}

// redirect sends results to a file (.output FILE, .once FILE) or back to
// stdout (.output).
func (sh *shell) redirect(args []string, once bool) error {
	sh.closeOutput()
	if len(args) == 0 || args[0] == "stdout" {
		return nil
	}
	f, err := os.Create(args[0])
	if err != nil {
		return err
	}
	sh.outFile, sh.out, sh.once = f, f, once
	return nil
}

// closeOutput ends a redirection.
func (sh *shell) closeOutput() {
	if sh.outFile != nil {
		if err := sh.outFile.Close(); err != nil {
			sh.error(0, err)
		}
		sh.outFile = nil
	}
	sh.out, sh.once = sh.c.stdout, false
}

// read runs the statements and commands of a file, as if typed.
func (sh *shell) read(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	saved := sh.interactive
	sh.interactive = false
	defer func() { sh.interactive = saved }()
	return sh.process(&plainReader{r: bufio.NewReader(f)}, path)
}

// userObjects filters syncdb's own tables out of sqlite_schema.
const userObjects = `name NOT LIKE '\_syncdb\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'turso_sync_last_change_id'
	AND tbl_name NOT LIKE '\_syncdb\_%' ESCAPE '\' AND tbl_name <> 'turso_sync_last_change_id'`

// strings runs a query of one text column.
func (sh *shell) strings(q string, args ...any) ([]string, error) {
	var out []string
	err := sh.withRunner(func(ctx context.Context, r runner) error {
		rows, err := r.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	return out, err
}

func (sh *shell) tables(args []string) error {
	return sh.listNames("type IN ('table', 'view')", "name", args)
}

func (sh *shell) indexes(args []string) error {
	return sh.listNames("type = 'index'", "tbl_name", args)
}

// listNames prints the names of the user's schema objects that match
// cond, and whose column like matches the LIKE pattern in args, if any.
func (sh *shell) listNames(cond, like string, args []string) error {
	q := "SELECT name FROM sqlite_schema WHERE " + cond + " AND " + userObjects
	var qargs []any
	if len(args) == 1 {
		q += " AND " + like + " LIKE ?"
		qargs = append(qargs, args[0])
	}
	names, err := sh.strings(q+" ORDER BY name", qargs...)
	for _, n := range names {
		fmt.Fprintln(sh.out, n)
	}
	return err
}

func (sh *shell) schema(args []string) error {
	q := "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND " + userObjects
	var qargs []any
	if len(args) == 1 {
		q += " AND tbl_name LIKE ?"
		qargs = append(qargs, args[0])
	}
	q += " ORDER BY tbl_name, CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name"
	stmts, err := sh.strings(q, qargs...)
	if err != nil {
		return err
	}
	if len(stmts) == 0 && len(args) == 1 {
		return fmt.Errorf("no table matches %q", args[0])
	}
	for _, s := range stmts {
		fmt.Fprintf(sh.out, "%s;\n", s)
	}
	return nil
}

// dump prints the user's schema and rows as SQL, in sqlite3's .dump form:
// the tables with their rows in the order they were created, then the
// indexes, triggers and views. syncdb's own tables are left out.
func (sh *shell) dump(tables []string) error {
	type object struct{ typ, name, sql string }
	var objs []object
	err := sh.withRunner(func(ctx context.Context, r runner) error {
		rows, err := r.QueryContext(ctx, "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND "+userObjects+" ORDER BY rowid")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o object
			if err := rows.Scan(&o.typ, &o.name, &o.sql); err != nil {
				return err
			}
			objs = append(objs, o)
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	wanted := func(name string) bool {
		if len(tables) == 0 {
			return true
		}
		for _, t := range tables {
			if strings.EqualFold(t, name) {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	b.WriteString("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")
	for _, o := range objs {
		if o.typ != "table" || !wanted(o.name) {
			continue
		}
		b.WriteString(o.sql + ";\n")
		var res *queryResult
		err := sh.withRunner(func(ctx context.Context, r runner) error {
			rows, err := r.QueryContext(ctx, "SELECT * FROM "+quoteIdent(o.name))
			if err != nil {
				return err
			}
			res, err = collectResult(rows)
			return err
		})
		if err != nil {
			return err
		}
		for _, row := range res.rows {
			b.WriteString("INSERT INTO " + quoteIdent(o.name) + " VALUES(")
			for i, v := range row {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(sqlLiteral(v, true))
			}
			b.WriteString(");\n")
		}
	}
	if len(tables) == 0 {
		for _, o := range objs {
			if o.typ != "table" {
				b.WriteString(o.sql + ";\n")
			}
		}
	}
	b.WriteString("COMMIT;\n")
	_, err = io.WriteString(sh.out, b.String())
	return err
}

// importFile inserts the rows of a file into an existing table, in one
// transaction: CSV (with --csv, or in csv mode), or else lines split at
// the separator.
func (sh *shell) importFile(args []string) error {
	useCSV, skip := sh.o.mode == "csv", 0
	var pos []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--csv", "-csv":
			useCSV = true
		case "--skip", "-skip":
			if i+1 >= len(args) {
				return errors.New("usage: .import [--csv] [--skip N] FILE TABLE")
			}
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				return fmt.Errorf(".import --skip: %w", err)
			}
			skip = n
			i++
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return errors.New("usage: .import [--csv] [--skip N] FILE TABLE")
	}
	file, table := pos[0], pos[1]
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var records [][]string
	if useCSV {
		r := csv.NewReader(f)
		r.FieldsPerRecord = -1
		r.LazyQuotes = true
		if records, err = r.ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	} else {
		data, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), sh.o.rowSep), sh.o.rowSep) {
			records = append(records, strings.Split(strings.TrimSuffix(l, "\r"), sh.o.sep))
		}
	}
	if skip > len(records) {
		skip = len(records)
	}
	records = records[skip:]
	cols, err := sh.strings("SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return fmt.Errorf("no table %s: create it first, with a PRIMARY KEY (synced tables need one)", table)
	}
	ins := "INSERT INTO " + quoteIdent(table) + " VALUES(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	insert := func(ctx context.Context, tx *sql.Tx) error {
		for n, rec := range records {
			vals := make([]any, len(cols))
			for i := range vals {
				if i < len(rec) {
					vals[i] = rec[i]
				}
			}
			if _, err := tx.ExecContext(ctx, ins, vals...); err != nil {
				return fmt.Errorf("%s:%d: %w", file, n+skip+1, err)
			}
		}
		return nil
	}
	if sh.tx != nil {
		return sh.withRunner(func(ctx context.Context, _ runner) error { return insert(ctx, sh.tx) })
	}
	return sh.op(func(ctx context.Context) error {
		tx, err := sh.s.db.SQL().BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := insert(ctx, tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// open closes the database and opens another one.
func (sh *shell) open(args []string) error {
	f := &clientFlags{}
	var pos []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--url", "-url":
			if i+1 >= len(args) {
				return errors.New("usage: .open [--url URL] PATH")
			}
			f.url = args[i+1]
			i++
		default:
			pos = append(pos, args[i])
		}
	}
	if len(pos) != 1 {
		return errors.New("usage: .open [--url URL] PATH")
	}
	if sh.tx != nil {
		return errors.New(".open cannot run inside a transaction: COMMIT or ROLLBACK first")
	}
	if err := sh.s.close(); err != nil {
		sh.error(0, fmt.Errorf("close %s: %w", sh.s.path, err))
	}
	f.token = sh.token
	var s *session
	err := sh.op(func(ctx context.Context) error {
		var err error
		s, err = sh.c.open(ctx, pos[0], f)
		return err
	})
	if err != nil {
		// Back to the database we had, so that the shell stays usable.
		var rerr error
		sh.s, rerr = sh.c.open(context.Background(), sh.s.path, &clientFlags{token: sh.token})
		if rerr != nil {
			return errors.Join(err, rerr, errQuit{1})
		}
		return err
	}
	sh.s = s
	return nil
}
