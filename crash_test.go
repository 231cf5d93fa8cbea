package syncdb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// The crash worker: when the test binary runs with SYNCDB_CRASH_WORKER set,
// it opens the database and writes, pushes, pulls and checkpoints at random
// until it is killed. Each row id is appended to a log after its write
// committed, so the log lists only committed writes.
func TestMain(m *testing.M) {
	if os.Getenv("SYNCDB_CRASH_WORKER") != "" {
		if err := crashWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashWorker() error {
	if os.Getenv("W_PARTIAL") != "" {
		return partialWorker()
	}
	if os.Getenv("W_KILL_AT") != "" {
		return killedWriter()
	}
	if os.Getenv("W_OPEN_KILL_AT") != "" {
		return killedOpen()
	}
	path, url, logPath := os.Getenv("W_PATH"), os.Getenv("W_URL"), os.Getenv("W_LOG")
	seed, _ := strconv.ParseUint(os.Getenv("W_SEED"), 10, 64)
	base, _ := strconv.ParseInt(os.Getenv("W_BASE"), 10, 64)
	rng := rand.New(rand.NewPCG(seed, seed))
	ctx := context.Background()
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url, AutoCheckpointFrames: 30 + rng.IntN(100)})
	if err != nil {
		return err
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for n := int64(0); ; n++ {
		id := base + n*2
		switch r := rng.IntN(100); {
		case r < 55:
			if _, err := db.Exec(ctx, "INSERT INTO w(id, v) VALUES(?, hex(randomblob(200)))", id); err != nil {
				return err
			}
			fmt.Fprintf(log, "%d\n", id)
		case r < 66:
			// The database/sql paths: a transaction and a write with
			// RETURNING, each captured in its own transaction.
			tx, err := db.SQL().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO w(id, v) VALUES(?, 'sqltx')", id); err != nil {
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			fmt.Fprintf(log, "%d\n", id)
			var got int64
			if err := db.SQL().QueryRowContext(ctx, "INSERT INTO w(id, v) VALUES(?, 'returning') RETURNING id", id+1).Scan(&got); err != nil {
				return err
			}
			fmt.Fprintf(log, "%d\n", got)
		case r < 70:
			err := db.Tx(ctx, func(tx *syncdb.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO w(id, v) VALUES(?, 'tx')", id); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO w(id, v) VALUES(?, 'tx')", id+1)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(log, "%d\n%d\n", id, id+1)
		case r < 80:
			if err := db.Push(ctx); err != nil {
				return err
			}
		case r < 90:
			if _, err := db.Pull(ctx); err != nil {
				return err
			}
		case r < 95:
			if err := db.Checkpoint(ctx); err != nil {
				return err
			}
		default:
			if err := db.Sync(ctx); err != nil {
				return err
			}
		}
	}
}

// A process killed at any moment of Open, Exec, Tx (DB.Tx and DB.SQL's
// transactions and writing queries), Pull, Push or Checkpoint
// loses no committed local write and no remote data, and the next Open and
// Sync converge.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes in a loop")
	}
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	path := filepath.Join(dir, "w.db")
	logPath := filepath.Join(dir, "committed.log")

	other := open(t, syncdb.Config{Path: filepath.Join(dir, "other.db"), URL: url})
	mustExec(t, other, "CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT)")
	if err := other.Push(ctx); err != nil {
		t.Fatal(err)
	}
	iterations := 25
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	otherRows := 0
	for it := 0; it < iterations; it++ {
		// Remote changes for the worker's pulls to rebase over.
		for i := 0; i < 20; i++ {
			mustExec(t, other, "INSERT INTO w(id, v) VALUES(?, 'other')", 1_000_000_000+otherRows)
			otherRows++
		}
		if err := other.Push(ctx); err != nil {
			t.Fatal(err)
		}
		cmd := workerCmd("W_PATH="+path, "W_URL="+url, "W_LOG="+logPath,
			fmt.Sprintf("W_SEED=%d", rng.Uint64()), fmt.Sprintf("W_BASE=%d", int64(it+1)*10_000_000+1))
		ready, stderr := startWorker(t, cmd)
		// Kill sometimes during Open, usually later.
		delay := time.Duration(rng.IntN(700)) * time.Millisecond
		if rng.IntN(4) != 0 {
			select {
			case <-ready:
			case <-time.After(30 * time.Second):
				t.Fatalf("iteration %d: the worker did not open: %s", it, stderr.String())
			}
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("iteration %d: the worker stopped by itself before the kill: %v\n%s", it, err, stderr.String())
		}
	}

	// Recovery: open, check every committed write, sync, converge.
	db := open(t, syncdb.Config{Path: path, URL: url})
	integrity(t, db)
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(string(logged))
	for _, id := range ids {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM w WHERE id = ?", id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("committed row %s is missing after the crashes (%v)", id, err)
		}
	}
	if err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	ra, rb := rows(t, db, "SELECT id, v FROM w ORDER BY id"), rows(t, other, "SELECT id, v FROM w ORDER BY id")
	if ra != rb {
		t.Fatalf("replicas differ after recovery: %d vs %d rows", strings.Count(ra, "\n")+1, strings.Count(rb, "\n")+1)
	}
	var remote int
	other.QueryRow(ctx, "SELECT count(*) FROM w WHERE v = 'other'").Scan(&remote)
	if remote != otherRows {
		t.Fatalf("remote rows: %d, want %d", remote, otherRows)
	}
	integrity(t, db)
	t.Logf("%d committed local writes survived %d kills", len(ids), iterations)
}

