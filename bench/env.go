package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/syncdb/syncdb/internal/testutil"
)

// benchEnv is what every scenario shares: the work directory, the built
// server binary, the running server and the way to start clients.
type benchEnv struct {
	o       *options
	root    string // module root
	work    string // bench/out or -work
	cache   string // generated databases, kept between runs
	run     string // this run's replicas and server data
	self    string // this program, for worker processes
	server  string // the syncdb binary
	turso   string // bench/turso
	srv     *serverProc
	machine machineInfo
	links   []*shaper // the shaped links clients go through now, if any: counted per operation
}

func setupEnv(o *options) (*benchEnv, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	e := &benchEnv{o: o, root: root, work: o.work, turso: filepath.Join(root, "bench", "turso")}
	if e.work == "" {
		e.work = filepath.Join(root, "bench", "out")
	}
	if e.work, err = filepath.Abs(e.work); err != nil {
		return nil, err
	}
	e.cache = filepath.Join(e.work, "cache")
	e.run = filepath.Join(e.work, "run")
	if err := os.RemoveAll(e.run); err != nil {
		return nil, err
	}
	for _, d := range []string{e.cache, e.run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if o.profile != "" {
		if o.profile, err = filepath.Abs(o.profile); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return nil, err
		}
	}
	if e.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if err := e.checkNode(); err != nil {
		return nil, err
	}
	e.server = filepath.Join(e.run, "syncdb")
	logf("building the server: go build -o %s ./cmd/syncdb", e.server)
	cmd := exec.Command("go", "build", "-o", e.server, "./cmd/syncdb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/syncdb: %v\n%s", err, out)
	}
	e.machine = describeMachine(o.node)
	return e, nil
}

func (e *benchEnv) cleanup() {
	if e.srv != nil {
		e.srv.stop()
	}
	if !e.o.keep {
		os.RemoveAll(e.run)
	}
}

// moduleRoot finds the directory of go.mod for github.com/syncdb/syncdb,
// from the working directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/syncdb/syncdb\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the benchmarks from inside the syncdb module (go run ./bench)")
		}
		dir = parent
	}
}

// checkNode makes sure node and the pinned client are installed, so that a
// run does not fail half-way.
func (e *benchEnv) checkNode() error {
	if _, err := exec.LookPath(e.o.node); err != nil {
		return fmt.Errorf("node is not on PATH (the Turso client runs in node): %w", err)
	}
	pkg := filepath.Join(e.root, "interop", "node_modules", "@tursodatabase", "sync", "package.json")
	b, err := os.ReadFile(pkg)
	if err != nil {
		return fmt.Errorf("@tursodatabase/sync is not installed: run `npm install --prefix interop` first (%v)", err)
	}
	var p struct{ Version string }
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.Version != "0.7.2" {
		return fmt.Errorf("interop/node_modules has @tursodatabase/sync %s, the benchmarks compare against 0.7.2: run `npm install --prefix interop`", p.Version)
	}
	return nil
}

