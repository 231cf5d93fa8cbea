package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire/syncpb"
)

// fill grows the database at base to about mib MiB: rows of 3000 bytes
// that compress about 2:1 (half random, half zeros), 4 MiB per push.
func fill(base string, mib int) error {
	const perPush = 1300 // rows: one per page, about 5 MiB
	for batch := 0; batch*perPush < mib*256; batch++ {
		n := min(perPush, mib*256-batch*perPush)
		_, err := push(base, fmt.Sprintf(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < %d)
			INSERT INTO t(k, v) SELECT 'fill-%d-' || x, randomblob(1500) || zeroblob(1500) FROM c`, n, batch))
		if err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	return nil
}

// bootstrap pulls the whole latest revision from base, raw, and returns the
// database's size and the time the answer took to arrive.
func bootstrap(base string) (int64, time.Duration, error) {
	body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{})
	start := time.Now()
	resp, err := http.Post(base+"/pull-updates", "application/protobuf", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("bootstrap: %d %s", resp.StatusCode, msg)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	return n, time.Since(start), err
}

// warmCopies waits until each of nodes holds a whole copy of a database of
// at least pages pages (syncdb_local_copy_pages_total{build="full"}).
func (c *cluster) warmCopies(pages int64, nodes ...int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for _, i := range nodes {
		for {
			m, err := metrics(c.urls[i])
			if err != nil {
				return err
			}
			if m[`syncdb_local_copy_pages_total{build="full"}`] >= float64(pages) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %d built no warm copy", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// bootstraps measures the bootstrap of a fresh revision (not in any
// snapshot cache) from the writer node (its own file), from a node that
// does not write the database (the store, in batches) and from a single
// node (its file), for each database size.
func bootstraps(work, bin, base string, sizes []int) error {
	fmt.Println("\nBootstrap of a fresh revision (raw pages, the whole database; median of 3, each after a push so no snapshot cache serves it):")
	fmt.Println()
	fmt.Println("| database | single node (its file) | cluster writer (its file) | cluster node that does not write it (PostgreSQL, batched) |")
	fmt.Println("|---|---|---|---|")
	for _, mib := range sizes {
		c, err := startCluster(work, bin, base, 3)
		if err != nil {
			return err
		}
		single := &cluster{bin: bin, dirs: []string{filepath.Join(work, fmt.Sprintf("single-%d", mib))}, nodes: []*exec.Cmd{nil}, urls: []string{""}}
		err = single.startNode(0)
		if err == nil {
			_, err = push(single.urls[0], "CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB)")
		}
		for _, u := range []string{c.urls[0], single.urls[0]} {
			if err == nil {
				err = fill(u, mib)
			}
		}
		var row []string
		for _, target := range []struct {
			writer, url string
		}{{single.urls[0], single.urls[0]}, {c.urls[0], c.urls[0]}, {c.urls[0], c.urls[1]}} {
			if err != nil {
				break
			}
			var times []time.Duration
			var size int64
			for trial := range 3 {
				if _, err = push(target.writer, fmt.Sprintf("INSERT INTO t VALUES ('b-%d-%d', NULL)", time.Now().UnixNano(), trial)); err != nil {
					break
				}
				var d time.Duration
				if size, d, err = bootstrap(target.url); err != nil {
					break
				}
				times = append(times, d)
			}
			if err == nil {
				med := pct(times, .5)
				row = append(row, fmt.Sprintf("%v = %.0f MiB/s", med.Round(time.Millisecond), float64(size)/(1<<20)/med.Seconds()))
			}
		}
		single.stop()
		c.stop()
		if err != nil {
			return err
		}
		fmt.Printf("| %d MiB | %s | %s | %s |\n", mib, row[0], row[1], row[2])
	}
	return nil
}

// takeovers measures the write gap when the writer is killed (SIGKILL):
// from the kill to the first acknowledged push of a client that pushes
// one row at a time through another node, which takes the lease over. With
// warm copies (the default) and without (the failpoint server.warm-copy
// switched off: the new writer builds its copy from the store then).
func takeovers(work, bin, base string, sizes []int) error {
	fmt.Printf("\nTake-over after kill -9 of the writer (3 nodes; a client pushes one row at a time through the next node, which takes over; %d kills each):\n\n", *kills)
	fmt.Println("| database | warm copies (default) | without warm copies (the new writer copies the database from PostgreSQL) |")
	fmt.Println("|---|---|---|")
	for _, mib := range sizes {
		var row []string
		for _, warm := range []bool{true, false} {
			fp, err := os.MkdirTemp(work, "failpoints-")
			if err != nil {
				return err
			}
			if !warm {
				if err := os.WriteFile(filepath.Join(fp, "server.warm-copy"), []byte("skip"), 0o644); err != nil {
					return err
				}
			}
			c, err := startCluster(work, bin, base, 3, "SYNCDB_FAILPOINTS="+fp)
			if err != nil {
				return err
			}
			gaps, err := c.killWriters(mib, warm)
			c.stop()
			if err != nil {
				return err
			}
			sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
			row = append(row, fmt.Sprintf("median %v, max %v", gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond)))
		}
		fmt.Printf("| %d MiB | %s | %s |\n", mib, row[0], row[1])
	}
	return nil
}

// killWriters fills the database, then kills its writer *kills times.
func (c *cluster) killWriters(mib int, warm bool) ([]time.Duration, error) {
	if err := fill(c.urls[0], mib); err != nil {
		return nil, err
	}
	pages := int64(mib) * 256
	var gaps []time.Duration
	for range *kills {
		w, err := c.writer()
		if err != nil {
			return nil, err
		}
		p := (w + 1) % len(c.nodes)
		// Every node serves the database (and, warm, holds its copy).
		for i := range c.nodes {
			if _, _, err := bootstrap(c.urls[i]); err != nil {
				return nil, err
			}
		}
		if warm {
			var others []int
			for i := range c.nodes {
				if i != w {
					others = append(others, i)
				}
			}
			if err := c.warmCopies(pages, others...); err != nil {
				return nil, err
			}
			time.Sleep(time.Second) // the copies caught up with the last revisions
		}
		gap, err := c.killDuringPushes(w, p)
		if err != nil {
			return nil, err
		}
		gaps = append(gaps, gap)
		if err := c.startNode(w); err != nil {
			return nil, err
		}
	}
	return gaps, nil
}

// killDuringPushes pushes through node p, kills node w (the writer) and
// returns the time from the kill to the first acknowledged push sent after
// it (a push sent before may be acknowledged by the writer just before it
// dies).
func (c *cluster) killDuringPushes(w, p int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var acks [][2]time.Time // sent, acknowledged
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the pusher stops before the next kill
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			sent := time.Now()
			if _, err := push(c.urls[p], fmt.Sprintf("INSERT INTO t VALUES ('k-%d-%d', NULL)", time.Now().UnixNano(), i)); err == nil {
				mu.Lock()
				acks = append(acks, [2]time.Time{sent, time.Now()})
				mu.Unlock()
			}
		}
	}()
	count := func(after time.Time) (int, time.Time) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		var first time.Time
		for _, a := range acks {
			if !a[0].Before(after) {
				if n == 0 {
					first = a[1]
				}
				n++
			}
		}
		return n, first
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if n, _ := count(time.Time{}); n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			return 0, errors.New("no pushes before the kill")
		}
	}
	killed := time.Now()
	c.nodes[w].Process.Signal(syscall.SIGKILL)
	c.nodes[w].Wait()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Millisecond) {
		if n, first := count(killed); n > 0 {
			return first.Sub(killed), nil
		}
		if time.Now().After(deadline) {
			return 0, errors.New("no push acknowledged within 2 minutes of the kill")
		}
	}
}

// writer returns the node holding the lease of database "default",
// waiting for one of the running nodes to hold it.
func (c *cluster) writer() (int, error) {
	conn, err := pgx.Connect(context.Background(), c.dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var u *string
		if err := conn.QueryRow(context.Background(), `SELECT n.url FROM syncdb_db d LEFT JOIN syncdb_node n ON n.node = d.writer WHERE d.name = 'default'`).Scan(&u); err != nil {
			return 0, err
		}
		for i, nu := range c.urls {
			if u != nil && *u == nu {
				return i, nil
			}
		}
	}
	return 0, errors.New("no running node holds the lease")
}
