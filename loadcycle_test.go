package syncdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// BenchmarkSyncCycle measures what the load bench's client loop costs one
// Go client (bench/RESULTS.md §6, issue 15): clients replicas of one
// database on a loopback server each insert a row and push it, then each
// pulls (bringing the others' rows and its own back), so b.N×clients
// cycles. It reports, per cycle, the CPU time of the whole process
// (getrusage, user and sys; the in-process server's share included, which
// client changes do not move), and the allocations (count and bytes, all
// goroutines). The figures do not depend on the machine's load as rates
// do; compare before and after in the same run:
//
//	go test -run '^$' -bench SyncCycle -benchtime 200x .
func BenchmarkSyncCycle(b *testing.B) {
	const clients = 4
	ctx := context.Background()
	url := newServer(b)
	dbs := make([]*syncdb.DB, clients)
	for i := range dbs {
		dbs[i] = open(b, syncdb.Config{Path: filepath.Join(b.TempDir(), fmt.Sprintf("c%d.db", i)), URL: url, LongPollTimeout: 5 * time.Second})
	}
	if _, err := dbs[0].Exec(ctx, "CREATE TABLE l(id INTEGER PRIMARY KEY, who TEXT, v TEXT)"); err != nil {
		b.Fatal(err)
	}
	if err := dbs[0].Push(ctx); err != nil {
		b.Fatal(err)
	}
	for _, db := range dbs[1:] {
		if _, err := db.Pull(ctx); err != nil {
			b.Fatal(err)
		}
	}
	payload := strings.Repeat("p", 100) // the bench's row is about 100 bytes
	id := 0
	round := func() {
		for i, db := range dbs {
			id++
			if _, err := db.Exec(ctx, "INSERT INTO l(id, who, v) VALUES(?, ?, ?)", id, fmt.Sprintf("load%d", i), payload); err != nil {
				b.Fatal(err)
			}
			if err := db.Push(ctx); err != nil {
				b.Fatal(err)
			}
		}
		for _, db := range dbs {
			if _, err := db.Pull(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for range 20 { // warm up: statements prepared, the WALs started
		round()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		round()
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	runtime.ReadMemStats(&ms1)
	cycles := float64(b.N * clients)
	b.ReportMetric(float64(cpu.Microseconds())/1e3/cycles, "cpu-ms/cycle")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/cycles, "allocs/cycle")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/cycles, "B/cycle")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/cycles, "ms/cycle")
}

// processCPU is the process's user and system CPU time so far.
func processCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
