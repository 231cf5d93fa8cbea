package sim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/syncdb/syncdb"
)

// The workload's schema. Keys come from a small range so that clients
// collide; values are tokens "c<client>.<n>" so that every write can be
// traced to the server.
const (
	keys      = 24
	kvSchema  = "CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, a TEXT, b TEXT)"
	extraCols = 2 // kv may gain columns x1, x2
	extraTabs = 2 // tables t1, t2 may appear
)

// Failpoints per operation, for crash plans ("" = any).
var failpoints = map[string][]string{
	"write":      {"write.committed", "checkpoint.revert", "checkpoint.meta", "checkpoint.copied", "fsx.written", "fsx.synced", "fsx.renamed", ""},
	"push":       {"push.highwater", "push.sent", "push.recorded", "fsx.written", "fsx.synced", "fsx.renamed", ""},
	"pull":       {"pull.start", "journal.written", "pull.journal", "pull.pending", "pull.t1", "pull.t2", "pull.done", "fsx.written", "fsx.synced", "fsx.renamed", ""},
	"sync":       {"push.sent", "pull.pending", "pull.t1", "pull.t2", "pull.done", ""},
	"checkpoint": {"checkpoint.revert", "checkpoint.meta", "checkpoint.copied", "fsx.written", "fsx.synced", "fsx.renamed", ""},
	"reopen":     {"bootstrap.downloaded", "bootstrap.meta", "pull.t2", "pull.done", "checkpoint.copied", "fsx.renamed", ""},
}

func (c *client) token() string {
	c.seq++
	return fmt.Sprintf("c%d.%d", c.i, c.seq)
}

// stmt is one generated statement and the token it writes ("" for none).
type stmt struct {
	sql   string
	args  []any
	token string
}

func (w *world) genStmt(c *client) stmt {
	k := int64(w.rng.IntN(keys))
	switch r := w.rng.IntN(100); {
	case r < 20:
		t := c.token()
		return stmt{"INSERT INTO kv(k, a, b) VALUES(?, ?, ?)", []any{k, t, t}, t}
	case r < 25:
		// A key SQLite assigns: replicas collide on it, and the default
		// policy moves the later row to a new key.
		t := c.token()
		return stmt{"INSERT INTO kv(a, b) VALUES(?, ?)", []any{t, t}, t}
	case r < 35:
		t := c.token()
		return stmt{"INSERT OR REPLACE INTO kv(k, a, b) VALUES(?, ?, ?)", []any{k, t, t}, t}
	case r < 55:
		t := c.token()
		return stmt{"UPDATE kv SET a = ? WHERE k = ?", []any{t, k}, t}
	case r < 62:
		t := c.token()
		return stmt{"UPDATE kv SET b = ? WHERE k >= ? AND k < ?", []any{t, k, k + 4}, t}
	case r < 72:
		return stmt{"DELETE FROM kv WHERE k = ?", []any{k}, ""}
	case r < 76:
		// A migration: the new column, filled in every row. A replica
		// that deletes one of them before it pulls the column meets a
		// conflict.
		x, t := 1+w.rng.IntN(extraCols), c.token()
		return stmt{fmt.Sprintf("ALTER TABLE kv ADD COLUMN x%d TEXT; UPDATE kv SET x%[1]d = '%s'", x, t), nil, t}
	case r < 82:
		t := c.token()
		return stmt{fmt.Sprintf("UPDATE kv SET x%d = ? WHERE k = ?", 1+w.rng.IntN(extraCols)), []any{t, k}, t}
	case r < 85:
		return stmt{fmt.Sprintf("CREATE TABLE IF NOT EXISTS t%d(id INTEGER PRIMARY KEY, v TEXT)", 1+w.rng.IntN(extraTabs)), nil, ""}
	default:
		t := c.token()
		return stmt{fmt.Sprintf("INSERT OR REPLACE INTO t%d(id, v) VALUES(?, ?)", 1+w.rng.IntN(extraTabs)), []any{k, t}, t}
	}
}

