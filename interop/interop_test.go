// Package interop runs the unmodified npm client @tursodatabase/sync against
// a real `syncdb serve` process. Every scenario is a node script in
// scenarios/; each gets its own server with a fresh data directory.
//
// Prerequisites: node on PATH and `npm install` run in this directory (see
// README.md). The tests fail, not skip, when either is missing.
package interop

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	_ "modernc.org/sqlite" // for the integrity check of the server's files

	"github.com/syncdb/syncdb/internal/testutil"
)

// serverBin is the syncdb binary under test: built by TestMain into
// builtDir, or given by $SYNCDB_SERVER_BIN. plainBin is the same without the
// race detector, for the scenarios that move a lot of data (the race
// detector slows the transpiled SQLite about tenfold); it is serverBin
// when the test runs without -race.
var serverBin, plainBin, builtDir string

// interopDir is this package's directory (the test's working directory).
var interopDir string

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: interop tests cannot run: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// setup checks the prerequisites and builds the server binary.
func setup() error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	interopDir = wd
	if _, err := exec.LookPath("node"); err != nil {
		return errors.New("node is not on PATH: the interop tests run the real @tursodatabase/sync client and need Node.js (>= 20)")
	}
	npmCI := fmt.Sprintf("Run `npm install` in %s first (or `npm install --prefix interop` from the repository root; scripts/test.sh does this)", interopDir)
	client := filepath.Join(interopDir, "node_modules", "@tursodatabase", "sync", "package.json")
	installed, err := packageVersion(client, "version")
	if err != nil {
		return fmt.Errorf("the npm client @tursodatabase/sync is not installed (%v).\n%s", err, npmCI)
	}
	pinned, err := packageVersion(filepath.Join(interopDir, "package.json"), "dependencies", "@tursodatabase/sync")
	if err != nil {
		return err
	}
	if installed != pinned {
		return fmt.Errorf("node_modules has @tursodatabase/sync %s but package.json pins %s.\n%s", installed, pinned, npmCI)
	}
	if bin := os.Getenv("SYNCDB_SERVER_BIN"); bin != "" {
		// Test a prebuilt binary (a release build, or a deliberately broken
		// server to check that these tests catch the breakage).
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("SYNCDB_SERVER_BIN: %v", err)
		}
		serverBin, plainBin = abs, abs
		return nil
	}
	if err := readModuleSources(filepath.Dir(interopDir)); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "syncdb-interop-bin-")
	if err != nil {
		return err
	}
	builtDir = dir
	serverBin = filepath.Join(dir, "syncdb")
	args := []string{"build", "-o", serverBin}
	if raceEnabled {
		// The test runs under -race: build the server with the race
		// detector too, so that real client traffic can reveal data races
		// (a race makes the server exit non-zero, which fails the test).
		args = append(args, "-race")
	}
	args = append(args, "github.com/syncdb/syncdb/cmd/syncdb")
	cmd := exec.Command("go", args...)
	cmd.Dir = interopDir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	plainBin = serverBin
	if raceEnabled {
		plainBin = filepath.Join(dir, "syncdb-plain")
		cmd := exec.Command("go", "build", "-o", plainBin, "github.com/syncdb/syncdb/cmd/syncdb")
		cmd.Dir = interopDir
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("go build (without -race): %v\n%s", err, out)
		}
	}
	return nil
}

// readModuleSources reads every Go source file of the module under root.
// The server is built by a subprocess, which go test does not watch: the
// files this process opens are part of its test cache key, so that a
// change to the server's sources runs these tests again instead of
// reporting a cached result.
func readModuleSources(root string) error {
	return filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (e.Name() == "node_modules" || strings.HasPrefix(e.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !e.IsDir() && (strings.HasSuffix(path, ".go") || e.Name() == "go.mod" || e.Name() == "go.sum") {
			_, err = os.ReadFile(path)
		}
		return err
	})
}

// packageVersion reads a string at keys... in a package.json file.
func packageVersion(file string, keys ...string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return "", fmt.Errorf("%s: %v", file, err)
	}
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: no string at %s", file, strings.Join(keys, "."))
	}
	return s, nil
}

// syncServer is one running `syncdb serve`.
type syncServer struct {
	URL     string
	DataDir string

	cmd     *exec.Cmd
	stderr  *testutil.LockedBuffer
	done    chan error
	stopped bool
	// cache: a cluster node, whose data directory holds only caches
	// (possibly none).
	cache bool
}

