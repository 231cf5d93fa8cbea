package syncdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// BenchmarkTxInserts measures the bench's "local inserts before the push"
// (bench/RESULTS.md §3) in one process: b.N rows inserted by DB.Tx, one
// Tx.Exec each, all in one transaction (one-tx) or 10 a transaction
// (10-per-tx, the bench's 1,000 transactions of 10,000 rows), against the
// same rows through plain modernc database/sql (WAL, synchronous=FULL: the
// facade's settings). The reported ns/op is per row of the facade;
// plain-ns/row and ratio compare. SYNCDB_TXINSERT_PROF=<file> writes a
// CPU profile of the facade's inserts (SYNCDB_TXINSERT_PROF_SIDE=plain:
// of plain's).
//
//	go test -run '^$' -bench TxInserts -benchtime 10000x .
func BenchmarkTxInserts(b *testing.B) {
	b.Run("one-tx", func(b *testing.B) { benchTxInserts(b, b.N) })
	b.Run("10-per-tx", func(b *testing.B) { benchTxInserts(b, 10) })
}

func benchTxInserts(b *testing.B, per int) {
	ctx := context.Background()
	dir := b.TempDir()
	const schema = "CREATE TABLE p(id INTEGER PRIMARY KEY, who TEXT, v TEXT)"
	const ins = "INSERT INTO p(id, who, v) VALUES(?, ?, ?)"
	row := func(i int) (int, string, string) {
		return i, "go", fmt.Sprintf("row %010d %s", i, strings.Repeat("abcdefghij", 9))
	}
	pdb, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "plain.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		b.Fatal(err)
	}
	defer pdb.Close()
	pdb.SetMaxOpenConns(1)
	if _, err := pdb.Exec(schema); err != nil {
		b.Fatal(err)
	}
	fdb := open(b, syncdb.Config{Path: filepath.Join(dir, "facade.db")})
	if _, err := fdb.Exec(ctx, schema); err != nil {
		b.Fatal(err)
	}
	plainTx := func(from, n int) {
		tx, err := pdb.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			id, who, v := row(i)
			if _, err := tx.Exec(ins, id, who, v); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	facadeTx := func(from, n int) {
		if err := fdb.Tx(ctx, func(tx *syncdb.Tx) error {
			for i := from; i < from+n; i++ {
				id, who, v := row(i)
				if _, err := tx.Exec(ctx, ins, id, who, v); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	// per rows a transaction
	// cpu is the process's CPU time (user and system): the facade's work
	// spans goroutines, and on a shared machine it varies less than the
	// wall time.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var cpus [2]time.Duration // plain's, the facade's
	loop := func(side int, tx func(from, n int)) func(from, n int) time.Duration {
		return func(from, n int) time.Duration {
			t, c := time.Now(), cpu()
			for ; n > 0; n, from = n-per, from+per {
				tx(from, min(n, per))
			}
			cpus[side] = cpu() - c
			return time.Since(t)
		}
	}
	plain, facade := loop(0, plainTx), loop(1, facadeTx)
	// Warm up both (statement caches, the first pages).
	plain(1, 100)
	facade(1, 100)
	// The profile, if asked for, covers one side's rows alone.
	prof := func(side string, run func() time.Duration) time.Duration {
		p := os.Getenv("SYNCDB_TXINSERT_PROF")
		if p == "" || (os.Getenv("SYNCDB_TXINSERT_PROF_SIDE") == "plain") != (side == "plain") {
			return run()
		}
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
		return run()
	}
	pt := prof("plain", func() time.Duration { return plain(1000, b.N) })
	b.ResetTimer()
	ft := prof("facade", func() time.Duration { return facade(1000, b.N) })
	b.StopTimer()
	b.ReportMetric(float64(pt.Nanoseconds())/float64(b.N), "plain-ns/row")
	b.ReportMetric(float64(ft)/float64(pt), "ratio")
	b.ReportMetric(float64(cpus[1].Nanoseconds())/float64(b.N), "cpu-ns/row")
	b.ReportMetric(float64(cpus[0].Nanoseconds())/float64(b.N), "plain-cpu-ns/row")
	b.ReportMetric(float64(cpus[1])/float64(cpus[0]), "cpu-ratio")
}