// machineInfo describes where the numbers come from.
type machineInfo struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	RAM    string `json:"ram"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Node   string `json:"node"`
	Disk   string `json:"disk"`
}

func describeMachine(node string) machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.RAM = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(node, "--version").Output(); err == nil {
		m.Node = strings.TrimSpace(string(out))
	}
	return m
}

// child is one finished client process.
type child struct {
	result   map[string]any // the JSON object it printed last
	maxRSSKB int64          // peak resident set (wait4 rusage; = VmHWM)
	cpu      float64        // user + system seconds
	wall     float64

	link      *linkCounts    // what crossed the shaped links during the measured operation
	linkParts [2]*linkCounts // the same before and after its measure-mark, if it printed one
}

func (c *child) num(key string) float64 {
	switch v := c.result[key].(type) {
	case float64:
		return v
	case bool:
		if v {
			return 1
		}
	}
	return 0
}

// goWorker runs this program as a worker: `bench worker MODE args...`.
func (e *benchEnv) goWorker(ctx context.Context, mode string, args ...string) (*child, error) {
	if e.o.profile != "" {
		args = append([]string{"-cpuprofile", filepath.Join(e.o.profile, fmt.Sprintf("%s-%d.pprof", mode, time.Now().UnixNano()))}, args...)
	}
	return e.counted(ctx, e.self, append([]string{"worker", mode}, args...)...)
}

// nodeClient runs bench/turso/SCRIPT.mjs with args.
func (e *benchEnv) nodeClient(ctx context.Context, script string, args ...string) (*child, error) {
	return e.counted(ctx, e.o.node, append([]string{filepath.Join(e.turso, script+".mjs")}, args...)...)
}

// counted runs a client and, when it goes through a shaped link (e.links),
// counts what crossed the links between its measure-start, measure-mark
// and measure-end markers.
func (e *benchEnv) counted(ctx context.Context, name string, args ...string) (*child, error) {
	if len(e.links) == 0 {
		return runChild(ctx, nil, name, args...)
	}
	now := func() linkCounts {
		var sum linkCounts
		for _, l := range e.links {
			c := l.counts()
			sum = linkCounts{sum.conns + c.conns, sum.requests + c.requests, sum.up + c.up, sum.down + c.down}
		}
		return sum
	}
	var start, mark, end *linkCounts
	c, err := runChild(ctx, func(line string) {
		n := now()
		switch line {
		case "measure-start":
			start = &n
		case "measure-mark":
			mark = &n
		case "measure-end":
			end = &n
		}
	}, name, args...)
	if err != nil {
		return nil, err
	}
	if start == nil || end == nil {
		return nil, fmt.Errorf("%s %s printed no measure-start and measure-end markers", filepath.Base(name), strings.Join(args, " "))
	}
	d := end.sub(*start)
	c.link = &d
	if mark != nil {
		first, second := mark.sub(*start), end.sub(*mark)
		c.linkParts = [2]*linkCounts{&first, &second}
	}
	return c, nil
}

// runChild runs a client process to completion. Its last stdout line must
// be a JSON object; lines (if set) sees every line as it arrives. A client
// that prints "measure-start" waits for a line on its stdin, which it gets
// once lines has seen the marker (see measureStart in worker.go).
func runChild(ctx context.Context, lines func(string), name string, args ...string) (*child, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "SYNCDB_BENCH_MARKERS=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var last string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		last = sc.Text()
		if lines != nil {
			lines(last)
		}
		if last == "measure-start" {
			io.WriteString(stdin, "go\n")
		}
	}
	stdin.Close()
	err = cmd.Wait()
	c := &child{wall: time.Since(start).Seconds()}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(name), strings.Join(args, " "), err, last, tail(stderr.String(), 4000))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.maxRSSKB = ru.Maxrss
		c.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	if err := json.Unmarshal([]byte(last), &c.result); err != nil {
		return nil, fmt.Errorf("%s %s: last output line %q is not a JSON object: %v\nstderr: %s", filepath.Base(name), strings.Join(args, " "), last, err, tail(stderr.String(), 4000))
	}
	return c, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// serverProc is a running `syncdb serve`.
type serverProc struct {
	URL    string
	cmd    *exec.Cmd
	stderr *testutil.LockedBuffer
	done   chan error

	stopOnce sync.Once
	stopErr  error
}

// startServer runs the server over dataDir, creating (or opening the
// pre-existing) databases dbs at start. With -profile it runs the same
// server package in a bench worker that writes a CPU profile.
func (e *benchEnv) startServer(dataDir string, dbs ...string) (*serverProc, error) {
	return e.startServerWith(dataDir, nil, dbs...)
}

// startServerWith is startServer with extra serve flags.
func (e *benchEnv) startServerWith(dataDir string, flags []string, dbs ...string) (*serverProc, error) {
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dataDir, "--log-level", "warn"}, flags...)
	for _, d := range dbs {
		args = append(args, "--db", d)
	}
	name := e.server
	if e.o.profile != "" {
		name = e.self
		args = append([]string{"worker", "serve", "-cpuprofile", filepath.Join(e.o.profile, fmt.Sprintf("server-%d.pprof", time.Now().UnixNano()))}, args[1:]...)
	}
	s := &serverProc{stderr: &testutil.LockedBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(name, args...)
	s.cmd.Stderr = s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "syncdb server listening on "); ok {
				select {
				case urls <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { s.done <- s.cmd.Wait() }()
	select {
	case s.URL = <-urls:
	case err := <-s.done:
		return nil, fmt.Errorf("syncdb serve exited at start: %v\n%s", err, s.stderr.String())
	case <-time.After(10 * time.Minute):
		s.cmd.Process.Kill()
		return nil, fmt.Errorf("syncdb serve did not start\n%s", s.stderr.String())
	}
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		s.stop()
		return nil, err
	}
	resp.Body.Close()
	return s, nil
}

func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits; the server must exit cleanly. Later calls
// return the first one's result.
func (s *serverProc) stop() error {
	s.stopOnce.Do(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-s.done:
			if err != nil {
				s.stopErr = fmt.Errorf("syncdb serve: %v\n%s", err, tail(s.stderr.String(), 4000))
			}
		case <-time.After(time.Minute):
			s.cmd.Process.Kill()
			<-s.done
			s.stopErr = errors.New("syncdb serve did not stop within a minute of SIGTERM")
		}
	})
	return s.stopErr
}

func (e *benchEnv) stopServer() error {
	if e.srv == nil {
		return nil
	}
	err := e.srv.stop()
	e.srv = nil
	return err
}

// procStatus reads VmRSS and VmHWM (KiB) of a live process.
func procStatus(pid int) (rssKB, hwmKB int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKB, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwmKB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rssKB, hwmKB, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU reads the user + system CPU seconds of a live process.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(ut+st) / clockTicks, nil
}