// startServer runs `syncdb serve` on a free port of 127.0.0.1 (it listens
// on port 0 and prints the port it got) over dataDir with extra flags. It
// stops the server (SIGTERM) when the test ends, if stop was not called
// before, failing the test unless the server exits cleanly.
func startServer(t *testing.T, dataDir string, flags ...string) *syncServer {
	t.Helper()
	return startServerBin(t, serverBin, dataDir, flags...)
}

// startServerBin is startServer with another binary.
func startServerBin(t *testing.T, bin, dataDir string, flags ...string) *syncServer {
	t.Helper()
	s := &syncServer{DataDir: dataDir, stderr: &testutil.LockedBuffer{}, done: make(chan error, 1)}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", s.DataDir}, flags...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = s.stderr
	stdout := &urlWatcher{found: make(chan string, 1)}
	s.cmd.Stdout = stdout
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start syncdb serve: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()

	select {
	case s.URL = <-stdout.found:
	case err := <-s.done:
		t.Fatalf("syncdb serve exited (%v) without printing its URL\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), s.stderr.String())
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("syncdb serve printed no URL within 30 s\nstdout:\n%s\nstderr:\n%s", stdout.String(), s.stderr.String())
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop sends SIGTERM and checks that the server exits with status 0. Then
// it checks that every database the server left behind passes SQLite's
// integrity check. Calling it again does nothing.
func (s *syncServer) stop(t *testing.T) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM syncdb serve: %v", err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("syncdb serve did not exit cleanly after SIGTERM: %v\nstderr:\n%s", err, s.stderr.String())
		} else if strings.Contains(s.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in syncdb serve:\n%s", s.stderr.String())
		} else if t.Failed() {
			t.Logf("server stderr:\n%s", s.stderr.String())
		}
	case <-time.After(40 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("syncdb serve did not exit within 40 s of SIGTERM\nstderr:\n%s", s.stderr.String())
		return
	}
	checkDataDir(t, s.DataDir, !s.cache)
}

// checkDataDir runs PRAGMA integrity_check on a copy of every SQLite file
// (with its WAL) in the server's data directory.
func checkDataDir(t *testing.T, dataDir string, needFiles bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "*", "*.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 && needFiles {
		t.Errorf("no database files in %s", dataDir)
	}
	for _, f := range files {
		tmp := t.TempDir()
		dst := filepath.Join(tmp, filepath.Base(f))
		for _, suffix := range []string{"", "-wal"} {
			data, err := os.ReadFile(f + suffix)
			if errors.Is(err, os.ErrNotExist) && suffix != "" {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst+suffix, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		db, err := sql.Open("sqlite", dst)
		if err != nil {
			t.Fatal(err)
		}
		var res string
		err = db.QueryRow("PRAGMA integrity_check").Scan(&res)
		db.Close()
		rel, _ := filepath.Rel(dataDir, f)
		if err != nil || res != "ok" {
			t.Errorf("integrity check of the server's %s: %q, %v", rel, res, err)
		}
	}
}

// scenarioTimeout bounds one node script.
const scenarioTimeout = 90 * time.Second

// runScenario runs `node scenarios/<name>.mjs` against srv with the clients'
// files in clientDir and env (extra KEY=VALUE pairs). It fails the test with
// the script's output if the script exits non-zero or times out.
func runScenario(t *testing.T, srv *syncServer, name, clientDir string, env ...string) {
	t.Helper()
	env = append(env, fmt.Sprintf("SYNCDB_SERVER_PID=%d", srv.cmd.Process.Pid))
	runScenarioAt(t, srv.URL, srv.DataDir, name, clientDir, env...)
}

// runScenarioAt runs a scenario against the server at url (data directory
// dataDir).
func runScenarioAt(t *testing.T, url, dataDir, name, clientDir string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	script := filepath.Join(interopDir, "scenarios", name+".mjs")
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = interopDir
	cmd.Env = append(os.Environ(),
		"SYNCDB_URL="+url,
		"SYNCDB_CLIENT_DIR="+clientDir,
		"SYNCDB_DATA_DIR="+dataDir,
	)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("scenario %s timed out after %v\nstdout:\n%s\nstderr:\n%s", name, scenarioTimeout, stdout.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("scenario %s failed (%v) after %v\nstdout:\n%s\nstderr:\n%s", name, err, elapsed, stdout.String(), stderr.String())
	}
	t.Logf("scenario %s passed in %v\n%s", name, elapsed, strings.TrimSpace(stdout.String()))
}

// urlWatcher is the server's stdout: it keeps the output and sends the URL
// of the "syncdb server listening on URL" line on found. exec.Cmd calls
// Write from one goroutine only.
type urlWatcher struct {
	testutil.LockedBuffer
	found chan string
	sent  bool
}

func (u *urlWatcher) Write(p []byte) (int, error) {
	n, err := u.LockedBuffer.Write(p)
	const prefix = "syncdb server listening on "
	if out := u.String(); !u.sent && strings.Contains(out, prefix) {
		_, rest, _ := strings.Cut(out, prefix)
		if url, _, complete := strings.Cut(rest, "\n"); complete {
			u.found <- strings.TrimSpace(url)
			u.sent = true
		}
	}
	return n, err
}

// Tokens of the auth scenario's server.
const (
	authToken = "secret-rw-token"
	readToken = "secret-read-token"
)

// scenarios lists every script with the server flags and environment it
// needs.
var scenarios = []struct {
	name  string
	flags []string
	env   []string
	// restart: run the script twice (SYNCDB_PHASE=1, then 2) with the same
	// client files, restarting the server on the same data directory (and
	// another port) in between.
	restart bool
	// setup, if set, adds flags and environment made at run time.
	setup func(t *testing.T) (flags, env []string)
	// heavy: the scenario moves a lot of data; its server is plainBin.
	heavy bool
	// single: one server only, not TestClientCluster (the remote SQL
	// scenarios watch the server's memory and name databases by host).
	single bool
}{
	{name: "roundtrip"},
	{name: "types"},
	{name: "last_push_wins"},
	{name: "rebase"},
	{name: "schema"},
	{name: "bulk_20k"},
	{name: "reopen"},
	{name: "long_poll"},
	{name: "chunked_bootstrap"},
	{name: "partial_prefix"},
	{name: "partial_query"},
	{name: "deferred"},
	{
		name:  "auth",
		flags: []string{"--auth-token", authToken, "--read-token", readToken},
		env:   []string{"SYNCDB_AUTH_TOKEN=" + authToken, "SYNCDB_READ_TOKEN=" + readToken},
	},
	{name: "jwt", setup: jwtSetup},
	{name: "encryption_headers"},
	{name: "server_restart", restart: true},
	{name: "concurrent_clients"},
	{name: "checkpoint"},
	// Remote SQL (Hrana) clients.
	{name: "remote_libsql_client", single: true},
	{name: "remote_serverless", heavy: true, single: true},
	{name: "remote_hrana_client", flags: []string{"--stream-idle-timeout", "15s"}, heavy: true, single: true},
}

func TestClient(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			data, clients := t.TempDir(), t.TempDir()
			if sc.setup != nil {
				flags, env := sc.setup(t)
				sc.flags = append(append([]string(nil), sc.flags...), flags...)
				sc.env = append(append([]string(nil), sc.env...), env...)
			}
			bin := serverBin
			if sc.heavy {
				bin = plainBin
			}
			srv := startServerBin(t, bin, data, sc.flags...)
			if !sc.restart {
				runScenario(t, srv, sc.name, clients, sc.env...)
				return
			}
			runScenario(t, srv, sc.name, clients, append(sc.env, "SYNCDB_PHASE=1")...)
			srv.stop(t)
			if t.Failed() {
				return
			}
			srv = startServer(t, data, sc.flags...)
			runScenario(t, srv, sc.name, clients, append(sc.env, "SYNCDB_PHASE=2")...)
		})
	}
}

