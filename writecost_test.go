package syncdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// BenchmarkWriteCost measures what a single-row write transaction costs
// the facade against plain SQLite with the same durability (bench/RESULTS.md
// §5), in one process, alternating batches of 200 so that both see the
// same load: WAL frames per commit (the WAL's growth over a batch, no
// checkpoint in between), CPU time per write (getrusage, user and sys, the
// whole process: the facade's work spans goroutines) and the median
// latency. b.N writes per side; the setup is slow, so give the count:
//
//	go test -run '^$' -bench WriteCost -benchtime 3000x .
//
// SYNCDB_WRITECOST_PLAIN_CHECKPOINTS=1 lets both checkpoint as they do by
// default, the WAL then reused from its start (it stops growing): plain
// SQLite every 1000 frames, as the bench's plain side does, the facade at
// its AutoCheckpointFrames (4096); frames are then not counted. SYNCDB_WRITECOST_PROF=<file> writes a CPU profile of one
// side's writes alone (SYNCDB_WRITECOST_PROF_SIDE=plain, or the facade).
func BenchmarkWriteCost(b *testing.B) {
	t := b
	n := b.N
	ctx := context.Background()
	dir := t.TempDir()
	const rows = 20000
	v := strings.Repeat("0123456789abcdef", 25) // the bench's local rows
	prefill := func(path string) {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE TABLE local(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)"); err != nil {
			t.Fatal(err)
		}
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= rows; i++ {
			if _, err := tx.Exec("INSERT INTO local VALUES(?, ?, ?)", i, fmt.Sprintf("key-%010d", i), v); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	fpath, ppath := filepath.Join(dir, "facade.db"), filepath.Join(dir, "plain.db")
	prefill(ppath)
	autoCkpt := -1
	if os.Getenv("SYNCDB_WRITECOST_PLAIN_CHECKPOINTS") != "" {
		autoCkpt = 0 // the default
	}
	fdb := open(t, syncdb.Config{Path: fpath, AutoCheckpointFrames: autoCkpt})
	if _, err := fdb.Exec(ctx, "CREATE TABLE local(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	if err := fdb.Tx(ctx, func(w *syncdb.Tx) error {
		for i := 1; i <= rows; i++ {
			if _, err := w.Exec(ctx, "INSERT INTO local VALUES(?, ?, ?)", i, fmt.Sprintf("key-%010d", i), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ckpt := "0"
	if os.Getenv("SYNCDB_WRITECOST_PLAIN_CHECKPOINTS") != "" {
		ckpt = "1000"
	}
	pdb, err := sql.Open("sqlite", "file:"+ppath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint("+ckpt+")")
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	pdb.SetMaxOpenConns(1)
	const ins = "INSERT INTO local(id, k, v) VALUES(?, ?, ?)"
	type side struct {
		name   string
		wal    string
		exec   func(id int) error
		lat    []float64
		cpu    time.Duration
		sys    time.Duration
		frames int64
		writes int
	}
	sides := []*side{
		{name: "facade", wal: fpath + "-wal", exec: func(id int) error {
			_, err := fdb.Exec(ctx, ins, id, fmt.Sprintf("key-%010d", id), v)
			return err
		}},
		{name: "plain", wal: ppath + "-wal", exec: func(id int) error {
			_, err := pdb.ExecContext(ctx, ins, id, fmt.Sprintf("key-%010d", id), v)
			return err
		}},
	}
	walSize := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	cpu := func() (time.Duration, time.Duration) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
	}
	for _, s := range sides { // warm up: statements prepared, the WAL started
		for i := 0; i < 50; i++ {
			if err := s.exec(rows + 1 + i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if prof := os.Getenv("SYNCDB_WRITECOST_PROF"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
		if os.Getenv("SYNCDB_WRITECOST_PROF_SIDE") == "plain" {
			sides = sides[1:]
		} else {
			sides = sides[:1]
		}
	}
	batch := min(200, n)
	id := rows + 1000
	b.ResetTimer()
	for done := 0; done < n; done += batch {
		for _, s := range sides {
			c0, s0 := cpu()
			w0 := walSize(s.wal)
			for i := 0; i < batch; i++ {
				t1 := time.Now()
				if err := s.exec(id + i); err != nil {
					t.Fatal(err)
				}
				s.lat = append(s.lat, float64(time.Since(t1))/1e3)
			}
			c1, s1 := cpu()
			s.cpu += c1 - c0
			s.sys += s1 - s0
			s.frames += walSize(s.wal) - w0
			s.writes += batch
		}
		id += batch
	}
	b.StopTimer()
	var out []string
	for _, s := range sides {
		slices.Sort(s.lat)
		b.ReportMetric(float64(s.frames)/(4096+24)/float64(s.writes), s.name+"-frames/commit")
		b.ReportMetric(float64(s.cpu.Microseconds())/float64(s.writes), s.name+"-cpu-µs/write")
		b.ReportMetric(s.lat[len(s.lat)/2], s.name+"-p50-µs")
		out = append(out, fmt.Sprintf("%s: %.2f frames/commit, %.1f µs CPU/write (%.1f user, %.1f sys), p50 %.0f µs (%d writes)", s.name,
			float64(s.frames)/(4096+24)/float64(s.writes), float64(s.cpu.Microseconds())/float64(s.writes), float64((s.cpu-s.sys).Microseconds())/float64(s.writes), float64(s.sys.Microseconds())/float64(s.writes), s.lat[len(s.lat)/2], s.writes))
	}
	if len(sides) < 2 {
		t.Log("\n" + strings.Join(out, "\n"))
		return
	}
	f, p := sides[0], sides[1]
	out = append(out, fmt.Sprintf("ratios facade/plain: frames %.2f, CPU %.2f (user %.2f), p50 %.2f",
		float64(f.frames)/float64(p.frames), float64(f.cpu)/float64(p.cpu), float64(f.cpu-f.sys)/float64(p.cpu-p.sys), f.lat[len(f.lat)/2]/p.lat[len(p.lat)/2]))
	t.Log("\n" + strings.Join(out, "\n"))
}
