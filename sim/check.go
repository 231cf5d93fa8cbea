package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/pageactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// checkClient runs the cheap invariants after an operation of c.
func (w *world) checkClient(c *client, op, result string) {
	if c.db == nil {
		return
	}
	ctx := context.Background()
	// With prefetches queued, the check (which reads every page) waits for
	// the next operation of c, after they ran (prefetch.go).
	w.mu.Lock()
	queued := len(c.bg) > 0
	w.mu.Unlock()
	var ok string
	if !queued {
		// Past the network faults: a partial replica fetches the pages it
		// checks.
		var err error
		w.tr.calm(func() { err = c.db.QueryRow(ctx, "PRAGMA integrity_check").Scan(&ok) })
		if err != nil || ok != "ok" {
			w.fail("%s after %s: integrity_check %q %v", c.name, op, ok, err)
		}
	}
	st, err := c.db.Stats(ctx)
	if err != nil {
		w.fail("%s after %s: stats: %v", c.name, op, err)
		return
	}
	// The replica's metadata (its cache) is what its durable state says:
	// its -info file, or the database's record of the last finished pull
	// where the file is older (a pull's -info update is deferred; an open
	// takes the record: dbactor.Reconciled). A write that failed left both
	// as they were.
	if meta, err := durableMeta(ctx, c); err != nil {
		w.fail("%s after %s: %v", c.name, op, err)
	} else {
		if disk := revisionOf(meta); disk != st.Revision {
			w.fail("%s after %s: the replica's metadata says revision %q, its -info file (with the database's record) %q", c.name, op, st.Revision, disk)
		}
		c.cacheMu.Lock()
		cache := c.cache
		c.cacheMu.Unlock()
		if cache != nil {
			type state struct {
				Base          messages.Base
				Checkpointing bool
				Pulled        any
			}
			got, _ := json.Marshal(state{cache.SyncDB.Base, cache.SyncDB.Checkpointing, cache.SyncDB.Pulled})
			want, _ := json.Marshal(state{meta.SyncDB.Base, meta.SyncDB.Checkpointing, meta.SyncDB.Pulled})
			if !bytes.Equal(got, want) {
				w.fail("%s after %s: the replica's metadata is %s, its -info file (with the database's record) %s", c.name, op, got, want)
			}
		}
	}
	if st.Revision != "" {
		seq := parseRevSeq(st.Revision)
		if seq < c.rev {
			w.fail("%s after %s: revision went back from %d to %d", c.name, op, c.rev, seq)
		}
		c.rev = seq
	}
	w.checkConflicts(c, op)
	// Errors a faulty network explains are fine; anything else is a bug.
	if strings.HasPrefix(result, "error: ") || strings.Contains(result, " error: ") {
		if !expectedError(result) {
			w.fail("%s %s: unexpected error: %s", c.name, op, result)
		}
	}
}

// durableMeta is c's metadata as its durable state says: its -info file,
// with the database's record of the last finished pull where the file is
// older (a pull's -info update is deferred; an open takes the record:
// dbactor.Reconciled). With c closed, the file alone.
func durableMeta(ctx context.Context, c *client) (*messages.Meta, error) {
	meta, err := metaactor.Load(fsx.OS, layout.For(c.path).Info)
	if err != nil || c.db == nil {
		return meta, err
	}
	var record string
	if err := c.db.QueryRow(ctx, "SELECT coalesce((SELECT value FROM _syncdb_local WHERE key = 'synced_base'), '')").Scan(&record); err != nil {
		return nil, fmt.Errorf("read the recorded base: %w", err)
	}
	m, err := dbactor.Reconciled(meta, record)
	if err != nil || m == nil {
		return meta, err
	}
	return m, nil
}

func revisionOf(m *messages.Meta) string {
	if m == nil || m.SyncedRevision == nil {
		return ""
	}
	return m.SyncedRevision.Revision
}

// expectedError lists the errors an operation may legitimately return in
// the simulation: network faults, a down server, a simulated crash, and
// SQL errors of the random workload.
func expectedError(result string) bool {
	for _, s := range []string{
		"sim: ", "503", "unexpected EOF", "EOF", "simulated crash", "actor failed", "actor stopped",
		"UNIQUE constraint failed", "duplicate column name", "no such table", "no such column",
		"database is closed", "frozen", "malformed pull", "truncated", "bad stream", "invalid message", "out of order",
		"fetch missing page", "disk I/O error", "wait for a conflict to be resolved",
	} {
		if strings.Contains(result, s) {
			return true
		}
	}
	return false
}