// TestEveryScenarioIsListed keeps scenarios/ and the table above in step, so
// that a new script cannot be silently left out.
func TestEveryScenarioIsListed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(interopDir, "scenarios", "*.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, sc := range scenarios {
		listed[sc.name] = true
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".mjs")
		if name == "lib" || name == "remote_lib" || name == "localhost_dns" {
			continue // helpers
		}
		if !listed[name] {
			t.Errorf("scenarios/%s.mjs is not in the scenarios table of interop_test.go", name)
		}
		delete(listed, name)
	}
	for name := range listed {
		t.Errorf("scenario %q has no scenarios/%s.mjs", name, name)
	}
}

// jwtSetup makes an Ed25519 key, writes its public half as the server's
// --auth-jwt-key-file (PEM, as openssl writes it), and mints the jwt
// scenario's tokens with sqld's claims.
func jwtSetup(t *testing.T) (flags, env []string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "jwt-public.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour).Unix()
	mint := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return []string{"--auth-jwt-key-file", keyFile}, []string{
		"SYNCDB_JWT_RW=" + mint(jwt.MapClaims{"exp": hour, "id": "app", "a": "rw"}),
		"SYNCDB_JWT_RO=" + mint(jwt.MapClaims{"exp": hour, "id": "app", "a": "ro"}),
		"SYNCDB_JWT_OTHER=" + mint(jwt.MapClaims{"exp": hour, "id": "other", "a": "rw"}),
		"SYNCDB_JWT_EXPIRED=" + mint(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "id": "app"}),
	}
}