// partialWorker reads a partial replica at random (each read may fetch and
// write a segment) until it is killed.
func partialWorker() error {
	path, url := os.Getenv("W_PATH"), os.Getenv("W_URL")
	rows, _ := strconv.Atoi(os.Getenv("W_ROWS"))
	seed, _ := strconv.ParseUint(os.Getenv("W_SEED"), 10, 64)
	rng := rand.New(rand.NewPCG(seed, seed))
	ctx := context.Background()
	db, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url,
		Partial: &syncdb.PartialSync{PrefixBytes: 8192, SegmentSize: 16384, Prefetch: rng.IntN(2) == 0}})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		switch r := rng.IntN(100); {
		case r < 80:
			id := 1 + rng.IntN(rows)
			var k string
			if err := db.QueryRow(ctx, "SELECT k FROM big WHERE id = ?", id).Scan(&k); err != nil {
				return err
			}
			if k != fmt.Sprintf("key-%08d", id) {
				return fmt.Errorf("row %d has k %q", id, k)
			}
		case r < 90:
			var n int
			if err := db.QueryRow(ctx, "SELECT count(*) FROM big WHERE k >= ?", fmt.Sprintf("key-%08d", rng.IntN(rows))).Scan(&n); err != nil {
				return err
			}
		case r < 95:
			if err := db.Checkpoint(ctx); err != nil {
				return err
			}
		default:
			if _, err := db.Pull(ctx); err != nil {
				return err
			}
		}
	}
}

// A partial replica killed while it fetches and writes segments reopens
// correct: every page is either missing or exactly the server's.
func TestPartialCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes in a loop")
	}
	url, rows := bigRemote(t, 4)
	path := filepath.Join(t.TempDir(), "p.db")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for it := 0; it < 15; it++ {
		cmd := workerCmd("W_PARTIAL=1", "W_PATH="+path, "W_URL="+url,
			fmt.Sprintf("W_ROWS=%d", rows), fmt.Sprintf("W_SEED=%d", rng.Uint64()))
		ready, stderr := startWorker(t, cmd)
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("iteration %d: the worker did not open: %s", it, stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		cmd.Process.Kill()
		if err := cmd.Wait(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
				t.Fatalf("iteration %d: the worker failed before the kill: %v\n%s", it, err, stderr.String())
			}
		}
	}
	db := open(t, syncdb.Config{Path: path, URL: url})
	integrity(t, db)
	var n, sum int64
	if err := db.QueryRow(context.Background(), "SELECT count(*), sum(id) FROM big").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != int64(rows) || sum != int64(rows)*int64(rows+1)/2 {
		t.Fatalf("after the kills: count %d sum %d", n, sum)
	}
	var bad int
	db.QueryRow(context.Background(), "SELECT count(*) FROM big WHERE k != printf('key-%08d', id)").Scan(&bad)
	if bad != 0 {
		t.Fatalf("%d rows have wrong content", bad)
	}
}
