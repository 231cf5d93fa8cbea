package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
)

// cli is the process's environment, injectable so that tests can run the
// commands in-process.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// The real files behind stdin, stdout and stderr, if they are files:
	// terminals get prompts, line editing and progress bars.
	stdinFile, stdoutFile, stderrFile *os.File
	// notify registers for SIGINT (signal.Notify).
	notify func(chan<- os.Signal)
	// stopNotify undoes notify (signal.Stop).
	stopNotify func(chan<- os.Signal)
}

func newCLI() *cli {
	return &cli{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		stdinFile: os.Stdin, stdoutFile: os.Stdout, stderrFile: os.Stderr,
		notify:     func(ch chan<- os.Signal) { signal.Notify(ch, os.Interrupt) },
		stopNotify: func(ch chan<- os.Signal) { signal.Stop(ch) },
	}
}

func isTerminal(f *os.File) bool { return f != nil && term.IsTerminal(int(f.Fd())) }

// authTokenEnv is the environment variable read when --auth-token is not
// given.
const authTokenEnv = "SYNCDB_AUTH_TOKEN"

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// clientFlags are the flags the client commands share.
type clientFlags struct {
	recover    bool // open with Config.Recover (syncdb recover)
	url, token string
	json       bool
	bail       bool
	version    bool
}

// newFlagSet makes the flag set of a client command. Parse errors and -h
// are reported by parseFlags, not by the flag package.
func newFlagSet(cmd *command, withJSON bool) (*flag.FlagSet, *clientFlags) {
	f := &clientFlags{}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.url, "url", "", "server `URL` (needed the first time; saved in PATH-info)")
	fs.StringVar(&f.token, "auth-token", "", "auth `TOKEN` for the server (default $"+authTokenEnv+")")
	if withJSON {
		fs.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	}
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	return fs, f
}

// parseFlags parses flags that may come before or after the positional
// arguments. It returns the positional arguments, or ok false and the exit
// status after printing help (-h) or a usage error.
func (c *cli) parseFlags(cmd *command, fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			cmd.printHelp(c.stdout)
			fmt.Fprintln(c.stdout, "\nFlags:")
			fs.SetOutput(c.stdout)
			fs.PrintDefaults()
			return nil, exitOK, false
		}
		if err != nil {
			return nil, c.usageError(cmd, "%v", err), false
		}
		if v := fs.Lookup("version"); v != nil && v.Value.String() == "true" {
			fmt.Fprintln(c.stdout, versionText())
			return nil, exitOK, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, 0, true
}

// usageError prints a usage error for cmd and returns exitUsage.
func (c *cli) usageError(cmd *command, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "syncdb %s: %s\nUsage: syncdb %s %s\nRun 'syncdb %s -h' for help.\n",
		cmd.name, fmt.Sprintf(format, args...), cmd.name, cmd.args, cmd.name)
	return exitUsage
}

// onePath checks that exactly one positional argument, the database path,
// was given.
func (c *cli) onePath(cmd *command, pos []string) (string, int, bool) {
	switch {
	case len(pos) == 0:
		return "", c.usageError(cmd, "missing PATH (the local database file)"), false
	case len(pos) > 1:
		return "", c.usageError(cmd, "expected one PATH, got %d arguments: %q", len(pos), pos), false
	case pos[0] == "":
		return "", c.usageError(cmd, "PATH is empty"), false
	}
	return pos[0], 0, true
}

// checkURL validates a --url value.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("--url %q: %v", raw, err)
	}
	switch u.Scheme {
	case "http", "https", "libsql", "turso":
	default:
		return fmt.Errorf("--url %q is not an http(s) URL (for example http://127.0.0.1:8080)", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("--url %q has no host (for example http://127.0.0.1:8080)", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--url %q: a query or fragment is not allowed", raw)
	}
	return nil
}

// session is one open database.
type session struct {
	db   *syncdb.DB
	path string
	url  string // the server URL in use ("" if none is known)
	// bootstrapped: this open downloaded the database.
	bootstrapped bool
	openTime     time.Duration
	seenConflict int64 // the last conflict recorded before this session's operations
	// before the open, for syncdb recover: the backups of earlier
	// recoveries and the client id
	backups  []string
	clientID string
	noToken  bool // no auth token was given
	prog     *progress
	watch    *netWatch
	client   *http.Client
}

// userError is an error whose message says all (no library prefixes).
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

// wrapped is an error with its own message.
type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }

// errInterrupted reports that the user pressed Ctrl-C.
var errInterrupted = errors.New("interrupted")

// open opens the database at path, bootstrapping it from f.url the first
// time.
func (c *cli) open(ctx context.Context, path string, f *clientFlags) (*session, error) {
	if f.url != "" {
		if err := checkURL(f.url); err != nil {
			return nil, &userError{err.Error()}
		}
	}
	token := f.token
	if token == "" {
		token = c.getenv(authTokenEnv)
	}
	s, err := c.openLocked(ctx, path, f, token)
	if errors.Is(err, syncdb.ErrInUse) {
		return nil, &wrapped{fmt.Sprintf("%v: one process at a time may use a replica (an open shell, for example); quit it or wait for it to finish", err), err}
	}
	return s, err
}

