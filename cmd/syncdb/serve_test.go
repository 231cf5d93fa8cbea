package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"

	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syncdb-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "syncdb")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build syncdb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `syncdb serve`.
type proc struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
	done chan error
}

func startServer(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dataDir}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	p := &proc{cmd: cmd, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "syncdb server listening on "); ok {
			p.url = u
			break
		}
	}
	if p.url == "" {
		cmd.Process.Kill()
		t.Fatalf("server did not print its URL; stderr:\n%s", p.logs)
	}
	go io.Copy(io.Discard, stdout)
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) pipeline(reqs ...hrana.StreamRequest) (*hrana.PipelineRespBody, error) {
	body, _ := json.Marshal(hrana.PipelineReqBody{Requests: reqs})
	resp, err := http.Post(p.url+"/v2/pipeline", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, out)
	}
	return hrana.DecodePipelineResp(out)
}

func sqlStep(sql string, args ...hrana.Value) hrana.BatchStep {
	return hrana.BatchStep{Stmt: hrana.Stmt{SQL: &sql, Args: args}}
}

// pushRow pushes one row the way a sync client does: one transaction in a
// batch, each step guarded by the previous. It reports whether the server
// acknowledged the commit.
func (p *proc) pushRow(id int64) error {
	guard := func(i uint32) *hrana.BatchCond {
		return &hrana.BatchCond{Type: hrana.CondAnd, Conds: []hrana.BatchCond{
			{Type: hrana.CondNot, Cond: &hrana.BatchCond{Type: hrana.CondIsAutocommit}}, {Type: hrana.CondOK, Step: i}}}
	}
	steps := []hrana.BatchStep{sqlStep("BEGIN IMMEDIATE"),
		sqlStep("INSERT INTO acked(id, pad) VALUES(?, randomblob(300))", hrana.Value{V: id}),
		sqlStep("COMMIT")}
	steps[1].Condition, steps[2].Condition = guard(0), guard(1)
	resp, err := p.pipeline(hrana.StreamRequest{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: steps}})
	if err != nil {
		return err
	}
	br := resp.Results[0].Response.BatchResult
	for i, e := range br.StepErrors {
		if e != nil || br.StepResults[i] == nil {
			return fmt.Errorf("step %d: %v", i, e)
		}
	}
	return nil
}

// pullAll fetches a full snapshot and writes it to a database file.
func (p *proc) pullAll(t *testing.T, req *syncpb.PullUpdatesReqProtoBody, into map[uint32][]byte) *syncpb.PullUpdatesRespProtoBody {
	t.Helper()
	body, _ := proto.Marshal(req)
	resp, err := http.Post(p.url+"/pull-updates", "application/protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("pull: %d %s", resp.StatusCode, b)
	}
	fr := wire.NewFrameReader(resp.Body, 0)
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if err := fr.Next(hdr); err != nil {
		t.Fatal(err)
	}
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		into[uint32(id+1)] = append([]byte(nil), page...)
	}
	for pg := range into {
		if uint64(pg) > hdr.DbSize {
			delete(into, pg)
		}
	}
	return hdr
}

func writeImage(t *testing.T, pages map[uint32][]byte, size uint64) *sql.DB {
	t.Helper()
	buf := make([]byte, size*wire.PageSize)
	for pg, data := range pages {
		copy(buf[(uint64(pg)-1)*wire.PageSize:], data)
	}
	path := filepath.Join(t.TempDir(), "image.db")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check of pulled image: %q %v", res, err)
	}
	return db
}