// step runs one randomly chosen operation.
func (w *world) step(n int) {
	c := w.clients[w.rng.IntN(len(w.clients))]
	if n < c.startAt {
		return
	}
	w.ensureOpen(c)
	if c.db == nil {
		return
	}
	ctx := context.Background()
	if c.startAt > 0 && !c.probed {
		// Its first open (a bootstrap): the step reads kv's root alone.
		w.probeRoot(ctx, c)
		return
	}
	if !w.settlePrefetches(ctx, c) {
		return // c waits for its prefetches (prefetch.go)
	}
	r := w.rng.IntN(100)
	var op string
	switch {
	case r < 45:
		op = "write"
	case r < 48:
		op = "read"
	case r < 50:
		op = "resolve"
	case r < 64:
		op = "push"
	case r < 78:
		op = "pull"
	case r < 83:
		op = "sync"
	case r < 87:
		op = "checkpoint"
	case r < 91:
		op = "reopen"
	case r < 94:
		op = "crash"
	case r < 96:
		op = "server-crash"
	case r < 98:
		op = "server-maintain"
	default:
		op = "server-restart"
	}
	w.clock.advance(1e9)
	if w.cfg.crashes && failpoints[op] != nil && w.rng.IntN(100) < 20 {
		pts := failpoints[op]
		w.mu.Lock()
		w.plan = &crashPlan{owner: c.dir, point: pts[w.rng.IntN(len(pts))], countdown: 1 + w.rng.IntN(2), power: w.rng.IntN(2) == 0}
		w.mu.Unlock()
	}
	if w.cfg.crashes && (op == "pull" || op == "sync") && w.grng.IntN(100) < 10 {
		w.staleWAL(ctx, c)
	}
	if w.cfg.ioFaults && w.frng.IntN(100) < 10 {
		w.armIOFault(c)
	}
	if w.cfg.ioFaults && w.srng.IntN(100) < 8 {
		w.armHistoryFault()
	}
	if w.cfg.ioFaults && (op == "push" || op == "sync") && w.srng.IntN(100) < 15 {
		// A bootstrap beside this push (serverio.go), after a checkpoint
		// that leaves the WAL with nothing but the push's commit.
		w.compactAt.Store(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		err := w.srv.Maintain(ctx)
		w.compactAt.Store(0)
		w.logf("server: checkpoint before a push with a bootstrap beside it: %s", errText(err))
		w.mu.Lock()
		w.boot = &bootPlan{}
		w.mu.Unlock()
	}
	if c.longPoll > 0 && (op == "pull" || op == "sync") && w.frng.IntN(2) == 0 {
		w.mu.Lock()
		w.wake = &wakePlan{client: c.name}
		w.mu.Unlock()
	}
	var result string
	switch op {
	case "write":
		result = w.write(ctx, c)
	case "resolve":
		result = w.resolveSome(c, false)
	case "read":
		q := "SELECT count(*) FROM kv"
		if c.startAt > 0 {
			// A read of a few pages (prefetch.go): kv's root page alone (its
			// children are then prefetched), one row, or a small table.
			qs := []string{strings.Replace(kvRootRead, "?", "%d", 1), "SELECT count(*) FROM kv WHERE k = %d", "SELECT count(*) FROM t1 WHERE id < %d"}
			q = fmt.Sprintf(qs[w.krng.IntN(len(qs))], w.krng.IntN(keys))
		}
		var n int
		err := c.db.QueryRow(ctx, q).Scan(&n)
		result = fmt.Sprintf("%d %v", n, errText(err))
		if st, err := c.db.Stats(ctx); err == nil && st.PagesTotal > 0 {
			result += fmt.Sprintf(" (pages present %d of %d)", st.PagesPresent, st.PagesTotal)
		}
	case "push":
		err := c.db.Push(ctx)
		if result = errText(err); w.refusedAsCopy(c, op, err) {
			result = "refused as a copy, recovered"
		}
	case "pull":
		changed, err := c.db.Pull(ctx)
		if result = fmt.Sprintf("%v %s", changed, errText(err)); w.refusedAsCopy(c, op, err) {
			result = "refused as a copy, recovered"
		}
	case "sync":
		err := c.db.Sync(ctx)
		if result = errText(err); w.refusedAsCopy(c, op, err) {
			result = "refused as a copy, recovered"
		}
	case "checkpoint":
		result = errText(c.db.Checkpoint(ctx))
	case "reopen":
		w.dropPrefetches(c)
		err := c.db.Close()
		c.db = nil
		if err != nil && !strings.Contains(err.Error(), "simulated crash") {
			w.fail("%s: close: %v", c.name, err)
		}
		w.ensureOpen(c)
		result = "reopened"
	case "crash":
		if w.cfg.crashes {
			w.crashClient(c, w.rng.IntN(2) == 0, "between operations")
			w.ensureOpen(c)
		}
	case "server-crash":
		if w.cfg.crashes {
			w.crashServer(w.rng.IntN(2) == 0)
		}
	case "server-restart":
		w.logf("server restart")
		w.tr.setHandler(nil)
		w.srv.BeginShutdown()
		if err := w.srv.Close(); err != nil {
			if !w.historyFaulted() {
				w.fail("server close: %v", err)
			}
			result = "close: " + err.Error()
		}
		w.startServer()
	case "server-maintain":
		result = w.maintain(ctx)
	}
	c.fs.SetFault(nil)
	w.checkWake()
	w.finishBoot(ctx)
	if w.endHistoryFault() {
		result += " (a history write failed)"
	}
	w.logf("op %d %s %s: %s", n, c.name, op, result)
	if p := w.takeCrash(); p != nil {
		w.crashClient(c, p.power, p.fired)
		w.ensureOpen(c)
	}
	w.checkClient(c, op, result)
}

// staleWAL prepares a pull that starts on a WAL a checkpoint just emptied
// and is cut by a power loss before its first transaction (T1): the
// checkpoint's truncation of the WAL is not durable yet, so the power loss
// brings back the checkpointed frames of the older WAL generation, which
// recovery must not take for T1 (it finds T1 after the position the pull
// recorded, in that position's generation). It replaces the crash plan of
// the operation, if one was armed.
func (w *world) staleWAL(ctx context.Context, c *client) {
	w.mu.Lock()
	w.plan = nil
	w.mu.Unlock()
	err := c.db.Checkpoint(ctx)
	w.logf("%s: checkpoint before a pull cut by a power loss: %s", c.name, errText(err))
	if err != nil && !expectedError(errText(err)) {
		w.fail("%s: checkpoint before a pull: unexpected error: %v", c.name, err)
	}
	pts := []string{"pull.journal", "pull.pending"}
	w.mu.Lock()
	w.plan = &crashPlan{owner: c.dir, point: pts[w.grng.IntN(len(pts))], countdown: 1, power: true}
	w.mu.Unlock()
}

// write runs one statement or a transaction of a few, recording the tokens
// of what committed.
func (w *world) write(ctx context.Context, c *client) string {
	if w.rng.IntN(4) == 0 {
		var stmts []stmt
		for i := 0; i < 2+w.rng.IntN(3); i++ {
			stmts = append(stmts, w.genStmt(c))
		}
		var tokens []string
		c.commitSyncs = -1
		err := c.db.Tx(ctx, func(tx *syncdb.Tx) error {
			tokens = tokens[:0]
			for _, s := range stmts {
				res, err := tx.Exec(ctx, s.sql, s.args...)
				if err != nil {
					continue // e.g. a duplicate key: the transaction goes on without it
				}
				if n, _ := res.RowsAffected(); n > 0 && s.token != "" {
					tokens = append(tokens, s.token)
				}
			}
			return nil
		})
		if err == nil {
			c.tokens = append(c.tokens, tokens...)
			if len(tokens) > 1 {
				c.txns = append(c.txns, slices.Clone(tokens))
			}
			w.committedAtRisk(c, tokens)
		}
		return fmt.Sprintf("tx of %d: %s", len(stmts), errText(err))
	}
	s := w.genStmt(c)
	c.commitSyncs = -1
	res, err := c.db.Exec(ctx, s.sql, s.args...)
	if err == nil && s.token != "" {
		if n, _ := res.RowsAffected(); n > 0 {
			c.tokens = append(c.tokens, s.token)
			w.committedAtRisk(c, []string{s.token})
		}
	}
	return fmt.Sprintf("%s %v: %s", s.sql, s.args, errText(err))
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return "error: " + s
}
