package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/syncdb/syncdb/internal/sqlitex"
)

const (
	prompt             = "syncdb> "
	continuationPrompt = "   ...> "
)

const shellHelp = `Reads SQL statements from stdin, runs them on the local database and prints
the results: query rows as a table (NULL for NULL, blobs as x'..' hex),
"N rows affected" for INSERT, UPDATE and DELETE. A statement may span lines
and ends with ";". Lines starting with "." are shell commands (.help lists
them: .pull, .push, .sync, .stats, .checkpoint, .tables, .schema, .quit).

With a terminal: prompts, line editing and history; Ctrl-C cancels the
running statement or the line being typed; Ctrl-D or .quit leaves. With
piped input: no prompts; errors are printed with their line number, the
script goes on (unless --bail), and the exit status is 1 if any statement
failed.

Each statement commits on its own and is pushed by the next .push or .sync
(or "syncdb push"). BEGIN ... COMMIT (or ROLLBACK) groups statements into one
transaction.

` + commonHelp

const dotHelp = `.pull              apply the server's changes
.push              send the local changes to the server
.sync              push, then pull
.stats             revision, last pull and push, unpushed changes, WAL sizes
.checkpoint        move the WAL into the database file
.tables [PATTERN]  list the tables and views (PATTERN as for LIKE)
.schema [TABLE]    show the CREATE statements (of TABLE, a LIKE pattern)
.help              show this help
.quit, .exit       leave the shell (Ctrl-D too)

SQL statements end with ";" and commit one by one; BEGIN ... COMMIT or
ROLLBACK groups them. Ctrl-C cancels the running statement.
`

func runShell(c *cli, cmd *command, args []string) int {
	fs, f := newFlagSet(cmd, false)
	fs.BoolVar(&f.bail, "bail", false, "stop at the first error")
	pos, code, ok := c.parseFlags(cmd, fs, args)
	if !ok {
		return code
	}
	path, code, ok := c.onePath(cmd, pos)
	if !ok {
		return code
	}
	ctx, release := c.withInterrupt(context.Background())
	s, err := c.open(ctx, path, f)
	release()
	if err != nil {
		return c.fail(ctx, cmd, err)
	}
	interactive := isTerminal(c.stdinFile)
	sh := &shell{c: c, s: s, out: c.stdout, errw: c.stderr, interactive: interactive, bail: f.bail}
	var rd lineReader
	switch {
	case interactive && isTerminal(c.stdoutFile):
		rd = newTermReader(c.stdinFile, c.stdoutFile)
	case interactive:
		rd = &plainReader{r: bufio.NewReader(c.stdin), promptW: c.stderr}
	default:
		rd = &plainReader{r: bufio.NewReader(c.stdin)}
	}
	_, exitOnIdle := rd.(*plainReader)
	stop := sh.handleInterrupts(exitOnIdle)
	if !interactive {
		s.bootstrapped = false // the banner, which would mention it, is not shown
	}
	code = sh.loop(rd)
	stop()
	if err := s.close(); err != nil {
		fmt.Fprintf(c.stderr, "syncdb shell: close: %s\n", errorText(err))
		if code == exitOK {
			code = exitFailed
		}
	}
	return code
}

// shell is an interactive or scripted SQL session.
type shell struct {
	c           *cli
	s           *session
	out, errw   io.Writer
	interactive bool
	bail        bool
	failed      bool    // a statement or command failed
	interrupted bool    // Ctrl-C in a script: stop
	tx          *sql.Tx // open since BEGIN

	mu     sync.Mutex
	cancel context.CancelFunc // of the running operation; nil when idle
	opGen  int                // counts operations
}

// handleInterrupts makes Ctrl-C (SIGINT) cancel the running operation.
// With nothing running it ends the process if exitOnIdle (a script, or a
// terminal without line editing, where the read cannot be interrupted); a
// line editor sees Ctrl-C as a key instead.
func (sh *shell) handleInterrupts(exitOnIdle bool) (stop func()) {
	ch := make(chan os.Signal, 1)
	sh.c.notify(ch)
	done := make(chan struct{})
	go func() {
		cancelled := -1 // the operation (opGen) the last Ctrl-C cancelled
		for {
			select {
			case <-ch:
			case <-done:
				return
			}
			sh.mu.Lock()
			cancel, gen := sh.cancel, sh.opGen
			if !sh.interactive {
				sh.interrupted = true
			}
			sh.mu.Unlock()
			switch {
			case cancel != nil && gen == cancelled:
				// Ctrl-C again and the operation has not stopped: leave.
				fmt.Fprintln(sh.errw, "\ninterrupted")
				os.Exit(exitInterrupted)
			case cancel != nil:
				cancel()
				cancelled = gen
			case exitOnIdle:
				fmt.Fprintln(sh.errw, "\ninterrupted")
				os.Exit(exitInterrupted)
			}
		}
	}()
	return func() {
		sh.c.stopNotify(ch)
		close(done)
	}
}

