package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// loadWire is the server-load loop with protocol-level clients: each does
// on the wire what a client's push and pull do (a high-water read, then one
// transaction inserting a row and upserting its high-water mark; then a
// long-poll /pull-updates from its last revision, whose pages it reads
// and discards) but keeps no replica. It measures what the server sustains
// when clients cost nothing. It prints "measure-start" and "measure-end"
// like load.
func loadWire(ctx context.Context, url, table string, start, clients int, dur, longPoll time.Duration) (obj, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
	revs := make([]string, clients)
	var g errGroup
	for i := range revs {
		g.Go(func() (err error) {
			revs[i], err = wirePull(ctx, hc, url, &syncpb.PullUpdatesReqProtoBody{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	fmt.Println("measure-start")
	var (
		mu               sync.Mutex
		pushLat, pullLat []float64
		pushes           int
	)
	cpu0 := selfCPU()
	deadline := time.Now().Add(dur)
	t := time.Now()
	for i := range revs {
		g.Go(func() error {
			id := fmt.Sprintf("wire%d", i)
			var myPush, myPull []float64
			for seq := 0; time.Now().Before(deadline); seq++ {
				t1 := time.Now()
				if err := wirePush(ctx, hc, url, table, id, start+i*10_000_000+seq); err != nil {
					return fmt.Errorf("client %d push: %w", i, err)
				}
				myPush = append(myPush, since(t1))
				t2 := time.Now()
				rev, err := wirePull(ctx, hc, url, &syncpb.PullUpdatesReqProtoBody{ClientRevision: revs[i], LongPollTimeoutMs: uint32(longPoll.Milliseconds())})
				if err != nil {
					return fmt.Errorf("client %d pull: %w", i, err)
				}
				revs[i] = rev
				myPull = append(myPull, since(t2))
			}
			mu.Lock()
			pushLat = append(pushLat, myPush...)
			pullLat = append(pullLat, myPull...)
			pushes += len(myPush)
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	elapsed := since(t)
	cpu := selfCPU() - cpu0
	fmt.Println("measure-end")
	if err != nil {
		return nil, err
	}
	slices.Sort(pushLat)
	slices.Sort(pullLat)
	return obj{
		"pushes": pushes, "seconds": elapsed, "pushes_per_sec": float64(pushes) / elapsed,
		"push_p50": percentile(pushLat, 0.5), "push_p99": percentile(pushLat, 0.99),
		"pull_p50": percentile(pullLat, 0.5), "pull_p99": percentile(pullLat, 0.99),
		"pulls": len(pullLat), "cpu_seconds": cpu,
	}, nil
}

// wirePull makes one /pull-updates request, reads the whole stream and
// returns the revision it brings the client to.
func wirePull(ctx context.Context, hc *http.Client, url string, req *syncpb.PullUpdatesReqProtoBody) (string, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return "", err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/pull-updates", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	r.Header.Set("Content-Type", "application/protobuf")
	r.Header.Set("Accept-Encoding", "application/protobuf")
	resp, err := hc.Do(r)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("pull-updates: %s: %s", resp.Status, b)
	}
	fr := wire.NewFrameReader(resp.Body, 1<<20)
	var hdr syncpb.PullUpdatesRespProtoBody
	if err := fr.Next(&hdr); err != nil {
		return "", err
	}
	for {
		if _, _, err := fr.NextPage(); err == io.EOF {
			break
		} else if err != nil {
			return "", err
		}
	}
	return hdr.ServerRevision, nil
}

// wirePush is a push of one inserted row, shaped like a client's: read the
// high-water mark, then one transaction with the row and the new mark.
func wirePush(ctx context.Context, hc *http.Client, url, table, client string, id int) error {
	if err := pipeline(ctx, hc, url, stmt{"SELECT pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id = ?", []any{client}}); err != nil {
		return err
	}
	return pipeline(ctx, hc, url,
		stmt{sql: "BEGIN IMMEDIATE"},
		stmt{"INSERT INTO " + table + "(id, who, v) VALUES(?, ?, ?) ON CONFLICT(id) DO UPDATE SET who = excluded.who, v = excluded.v",
			[]any{id, client, "payload of a typical small row, about one hundred bytes long, sent by one of the clients"}},
		stmt{"INSERT INTO turso_sync_last_change_id(client_id, pull_gen, change_id) VALUES(?, 0, ?) ON CONFLICT(client_id) DO UPDATE SET pull_gen = excluded.pull_gen, change_id = excluded.change_id",
			[]any{client, id}},
		stmt{sql: "COMMIT"})
}

// pipeline runs statements in order on one Hrana v2 stream.
func pipeline(ctx context.Context, hc *http.Client, url string, stmts ...stmt) error {
	b, err := pipelineBody(stmts)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v2/pipeline", bytes.NewReader(b))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return checkPipeline(resp)
}

// pipelineBody encodes statements as execute requests followed by close.
// Arguments are integers or strings.
func pipelineBody(stmts []stmt) ([]byte, error) {
	type value struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	type stmtJSON struct {
		SQL  string  `json:"sql"`
		Args []value `json:"args"`
	}
	type req struct {
		Type string    `json:"type"`
		Stmt *stmtJSON `json:"stmt,omitempty"`
	}
	var body struct {
		Baton    *string `json:"baton"`
		Requests []req   `json:"requests"`
	}
	for _, s := range stmts {
		r := req{Type: "execute", Stmt: &stmtJSON{SQL: s.sql, Args: []value{}}}
		for _, a := range s.args {
			switch a := a.(type) {
			case int:
				r.Stmt.Args = append(r.Stmt.Args, value{"integer", strconv.Itoa(a)})
			case string:
				r.Stmt.Args = append(r.Stmt.Args, value{"text", a})
			default:
				return nil, fmt.Errorf("pipeline: unsupported argument %T", a)
			}
		}
		body.Requests = append(body.Requests, r)
	}
	body.Requests = append(body.Requests, req{Type: "close"})
	return json.Marshal(body)
}

// checkPipeline reads a pipeline response and fails on any error result.
func checkPipeline(resp *http.Response) error {
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pipeline: status %d: %s", resp.StatusCode, rb)
	}
	var out struct {
		Results []struct {
			Type  string `json:"type"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return fmt.Errorf("pipeline: %v: %s", err, rb)
	}
	for i, r := range out.Results {
		if r.Type != "ok" {
			msg := string(rb)
			if r.Error != nil {
				msg = r.Error.Message
			}
			return fmt.Errorf("pipeline statement %d: %s", i, msg)
		}
	}
	return nil
}