// quiesce turns faults and crashes off, brings every client up, and runs
// push-all then pull-all twice.
func (w *world) quiesce() {
	w.tr.mu.Lock()
	w.tr.faultPct = 0
	w.tr.mu.Unlock()
	w.mu.Lock()
	w.plan = nil
	w.mu.Unlock()
	w.clearHistoryFault()
	ctx := context.Background()
	for _, c := range w.clients {
		w.ensureOpen(c)
		if c.db == nil {
			w.fail("%s cannot be opened at quiescence", c.name)
			return
		}
	}
	// Rounds of resolving every waiting conflict, push-all, pull-all, until
	// a round finds no conflict (a resolution can meet a new one).
	for round := 0; round < 6; round++ {
		waiting := false
		for _, c := range w.clients {
			w.logf("%s resolve at quiescence: %s", c.name, w.resolveSome(c, true))
		}
		for _, c := range w.clients {
			err := c.db.Push(ctx)
			if w.refusedAsCopy(c, "push at quiescence", err) {
				err = c.db.Push(ctx)
			}
			if err != nil && !errors.Is(err, syncdb.ErrConflict) {
				w.fail("%s: push at quiescence: %v", c.name, err)
			}
			w.checkConflicts(c, "push at quiescence")
		}
		for _, c := range w.clients {
			_, err := c.db.Pull(ctx)
			if w.refusedAsCopy(c, "pull at quiescence", err) {
				waiting = true // its push comes in the next round
				_, err = c.db.Pull(ctx)
			}
			if errors.Is(err, syncdb.ErrConflict) {
				waiting = true
			} else if err != nil {
				w.fail("%s: pull at quiescence: %v", c.name, err)
			}
			w.checkConflicts(c, "pull at quiescence")
		}
		if !waiting && round > 0 {
			break
		}
		if round == 5 {
			w.fail("conflicts still wait after %d rounds of resolving them at quiescence", round+1)
		}
	}
	w.logf("quiescent")
}

// userTables are the tables the workload creates.
var userTables = []string{"kv", "t1", "t2"}

// dumpClient renders the user tables of a replica.
func dumpClient(db *syncdb.DB) (string, error) {
	var b strings.Builder
	for _, t := range userTables {
		rows, err := db.Query(context.Background(), "SELECT * FROM "+t+" ORDER BY 1")
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue
			}
			return "", err
		}
		cols, _ := rows.Columns()
		fmt.Fprintf(&b, "%s(%s)\n", t, strings.Join(cols, ","))
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return "", err
			}
			for i, v := range vals {
				if i > 0 {
					b.WriteByte('|')
				}
				fmt.Fprint(&b, v)
			}
			b.WriteByte('\n')
		}
		if err := rows.Close(); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// serverQuery runs one read on the server through the (fault-free) network.
func (w *world) serverQuery(sql string) ([]hrana.Col, [][]hrana.Value, error) {
	body := fmt.Sprintf(`{"baton":null,"requests":[{"type":"execute","stmt":{"sql":%q}}]}`, sql)
	req, _ := http.NewRequest("POST", "http://sim/v2/pipeline", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.tr.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	out, _ := io.ReadAll(resp.Body)
	r, err := hrana.DecodePipelineResp(out)
	if err != nil {
		return nil, nil, err
	}
	res := r.Results[0]
	if res.Type != hrana.ResultOK {
		return nil, nil, res.Error
	}
	return res.Response.StmtResult.Cols, res.Response.StmtResult.Rows, nil
}

func (w *world) dumpServer() (string, map[string][]string, error) {
	var b strings.Builder
	cols := map[string][]string{}
	for _, t := range userTables {
		cs, rows, err := w.serverQuery("SELECT * FROM " + t + " ORDER BY 1")
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue
			}
			return "", nil, err
		}
		var names []string
		for _, c := range cs {
			names = append(names, *c.Name)
		}
		cols[t] = names
		fmt.Fprintf(&b, "%s(%s)\n", t, strings.Join(names, ","))
		for _, row := range rows {
			for i, v := range row {
				if i > 0 {
					b.WriteByte('|')
				}
				fmt.Fprint(&b, v.V)
			}
			b.WriteByte('\n')
		}
	}
	return b.String(), cols, nil
}

// checkQuiescent runs the invariants of a quiescent system and returns a
// hash of the final contents.
func (w *world) checkQuiescent() string {
	srvDump, cols, err := w.dumpServer()
	if err != nil {
		w.fail("server dump: %v", err)
		return ""
	}
	if _, rows, err := w.serverQuery("PRAGMA integrity_check"); err != nil || len(rows) != 1 || rows[0][0].V != "ok" {
		w.fail("server integrity_check: %v %v", rows, err)
	}
	// The server holds what the committed pushes say, in commit order.
	var mb strings.Builder
	for _, t := range userTables {
		if c, ok := cols[t]; ok {
			fmt.Fprintf(&mb, "%s(%s)\n", t, strings.Join(c, ","))
			mb.WriteString(w.model.dump(t, c))
		}
	}
	if got := strings.ReplaceAll(srvDump, "<nil>", "<nil>"); got != mb.String() {
		w.fail("server differs from the model of committed pushes:\nserver:\n%s\nmodel:\n%s", srvDump, mb.String())
	}
	// Every replica converged on the server.
	for _, c := range w.clients {
		d, err := dumpClient(c.db)
		if err != nil {
			w.fail("%s dump: %v", c.name, err)
			continue
		}
		if d != srvDump {
			w.fail("%s differs from the server after a quiescent push+pull:\n%s\nserver:\n%s", c.name, d, srvDump)
		}
	}
	// No lost write: every local write that committed and changed rows was
	// pushed, or is held back by a conflict on record (resolved for the
	// remote side). (Exactly once is checked on every committed batch, by
	// the chain of high-water marks; a token may legitimately travel again
	// when keeping the local side brings a deleted row back.)
	w.model.mu.Lock()
	for _, c := range w.clients {
		for _, tok := range c.tokens {
			if w.model.tokens[tok] == 0 && !c.heldTokens[tok] {
				w.fail("%s's committed write %s never reached the server, and no conflict holds it", c.name, tok)
			}
		}
	}
	w.model.mu.Unlock()
	w.checkLost()
	w.checkLanding()
	// Each client's synced base is the server's pages at its revision.
	for _, c := range w.clients {
		w.dropPrefetches(c)
		c.db.Close()
		c.db = nil
		w.checkBase(c)
	}
	sum := sha256.Sum256([]byte(srvDump))
	return hex.EncodeToString(sum[:8])
}