// op runs fn with a context that Ctrl-C cancels.
func (sh *shell) op(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sh.setCancel(cancel)
	defer sh.setCancel(nil)
	err := fn(ctx)
	if err != nil && ctx.Err() != nil {
		return errInterrupted
	}
	return err
}

func (sh *shell) setCancel(cancel context.CancelFunc) {
	sh.mu.Lock()
	sh.cancel = cancel
	if cancel != nil {
		sh.opGen++
	}
	sh.mu.Unlock()
}

func (sh *shell) stopped() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.interrupted || sh.bail && sh.failed
}

// loop reads and runs statements and commands until the end of the input
// or .quit, and returns the exit status.
func (sh *shell) loop(rd lineReader) int {
	if sh.interactive {
		sh.banner()
	}
	var buf strings.Builder
	lineNo, startLine := 0, 0
	for !sh.stopped() {
		p := prompt
		if buf.Len() > 0 {
			p = continuationPrompt
		}
		line, err := rd.readLine(p)
		if errors.Is(err, errInterrupted) {
			buf.Reset()
			continue
		}
		if err != nil {
			if err != io.EOF {
				sh.error(0, fmt.Errorf("reading input: %w", err))
			}
			break
		}
		lineNo++
		if buf.Len() == 0 {
			trimmed := strings.TrimSpace(line)
			if trimmed == "" {
				continue
			}
			if strings.HasPrefix(trimmed, ".") {
				quit, err := sh.dot(trimmed)
				if err != nil {
					sh.error(lineNo, err)
				}
				if quit {
					break
				}
				continue
			}
			startLine = lineNo
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		// Only a line with a ";" can complete a statement.
		if strings.Contains(line, ";") && sqlComplete(buf.String()) {
			sh.runText(buf.String(), startLine)
			buf.Reset()
		}
	}
	if rest := buf.String(); !sh.stopped() && len(sqlitex.SplitStatements(rest)) > 0 {
		// The input ended without a ";": run what is there.
		sh.runText(rest, startLine)
	}
	if sh.tx != nil {
		sh.endTx(false)
		sh.error(0, errors.New("the open transaction was rolled back (end it with COMMIT to keep its changes)"))
	}
	switch {
	case sh.interactive:
		return exitOK
	case sh.interrupted:
		fmt.Fprintln(sh.errw, "interrupted")
		return exitInterrupted
	case sh.failed:
		return exitFailed
	}
	return exitOK
}

func (sh *shell) banner() {
	st, err := sh.s.stats(context.Background())
	if err != nil {
		sh.error(0, err)
		return
	}
	if sh.s.bootstrapped {
		fmt.Fprintf(sh.out, "downloaded %s from %s (%s)\n", sh.s.path, sh.s.url, humanBytes(st.NetworkReceivedBytes))
		sh.s.bootstrapped = false
	}
	server := sh.s.url
	if server == "" {
		server = "no server"
	}
	fmt.Fprintf(sh.out, "syncdb shell: %s (%s, revision %s, %s not pushed)\n", sh.s.path, server, st.Revision, plural(st.CDCOperations, "change"))
	fmt.Fprintln(sh.out, `Enter SQL statements ending with ";", or .help for the shell's commands.`)
}

// error reports a failed statement or command.
func (sh *shell) error(line int, err error) {
	sh.mu.Lock()
	sh.failed = true
	sh.mu.Unlock()
	msg := errorText(err)
	if !sh.interactive && line > 0 {
		fmt.Fprintf(sh.errw, "Error near line %d: %s\n", line, msg)
		return
	}
	fmt.Fprintf(sh.errw, "Error: %s\n", msg)
}

// runText runs the statements of text, which starts at input line line.
func (sh *shell) runText(text string, line int) {
	off := 0
	for _, st := range sqlitex.SplitStatements(text) {
		stLine := line
		if i := strings.Index(text[off:], st); i >= 0 {
			stLine += strings.Count(text[:off+i], "\n")
			off += i + len(st)
		}
		err := sh.runStmt(st)
		if err != nil {
			sh.error(stLine, err)
			if errors.Is(err, errInterrupted) {
				return // the rest of this input too
			}
		}
		if sh.stopped() {
			return
		}
	}
}

// runner runs statements on the database (its *sql.DB), or in the open
// transaction.
type runner interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// withRunner runs fn on the open transaction if there is one, else on the
// database, with a context that Ctrl-C cancels. Ctrl-C inside a
// transaction rolls it back.
func (sh *shell) withRunner(fn func(ctx context.Context, r runner) error) error {
	if sh.tx == nil {
		return sh.op(func(ctx context.Context) error { return fn(ctx, sh.s.db.SQL()) })
	}
	err := sh.op(func(ctx context.Context) error { return fn(ctx, sh.tx) })
	if errors.Is(err, errInterrupted) {
		sh.tx.Rollback()
		sh.tx = nil
		return fmt.Errorf("%w: the transaction was rolled back", errInterrupted)
	}
	return err
}

// runStmt runs one statement and prints its result.
func (sh *shell) runStmt(stmt string) error {
	info := classify(stmt)
	switch info.kind {
	case kindBegin:
		return sh.begin()
	case kindCommit:
		return sh.endTx(true)
	case kindRollback:
		return sh.endTx(false)
	}
	if info.keyword == "PRAGMA" && info.pragma == "wal_checkpoint" {
		return errors.New("PRAGMA wal_checkpoint is not allowed on a synced database: use .checkpoint")
	}
	if sh.tx == nil && (info.keyword == "SAVEPOINT" || info.keyword == "RELEASE" || info.keyword == "ROLLBACK") {
		return fmt.Errorf("%s works only inside BEGIN ... COMMIT in the shell", info.keyword)
	}
	var (
		res      *resultSet
		affected int64 = -1
	)
	err := sh.withRunner(func(ctx context.Context, r runner) error {
		if info.kind == kindQuery || info.returning {
			rows, err := r.QueryContext(ctx, stmt)
			if err != nil {
				return err
			}
			res, err = collect(rows)
			return err
		}
		result, err := r.ExecContext(ctx, stmt)
		if err != nil {
			return err
		}
		if info.kind == kindWrite {
			affected, _ = result.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if res != nil {
		res.print(sh.out)
	} else if affected >= 0 {
		fmt.Fprintf(sh.out, "%s affected\n", plural(affected, "row"))
	}
	return nil
}

// begin opens a transaction: a *sql.Tx on the writer, which runs nothing
// else until COMMIT or ROLLBACK (pulls, pushes and checkpoints wait).
func (sh *shell) begin() error {
	if sh.tx != nil {
		return errors.New("a transaction is already open (COMMIT or ROLLBACK it first)")
	}
	return sh.op(func(ctx context.Context) error {
		tx, err := sh.s.db.SQL().BeginTx(context.WithoutCancel(ctx), nil)
		sh.tx = tx
		return err
	})
}

// endTx commits or rolls back the open transaction.
func (sh *shell) endTx(commit bool) error {
	t := sh.tx
	if t == nil {
		return errors.New("no transaction is open")
	}
	sh.tx = nil
	if commit {
		return t.Commit()
	}
	return t.Rollback()
}

// dot runs a shell command (a line starting with ".").
func (sh *shell) dot(line string) (quit bool, err error) {
	fields := strings.Fields(line)
	name, args := fields[0], fields[1:]
	noArgs := func() error {
		if len(args) > 0 {
			return fmt.Errorf("%s takes no arguments", name)
		}
		return nil
	}
	maxOneArg := func() error {
		if len(args) > 1 {
			return fmt.Errorf("usage: %s [PATTERN]", name)
		}
		return nil
	}
	switch name {
	case ".quit", ".exit", ".q":
		return true, noArgs()
	case ".help", ".h":
		fmt.Fprint(sh.out, dotHelp)
		return false, nil
	case ".tables":
		if err := maxOneArg(); err != nil {
			return false, err
		}
		return false, sh.tables(args)
	case ".schema":
		if err := maxOneArg(); err != nil {
			return false, err
		}
		return false, sh.schema(args)
	case ".pull", ".push", ".sync", ".stats", ".checkpoint":
		if err := noArgs(); err != nil {
			return false, err
		}
		if sh.tx != nil {
			return false, fmt.Errorf("%s cannot run inside a transaction: COMMIT or ROLLBACK first", name)
		}
	default:
		return false, fmt.Errorf("unknown command %s (.help lists the commands; SQL statements need no dot)", name)
	}
	s := sh.s
	var text string
	err = sh.op(func(ctx context.Context) error {
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
		return false, err
	}
	fmt.Fprint(sh.out, text)
	return false, err
}

// notInternal filters syncdb's own tables out of sqlite_schema.
const notInternal = `name NOT LIKE '\_syncdb\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'turso_sync_last_change_id'
	AND tbl_name NOT LIKE '\_syncdb\_%' ESCAPE '\' AND tbl_name <> 'turso_sync_last_change_id'`

func (sh *shell) tables(args []string) error {
	q := "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND " + notInternal
	var qargs []any
	if len(args) == 1 {
		q += " AND name LIKE ?"
		qargs = append(qargs, args[0])
	}
	q += " ORDER BY name"
	var res *resultSet
	err := sh.withRunner(func(ctx context.Context, r runner) error {
		rows, err := r.QueryContext(ctx, q, qargs...)
		if err != nil {
			return err
		}
		res, err = collect(rows)
		return err
	})
	if err != nil {
		return err
	}
	for _, row := range res.rows {
		fmt.Fprintln(sh.out, row[0])
	}
	return nil
}

func (sh *shell) schema(args []string) error {
	q := "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND " + notInternal
	var qargs []any
	if len(args) == 1 {
		q += " AND tbl_name LIKE ?"
		qargs = append(qargs, args[0])
	}
	q += " ORDER BY tbl_name, CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name"
	var stmts []string
	err := sh.withRunner(func(ctx context.Context, r runner) error {
		rows, err := r.QueryContext(ctx, q, qargs...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			stmts = append(stmts, s)
		}
		return rows.Err()
	})
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
