package syncdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

// BenchmarkTxInserts measures the bench's "local inserts before the push"
// (bench/RESULTS.md §3) in one process: b.N rows inserted in one DB.Tx,
// one Tx.Exec each, against the same rows through plain modernc
// database/sql in one transaction (WAL, synchronous=FULL: the facade's
// settings). The reported ns/op is per row of the facade;
// plain-ns/row and ratio compare. SYNCDB_TXINSERT_PROF=<file> writes a
// CPU profile of the facade's inserts.
//
//	go test -run '^$' -bench TxInserts -benchtime 10000x .
func BenchmarkTxInserts(b *testing.B) {
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
	plain := func(from, n int) time.Duration {
		t := time.Now()
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
		return time.Since(t)
	}
	facade := func(from, n int) time.Duration {
		t := time.Now()
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
		return time.Since(t)
	}
	// Warm up both (statement caches, the first pages).
	plain(1, 100)
	facade(1, 100)
	pt := plain(1000, b.N)
	var stop func()
	if p := os.Getenv("SYNCDB_TXINSERT_PROF"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		stop = func() { pprof.StopCPUProfile(); f.Close() }
	}
	b.ResetTimer()
	ft := facade(1000, b.N)
	b.StopTimer()
	if stop != nil {
		stop()
	}
	b.ReportMetric(float64(pt.Nanoseconds())/float64(b.N), "plain-ns/row")
	b.ReportMetric(float64(ft)/float64(pt), "ratio")
}