// checkBase compares c's synced base with the server's pages at c's
// revision, byte for byte.
func (w *world) checkBase(c *client) {
	meta, err := metaactor.Load(fsx.OS, layout.For(c.path).Info)
	if err != nil {
		w.fail("%s: load metadata: %v", c.name, err)
		return
	}
	if meta.SyncedRevision == nil {
		return
	}
	local := map[uint32][]byte{}
	var present func(uint32) bool
	if p := meta.SyncDB.Partial; p != nil {
		bm, err := pageactor.LoadPresence(fsx.OS, c.path, p.DBSize)
		if err != nil {
			w.fail("%s: load presence: %v", c.name, err)
			return
		}
		present = bm.Contains
	}
	err = dbactor.BaseImage(fsx.OS, c.path, meta, present, func(pg uint32, data []byte) error {
		if data != nil {
			local[pg] = bytes.Clone(data)
		}
		return nil
	})
	if err != nil {
		w.fail("%s: read synced base: %v", c.name, err)
		return
	}
	sel, _ := wire.EncodeSelector(wire.SelectorRange(0, meta.SyncDB.Base.DBSize))
	body, _ := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerRevision: meta.SyncedRevision.Revision, ServerPagesSelector: sel})
	req, _ := http.NewRequest("POST", "http://sim/pull-updates", bytes.NewReader(body))
	resp, err := w.tr.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		w.fail("%s: fetch the server's revision %s: %v %v", c.name, meta.SyncedRevision.Revision, resp, err)
		return
	}
	fr := wire.NewFrameReader(resp.Body, 0)
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if err := fr.Next(hdr); err != nil {
		w.fail("%s: server header: %v", c.name, err)
		return
	}
	if uint32(hdr.DbSize) != meta.SyncDB.Base.DBSize {
		w.fail("%s: base has %d pages, the server's revision %d", c.name, meta.SyncDB.Base.DBSize, hdr.DbSize)
	}
	var diff []uint32
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			w.fail("%s: server page: %v", c.name, err)
			return
		}
		if l, ok := local[uint32(id+1)]; ok && !bytes.Equal(l, page) {
			diff = append(diff, uint32(id+1))
		}
	}
	if len(diff) > 0 {
		sort.Slice(diff, func(i, j int) bool { return diff[i] < diff[j] })
		w.fail("%s: synced base differs from the server's revision %s on pages %v", c.name, meta.SyncedRevision.Revision, diff)
	}
}

// checkLanding is the last-writer-wins oracle and the atomicity check of
// local transactions, over what each client meant to write (its tokens, by
// transaction) and the order in which its pushes landed on the server:
//
//   - A token lands once. Landing again means a write the server already
//     had came back, over whatever landed since (a stale write that then
//     converges everywhere, so convergence and the model cannot see it),
//     or one statement's changes travelled in two batches. Only keeping the
//     local side of a conflict sends a write again.
//   - A local transaction's writes land in one batch: otherwise another
//     replica could pull half of it.
//
// Writes a conflict touched are exempt from both (a conflict holds back or
// resends single changes, by design).
func (w *world) checkLanding() {
	exempt := func(tok string) bool {
		for _, c := range w.clients {
			if c.conflictTokens[tok] {
				return true
			}
		}
		return false
	}
	w.model.mu.Lock()
	defer w.model.mu.Unlock()
	for _, l := range w.model.again {
		if !exempt(l.token) {
			w.fail("%s landed on the server again, in batch %d, after batch %d had it (no conflict sent it again): a stale write came back, or a statement's changes were split",
				l.token, l.batch, w.model.first[l.token])
			return
		}
	}
	for _, c := range w.clients {
		for _, txn := range c.txns {
			if slices.ContainsFunc(txn, exempt) {
				continue
			}
			batches := map[int][]string{}
			for _, tok := range txn {
				if b, ok := w.model.first[tok]; ok {
					batches[b] = append(batches[b], tok)
				}
			}
			if len(batches) > 1 {
				w.fail("%s's transaction %v landed in %d batches: %v (another replica could see half of it)", c.name, txn, len(batches), batches)
				return
			}
		}
	}
}
