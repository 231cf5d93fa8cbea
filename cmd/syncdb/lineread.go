package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/chzyer/readline"
)

// lineReader reads the shell's input one line at a time.
type lineReader interface {
	// readLine shows prompt (if the reader prompts) and returns the next
	// line without its line ending; io.EOF at the end; errInterrupted if
	// the user pressed Ctrl-C while typing.
	readLine(prompt string) (string, error)
}

// plainReader reads lines from a pipe or file, or from a terminal without
// line editing.
type plainReader struct {
	r       *bufio.Reader
	promptW io.Writer // nil: no prompt
}

func (p *plainReader) readLine(prompt string) (string, error) {
	if p.promptW != nil {
		io.WriteString(p.promptW, prompt)
	}
	line, err := p.r.ReadString('\n')
	if err == io.EOF && line != "" {
		err = nil // the last line had no newline; EOF comes next time
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	return line, err
}

// termReader reads lines from a terminal with line editing and a
// persistent history searchable with Ctrl-R (github.com/chzyer/readline).
// The terminal is in raw mode only while a line is being typed, so Ctrl-C
// during a statement still sends SIGINT.
type termReader struct{ rl *readline.Instance }

// historyEnv names the history file; the default is ~/.syncdb_history.
const historyEnv = "SYNCDB_HISTORY"

func newTermReader(c *cli) (*termReader, error) {
	hist := c.getenv(historyEnv)
	if hist == "" {
		if home, err := os.UserHomeDir(); err == nil {
			hist = filepath.Join(home, ".syncdb_history")
		}
	}
	rl, err := readline.NewEx(&readline.Config{
		Prompt:            prompt,
		HistoryFile:       hist,
		HistoryLimit:      maxHistory,
		HistorySearchFold: true,
		Stdin:             c.stdinFile,
		Stdout:            c.stdoutFile,
		Stderr:            c.stderrFile,
	})
	if err != nil {
		return nil, err
	}
	return &termReader{rl: rl}, nil
}

const maxHistory = 1000

func (r *termReader) readLine(prompt string) (string, error) {
	r.rl.SetPrompt(prompt)
	line, err := r.rl.Readline()
	if errors.Is(err, readline.ErrInterrupt) {
		return "", errInterrupted
	}
	return line, err
}

func (r *termReader) close() { r.rl.Close() }
