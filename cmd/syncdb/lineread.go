package main

import (
	"bufio"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
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

// termReader reads lines from a terminal with line editing and history
// (golang.org/x/term), switching the terminal to raw mode only while a
// line is being typed, so that Ctrl-C during a statement still sends
// SIGINT.
type termReader struct {
	in, out *os.File
	keys    *ctrlCReader
	t       *term.Terminal
}

func newTermReader(in, out *os.File) *termReader {
	keys := &ctrlCReader{r: in}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{keys, out}, "")
	t.History = &history{}
	return &termReader{in: in, out: out, keys: keys, t: t}
}

func (r *termReader) readLine(prompt string) (string, error) {
	state, err := term.MakeRaw(int(r.in.Fd()))
	if err != nil {
		return "", err
	}
	defer term.Restore(int(r.in.Fd()), state)
	if w, h, err := term.GetSize(int(r.out.Fd())); err == nil && w > 0 && h > 0 {
		r.t.SetSize(w, h)
	}
	r.t.SetPrompt(prompt)
	line, err := r.t.ReadLine()
	if r.keys.interrupted {
		r.keys.interrupted = false
		return "", errInterrupted
	}
	if err == io.EOF && line == "" {
		io.WriteString(r.out, "\r\n") // leave the prompt's line
	}
	return line, err
}

// ctrlCReader hands the terminal's keys to term.Terminal one line at a
// time, turning Ctrl-C into Enter and noting it: term.Terminal itself
// would treat Ctrl-C as the end of input.
type ctrlCReader struct {
	r           io.Reader
	buf         [512]byte
	pending     []byte
	interrupted bool
}

func (c *ctrlCReader) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		n, err := c.r.Read(c.buf[:])
		if n == 0 {
			return 0, err
		}
		c.pending = c.buf[:n]
	}
	chunk := c.pending
	if i := strings.IndexAny(string(chunk), "\r\n\x03"); i >= 0 {
		if chunk[i] == '\r' && i+1 < len(chunk) && chunk[i+1] == '\n' {
			i++
		}
		chunk = chunk[:i+1]
	}
	n := copy(p, chunk)
	if n > 0 && p[n-1] == 0x03 {
		p[n-1] = '\r'
		c.interrupted = true
	}
	c.pending = c.pending[n:]
	return n, nil
}

// history is the line editor's history: no blank lines, no repeats.
type history struct{ entries []string }

const maxHistory = 1000

func (h *history) Add(e string) {
	if strings.TrimSpace(e) == "" || len(h.entries) > 0 && h.entries[len(h.entries)-1] == e {
		return
	}
	if len(h.entries) == maxHistory {
		h.entries = h.entries[1:]
	}
	h.entries = append(h.entries, e)
}

func (h *history) Len() int { return len(h.entries) }

func (h *history) At(i int) string { return h.entries[len(h.entries)-1-i] }
