package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the controlling side and the terminal
// a child gets as stdin, stdout and stderr.
func openPTY(t *testing.T) (ctl, tty *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	fd := int(ctl.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 200}); err != nil {
		t.Fatal(err)
	}
	return ctl, tty
}

// terminal is a syncdb process on a pseudo-terminal.
type terminal struct {
	t    *testing.T
	ctl  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	seen int // out up to here was matched by expect
	done chan error
	// history is the shell's history file.
	history string
}

func startOnTerminal(t *testing.T, args ...string) *terminal {
	ctl, tty := openPTY(t)
	cmd := exec.Command(binary, args...)
	history := filepath.Join(t.TempDir(), "history")
	cmd.Env = append(os.Environ(), historyEnv+"="+history)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	term := &terminal{t: t, ctl: ctl, cmd: cmd, done: make(chan error, 1), history: history}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ctl.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { term.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		ctl.Close()
	})
	return term
}

func (term *terminal) send(s string) {
	if _, err := term.ctl.WriteString(s); err != nil {
		term.t.Fatal(err)
	}
}

// expect waits for s to appear in the output after what was matched
// before, and returns the output up to it.
func (term *terminal) expect(s string) string {
	term.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		term.mu.Lock()
		out := term.out.String()[term.seen:]
		if i := strings.Index(out, s); i >= 0 {
			term.seen += i + len(s)
			term.mu.Unlock()
			return out[:i+len(s)]
		}
		term.mu.Unlock()
		if time.Now().After(deadline) {
			term.t.Fatalf("no %q in the terminal's output:\n%s", s, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On a terminal the shell prompts, continues statements over lines, lets
// Ctrl-C drop a line or cancel a running statement, and ends on .quit.
func TestShellOnTerminal(t *testing.T) {
	srv := startServer(t, t.TempDir())
	db := filepath.Join(t.TempDir(), "tty.db")
	term := startOnTerminal(t, "shell", "--url", srv.url, db)
	term.expect("downloaded ")
	term.expect(".help")
	term.expect("syncdb> ")

	// The line editor redraws the prompt as keys arrive, so the output is
	// matched by what the shell prints, not by the prompts.
	term.send("SELECT 40 + 2\r")
	term.expect("   ...> ")
	term.send("  AS answer;\r")
	term.expect(" answer\r\n--------\r\n     42\r\n(1 row)\r\n")

	// Ctrl-C drops the line being typed (and the statement begun).
	term.send("SELECT 'never\x03")
	term.expect("syncdb> ")
	term.send("SELECT 1 AS one;\r")
	if out := term.expect(" one\r\n-----\r\n   1\r\n"); strings.Contains(out, "...>") || strings.Contains(out, "Error") {
		t.Fatalf("after Ctrl-C:\n%q", out)
	}

	// History: the up arrow brings the last line back, Ctrl-R finds an
	// older one.
	term.send("SELECT 'hist' AS h;\r")
	term.expect(" hist\r\n(1 row)\r\n")
	term.send("SELECT 2 AS two;\r")
	term.expect("   2\r\n(1 row)\r\n")
	term.send("\x1b[A\r")
	term.expect("   2\r\n(1 row)\r\n")
	term.send("\x12hist")
	term.expect("hist")
	term.send("\r")
	term.expect(" hist\r\n(1 row)\r\n")

	// Ctrl-C cancels a running statement; the shell goes on.
	term.send("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;\r")
	time.Sleep(500 * time.Millisecond)
	term.send("\x03")
	term.expect("Error: interrupted")
	term.expect("syncdb> ")

	// Inside BEGIN ... COMMIT, Ctrl-C rolls the transaction back.
	term.send("BEGIN;\r")
	term.expect("syncdb> ")
	term.send("CREATE TABLE gone(id INTEGER PRIMARY KEY);\r")
	term.expect("syncdb> ")
	term.send("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;\r")
	time.Sleep(500 * time.Millisecond)
	term.send("\x03")
	term.expect("Error: interrupted: the transaction was rolled back")
	term.expect("syncdb> ")
	term.send(".tables\r")
	if out := term.expect("syncdb> "); strings.Contains(out, "gone") {
		t.Fatalf("the rolled back table is there:\n%q", out)
	}

	term.send("CREATE TABLE t(id INTEGER PRIMARY KEY);\r")
	term.expect("syncdb> ")
	term.send("INSERT INTO t VALUES (1);\r")
	term.expect("1 row affected")
	term.send(".push\r")
	term.expect("pushed 2 changes")
	term.send(".quit\r")
	select {
	case err := <-term.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the shell did not exit on .quit")
	}
	// The history outlives the session.
	if hist, err := os.ReadFile(term.history); err != nil || !strings.Contains(string(hist), "SELECT 'hist' AS h;\n") {
		t.Fatalf("history file: %v\n%s", err, hist)
	}

	// On a terminal, a download shows a progress bar on stderr.
	term = startOnTerminal(t, "pull", "--url", srv.url, filepath.Join(t.TempDir(), "bar.db"))
	term.expect("downloading")
	term.expect("downloaded ")
	if err := <-term.done; err != nil {
		t.Fatalf("pull on a terminal: %v", err)
	}
}
