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

	"github.com/syncdb/syncdb/internal/sqlitex"
)

const (
	prompt             = "syncdb> "
	continuationPrompt = "   ...> "
)

const shellHelp = `Runs SQL statements on the local database and prints the results, like the
sqlite3 command: from the SQL arguments after PATH if there are any (then
stdin is not read), else from stdin. A statement may span lines and ends
with ";". Lines starting with "." are shell commands (.help lists them:
.mode, .headers, .dump, .read, .import, .output, .tables, .schema, .indexes,
.open, and syncdb's .pull, .push, .sync, .stats, .checkpoint).

Results print as an aligned table with a row count ("N rows affected" for
INSERT, UPDATE and DELETE) unless a mode flag or .mode chooses one of
sqlite3's output modes, which print exactly what sqlite3 prints.

With a terminal: prompts, line editing, history kept in ~/.syncdb_history
(or $SYNCDB_HISTORY; Ctrl-R searches it); Ctrl-C cancels the running
statement or the line being typed; Ctrl-D or .quit leaves. Otherwise: no
prompts; errors are printed with their line number, the script goes on
(unless --bail), and the exit status is 1 if any statement failed.

Each statement commits on its own and is pushed by the next .push or .sync
(or "syncdb push"). BEGIN ... COMMIT (or ROLLBACK) groups statements into one
transaction.

` + commonHelp

// modeFlags are the shell's flags that choose an output mode, as sqlite3's.
var modeFlags = []string{"box", "column", "csv", "html", "json", "line", "list", "markdown", "quote", "table", "tabs"}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runShell(c *cli, cmd *command, args []string) int {
	fs, f := newFlagSet(cmd, false)
	fs.BoolVar(&f.bail, "bail", false, "stop at the first error")
	var cmds multiFlag
	fs.Var(&cmds, "cmd", "run `COMMAND` (SQL or a dot-command) before the rest (repeatable)")
	o := defaultOutput()
	mode := map[string]*bool{}
	for _, m := range modeFlags {
		mode[m] = fs.Bool(m, false, "output mode "+m)
	}
	header := fs.Bool("header", false, "show column names (sqlite3's modes)")
	noHeader := fs.Bool("noheader", false, "do not show column names")
	sep := fs.String("separator", "", "column separator of list mode (default \"|\")")
	null := fs.String("nullvalue", "", "how NULL is shown in sqlite3's modes")
	pos, code, ok := c.parseFlags(cmd, fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return c.usageError(cmd, "missing PATH (the local database file)")
	}
	path, sqlArgs := pos[0], pos[1:]
	if path == "" {
		return c.usageError(cmd, "PATH is empty")
	}
	for _, m := range modeFlags {
		if *mode[m] {
			o.setMode(m, nil)
			if m == "csv" {
				o.rowSep = "\n" // sqlite3's -csv, unlike its .mode csv, ends rows with \n
			}
		}
	}
	o.headers = *header && !*noHeader
	if *sep != "" {
		o.sep = *sep
	}
	o.null = *null

	ctx, release := c.withInterrupt(context.Background())
	s, err := c.open(ctx, path, f)
	release()
	if err != nil {
		return c.fail(ctx, cmd, err)
	}
	interactive := isTerminal(c.stdinFile) && len(sqlArgs) == 0
	sh := &shell{c: c, s: s, out: c.stdout, errw: c.stderr, interactive: interactive, bail: f.bail, o: o, token: f.token}
	if sh.token == "" {
		sh.token = c.getenv(authTokenEnv)
	}
	var rd lineReader
	switch {
	case len(sqlArgs) > 0:
		rd = &argsReader{args: sqlArgs}
	case interactive && isTerminal(c.stdoutFile):
		tr, err := newTermReader(c)
		if err != nil {
			fmt.Fprintf(c.stderr, "syncdb shell: line editing is off: %v\n", err)
			rd = &plainReader{r: bufio.NewReader(c.stdin), promptW: c.stderr}
		} else {
			rd = tr
			defer tr.close()
		}
	case interactive:
		rd = &plainReader{r: bufio.NewReader(c.stdin), promptW: c.stderr}
	default:
		rd = &plainReader{r: bufio.NewReader(c.stdin)}
	}
	_, lineEditor := rd.(*termReader)
	stop := sh.handleInterrupts(!lineEditor)
	if !interactive {
		s.bootstrapped = false // the banner, which would mention it, is not shown
	}
	code = sh.loop(rd, cmds)
	stop()
	sh.closeOutput()
	if err := sh.s.close(); err != nil {
		fmt.Fprintf(c.stderr, "syncdb shell: close: %s\n", errorText(err))
		if code == exitOK {
			code = exitFailed
		}
	}
	return code
}

// argsReader hands out the SQL arguments of "syncdb shell PATH SQL...",
// each as a line of its own.
type argsReader struct{ args []string }

func (a *argsReader) readLine(string) (string, error) {
	if len(a.args) == 0 {
		return "", io.EOF
	}
	l := a.args[0]
	a.args = a.args[1:]
	if !strings.HasPrefix(strings.TrimSpace(l), ".") && !strings.HasSuffix(strings.TrimSpace(l), ";") {
		l += ";"
	}
	return l, nil
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
	o           output
	outFile     *os.File // .output or .once
	once        bool     // outFile is for the next result only
	token       string   // the auth token, for .open

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

// loop runs the -cmd commands, then reads and runs statements and
// commands until the end of the input or .quit, and returns the exit
// status.
func (sh *shell) loop(rd lineReader, cmds []string) int {
	var err error
	if len(cmds) > 0 {
		saved := sh.interactive
		sh.interactive = false
		err = sh.process(&argsReader{args: cmds}, "-cmd")
		sh.interactive = saved
	}
	if err == nil {
		if sh.interactive {
			sh.banner()
		}
		err = sh.process(rd, "")
	}
	if sh.tx != nil {
		sh.endTx(false)
		sh.error(0, errors.New("the open transaction was rolled back (end it with COMMIT to keep its changes)"))
	}
	var q errQuit
	switch {
	case errors.As(err, &q) && q.code != 0:
		return q.code
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

// process reads and runs statements and commands until the end of rd's
// input, a quit (returned as errQuit) or a stop (Ctrl-C in a script, an
// error with --bail).
func (sh *shell) process(rd lineReader, source string) error {
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
				err := sh.dot(trimmed)
				var q errQuit
				if errors.As(err, &q) {
					return q
				}
				if err != nil {
					sh.error(lineNo, err)
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
	return nil
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
		res      *queryResult
		affected int64 = -1
	)
	err := sh.withRunner(func(ctx context.Context, r runner) error {
		if info.kind == kindQuery || info.returning {
			rows, err := r.QueryContext(ctx, stmt)
			if err != nil {
				return err
			}
			res, err = collectResult(rows)
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
	switch {
	case res != nil:
		sh.o.print(sh.out, res)
		if sh.once {
			sh.closeOutput()
		}
	case affected >= 0 && sh.o.mode == "aligned":
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