func (c *cli) openLocked(ctx context.Context, path string, f *clientFlags, token string) (*session, error) {
	s := &session{path: path, url: f.url, noToken: token == "", prog: newProgress(c.stderr, isTerminal(c.stderrFile))}
	files := layout.For(path)
	meta, err := metaactor.Load(fsx.OS, files.Info)
	s.backups, _ = filepath.Glob(files.BeforeRecoverGlob())
	if meta != nil {
		s.clientID = meta.ClientUniqueID
	}
	switch {
	case err == nil:
		if s.url == "" && meta.SavedConfiguration != nil && meta.SavedConfiguration.RemoteURL != nil {
			s.url = *meta.SavedConfiguration.RemoteURL
		}
	case errors.Is(err, os.ErrNotExist):
		if _, serr := os.Stat(path); serr == nil {
			return nil, &userError{fmt.Sprintf("%s exists but is not a syncdb database (there is no %s-info); "+
				"syncdb does not adopt existing SQLite files: choose a new PATH", path, path)}
		}
		if f.url == "" {
			return nil, &userError{fmt.Sprintf("no database at %s: give --url URL to download it from a server "+
				"(for example: syncdb pull --url http://127.0.0.1:8080 %s)", path, path)}
		}
		s.bootstrapped = true
	default:
		return nil, err
	}
	base := netactor.NewHTTPClient()
	s.watch = &netWatch{base: base.Transport}
	s.client = &http.Client{Transport: s.watch}
	start := time.Now()
	err = s.do(ctx, func(ctx context.Context) error {
		var err error
		s.db, err = syncdb.Open(ctx, syncdb.Config{
			Path: path, URL: f.url, AuthToken: token, ClientName: "syncdb-cli",
			HTTPClient: s.client, Progress: s.prog.report, Recover: f.recover,
		})
		return err
	})
	s.openTime = time.Since(start)
	if err != nil {
		s.client.CloseIdleConnections()
		if s.bootstrapped {
			// syncdb.Open removed what the failed download left.
			msg := errorText(err)
			msg = strings.TrimPrefix(msg, "open "+path+": ")
			msg = strings.TrimPrefix(msg, "bootstrap: ")
			return nil, &wrapped{fmt.Sprintf("download %s from %s: %s", path, f.url, msg), err}
		}
		return nil, err
	}
	return s, nil
}

// do runs one network-capable operation. A request that cannot reach the
// server ends the operation at once with that error, instead of retrying
// for the library's default half minute: a command-line user is better
// served by a quick, clear failure.
func (s *session) do(ctx context.Context, op func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.watch.arm(cancel)
	err := op(ctx)
	s.watch.disarm()
	s.prog.done()
	if err != nil {
		var ue *unreachableError
		if cause := context.Cause(ctx); errors.As(cause, &ue) {
			return ue
		}
		var he *syncdb.HTTPError
		if s.noToken && errors.As(err, &he) && he.Status == http.StatusUnauthorized {
			return &wrapped{err.Error() + " (no token was given: use --auth-token T or set " + authTokenEnv + ")", err}
		}
	}
	return err
}

func (s *session) close() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
	}
	s.client.CloseIdleConnections()
	return err
}

// unreachableError: a request to the server failed below HTTP.
type unreachableError struct {
	url string
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the server at %s: %v", e.url, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// netWatch is an http.RoundTripper that ends the armed operation when a
// request fails to reach the server.
type netWatch struct {
	base http.RoundTripper
	mu   sync.Mutex
	stop context.CancelCauseFunc
}

func (w *netWatch) arm(stop context.CancelCauseFunc) {
	w.mu.Lock()
	w.stop = stop
	w.mu.Unlock()
}

func (w *netWatch) disarm() { w.arm(nil) }

func (w *netWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(req)
	if err != nil && req.Context().Err() == nil {
		w.mu.Lock()
		stop := w.stop
		w.mu.Unlock()
		if stop != nil {
			u := *req.URL
			u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/pull-updates"), "/v2/pipeline")
			stop(&unreachableError{url: u.String(), err: unwrapURLError(err)})
		}
	}
	return resp, err
}

// unwrapURLError drops the *url.Error wrapper ("Post URL: ...") around a
// transport error, since the message names the URL already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// errorText is the text printed for an error: the library's message with
// the advice that names the library's API put in the command's terms.
// (The library's messages carry no package prefix; network_test.go:
// noPrefix checks that.)
func errorText(err error) string {
	if errors.Is(err, context.Canceled) {
		return errInterrupted.Error()
	}
	msg := err.Error()
	if errors.Is(err, syncdb.ErrNoPrimaryKey) {
		// The command line has no Config.IgnoreTables.
		msg = strings.Replace(msg, ", or list it in Config.IgnoreTables to keep it local", "", 1)
	}
	if errors.Is(err, syncdb.ErrNoURL) {
		msg += " (give --url URL once; it is saved for later commands)"
	}
	if errors.Is(err, syncdb.ErrConflict) {
		// The library names DB.Conflicts and an absolute path; the list
		// was printed just above.
		if i := strings.Index(msg, "; see DB.Conflicts"); i >= 0 {
			msg = msg[:i]
		}
	}
	return msg
}

// withInterrupt returns a context that Ctrl-C (SIGINT) cancels, and a
// function to release it. A second Ctrl-C ends the process the default
// way, in case the operation does not stop.
func (c *cli) withInterrupt(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 1)
	c.notify(ch)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancel()
			c.stopNotify(ch)
		case <-done:
		}
	}()
	return ctx, func() {
		c.stopNotify(ch)
		close(done)
		cancel()
	}
}