// A push answered 200 survives kill -9, in the database and in the page
// history: after a restart, every acknowledged row is there, pulls serve
// it, and revisions handed out before the kill still work.
func TestAcknowledgedPushSurvivesKill9(t *testing.T) {
	dataDir := t.TempDir()
	var acked []int64
	var nextID int64
	iterations := 6
	if testing.Short() {
		iterations = 2
	}
	for iter := 0; iter < iterations; iter++ {
		srv := startServer(t, dataDir)
		if iter == 0 {
			if _, err := srv.pipeline(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: ptr("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")}}); err != nil {
				t.Fatal(err)
			}
		}
		checkAcked(t, srv, acked)

		// A client's view before the kill: a snapshot and its revision.
		before := map[uint32][]byte{}
		beforeHdr := srv.pullAll(t, &syncpb.PullUpdatesReqProtoBody{}, before)

		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					nextID++
					id := nextID
					mu.Unlock()
					if err := srv.pushRow(id); err == nil {
						mu.Lock()
						acked = append(acked, id)
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		srv.cmd.Process.Signal(syscall.SIGKILL)
		<-srv.done
		close(stop)
		wg.Wait()

		srv = startServer(t, dataDir)
		checkAcked(t, srv, acked)
		// The old revision is still servable, and catching up from it
		// gives the same database as a fresh snapshot.
		srv.pullAll(t, &syncpb.PullUpdatesReqProtoBody{ClientRevision: beforeHdr.ServerRevision}, before)
		fresh := map[uint32][]byte{}
		freshHdr := srv.pullAll(t, &syncpb.PullUpdatesReqProtoBody{}, fresh)
		if len(fresh) != len(before) {
			t.Fatalf("iteration %d: caught-up image has %d pages, snapshot %d", iter, len(before), len(fresh))
		}
		for pg, data := range fresh {
			if !bytes.Equal(before[pg], data) {
				t.Fatalf("iteration %d: page %d of the caught-up image differs from the snapshot", iter, pg)
			}
		}
		img := writeImage(t, fresh, freshHdr.DbSize)
		var n int
		if err := img.QueryRow("SELECT count(*) FROM acked").Scan(&n); err != nil || n < len(acked) {
			t.Fatalf("iteration %d: pulled image has %d rows, %d acknowledged (%v)", iter, n, len(acked), err)
		}
		srv.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-srv.done; err != nil {
			t.Fatalf("SIGTERM exit: %v\n%s", err, srv.logs)
		}
	}
	if len(acked) < 50 {
		t.Fatalf("only %d pushes were acknowledged: the test did not load the server", len(acked))
	}
	t.Logf("%d acknowledged pushes over %d kills", len(acked), iterations)
}

func ptr[T any](v T) *T { return &v }

func checkAcked(t *testing.T, srv *proc, acked []int64) {
	t.Helper()
	if len(acked) == 0 {
		return
	}
	resp, err := srv.pipeline(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: ptr("SELECT id FROM acked")}})
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for _, row := range resp.Results[0].Response.StmtResult.Rows {
		have[row[0].V.(int64)] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged row %d is missing after kill -9 (%d acknowledged, %d present)", id, len(acked), len(have))
		}
	}
}

// SIGTERM drains: a waiting long poll is answered at once, in-flight pushes
// finish, and the process exits cleanly.
func TestSigtermDrains(t *testing.T) {
	srv := startServer(t, t.TempDir())
	if _, err := srv.pipeline(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: ptr("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")}}); err != nil {
		t.Fatal(err)
	}
	rev := srv.pullAll(t, &syncpb.PullUpdatesReqProtoBody{}, map[uint32][]byte{}).ServerRevision
	polled := make(chan error, 1)
	go func() {
		body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ClientRevision: rev, LongPollTimeoutMs: 60000})
		resp, err := http.Post(srv.url+"/pull-updates", "application/protobuf", bytes.NewReader(body))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		polled <- err
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-polled:
		if err != nil {
			t.Fatalf("long poll during shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not released by SIGTERM")
	}
	if err := <-srv.done; err != nil {
		t.Fatalf("exit: %v\n%s", err, srv.logs)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("shutdown took %v", el)
	}
}

// A JWT key file that cannot be read stops serve at once, naming the flag.
func TestServeBadJWTKeyFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	for _, f := range []string{filepath.Join(t.TempDir(), "missing.pem"), bad} {
		err := serve([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--auth-jwt-key-file", f})
		if err == nil || !strings.Contains(err.Error(), "--auth-jwt-key-file") {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// Attack: one statement computing many large values at once (each under
// the value limit) took the server's memory with it. --max-sqlite-memory
// fails it with "out of memory" instead; the server goes on.
func TestServeSQLiteMemoryLimit(t *testing.T) {
	p := startServer(t, t.TempDir(), "--max-sqlite-memory", strconv.Itoa(256<<20))
	huge := "SELECT " + strings.TrimSuffix(strings.Repeat("randomblob(4e7), ", 25), ", ") // 1 GB in one row
	resp, err := p.pipeline(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: &huge}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; r.Type != hrana.ResultError || !strings.Contains(r.Error.Message, "out of memory") {
		t.Fatalf("a 1 GB row: %+v %+v", r.Response, r.Error)
	}
	if hwm := peakRSS(t, p.cmd.Process.Pid); hwm > 700<<20 {
		t.Errorf("the server's peak RSS is %d MiB", hwm>>20)
	}
	ok := "SELECT length(randomblob(1e6))"
	if resp, err := p.pipeline(hrana.StreamRequest{Type: hrana.ReqExecute, Stmt: &hrana.Stmt{SQL: &ok}}); err != nil || resp.Results[0].Type != hrana.ResultOK {
		t.Fatalf("after the refused statement: %v %+v", err, resp)
	}
}

// peakRSS reads VmHWM of a process, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
