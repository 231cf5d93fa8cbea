package syncactor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/change"
	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/wire/hrana"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// pull downloads the pages changed since the synced revision into the
// changes file and has the database actor apply them.
func (s *syncActor) pull(ctx context.Context, p *messages.Pull) (messages.PullResult, error) {
	var res messages.PullResult
	if err := s.refuseCopy(ctx); err != nil {
		return res, err
	}
	if err := s.settleFork(ctx); err != nil {
		return res, err
	}
	err := s.retry(ctx, func() error {
		var err error
		res, err = s.pullOnce(ctx, p)
		return err
	})
	if errors.Is(err, netactor.ErrRevisionGone) {
		return res, fmt.Errorf("%w: %w", ErrRebootstrap, err)
	}
	if err != nil {
		return res, err
	}
	return res, s.waiting(ctx)
}

func (s *syncActor) pullOnce(ctx context.Context, p *messages.Pull) (messages.PullResult, error) {
	var res messages.PullResult
	m, err := s.meta(ctx)
	if err != nil {
		return res, err
	}
	req := &syncpb.PullUpdatesReqProtoBody{}
	if m.SyncedRevision != nil {
		req.ClientRevision = m.SyncedRevision.Revision
	}
	longPoll := s.cfg.LongPoll
	if p.LongPoll > 0 {
		longPoll = p.LongPoll
	}
	if longPoll > 0 {
		req.LongPollTimeoutMs = uint32(longPoll.Milliseconds())
	}
	failpoint.Hit("pull.start", s.cfg.Path)
	// The download is the database actor's file: it hands out the sink and
	// removes the file when it applies it; a download not applied is
	// dropped here at once, so that its space goes back.
	w, err := s.cfg.DB.Download(ctx)
	if err != nil {
		return res, err
	}
	applied := false
	defer func() {
		if !applied {
			// Not the pull's error: the file is the database actor's, removed
			// at its next Download, open or stop if not now.
			if err := s.cfg.DB.DropDownload(context.WithoutCancel(ctx), w); err != nil {
				s.cfg.Logger.Debug("dropping the pull's download", "err", err)
			}
		}
	}()
	reqCtx, answered, release := wakeable(ctx, p.Wake)
	defer release()
	info, err := s.cfg.Net.PullUpdates(reqCtx, &messages.PullUpdates{
		Req: req, RetryUntil: s.until,
		OnHeader: func(*syncpb.PullUpdatesRespProtoBody) error {
			if !answered() {
				return messages.ErrWoken
			}
			return nil
		},
		OnPage: func(pgno uint32, data []byte) error {
			s.progress("pull", int64(w.Pages())+1, 0)
			return w.Add(pgno, data)
		},
	})
	if err != nil {
		if errors.Is(context.Cause(reqCtx), messages.ErrWoken) {
			return res, messages.ErrWoken
		}
		return res, err
	}
	hdr := info.Header
	if hdr.DbSize > 1<<31 {
		return res, fmt.Errorf("server reports an impossible database size of %d pages", hdr.DbSize)
	}
	if info.Database != "" && m.SyncDB.Database == "" {
		// A replica older than the server's names learns it (URL checks).
		if err := s.updateMeta(ctx, func(m *messages.Meta) error { m.SyncDB.Database = info.Database; return nil }); err != nil {
			return res, err
		}
	}
	// Even an empty pull goes to the database actor: it checks that nobody
	// else wrote to the files. It closes and removes the download, applied
	// or not; only an Ask that may not have reached it drops it again.
	res, err = s.cfg.DB.ApplyPull(ctx, &messages.ApplyPull{
		Revision: hdr.ServerRevision, DBSize: uint32(hdr.DbSize), Download: w, Tables: p.Tables,
	})
	applied = err == nil
	return res, err
}

// wakeable returns the context for a pull request that a value from wake
// cancels (with cause ErrWoken) as long as the server has not begun to
// answer, and answered, which the header callback calls: it reports false
// if the wake came first. A wake after the answer began is put back.
// release frees the context.
func wakeable(ctx context.Context, wake chan struct{}) (reqCtx context.Context, answered func() bool, release func()) {
	if wake == nil {
		return ctx, func() bool { return true }, func() {}
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	release = func() { cancel(nil) }
	var mu sync.Mutex
	begun, woken := false, false
	stop := make(chan struct{})
	go func() {
		select {
		case <-wake:
			mu.Lock()
			if begun {
				select {
				case wake <- struct{}{}:
				default:
				}
			} else {
				woken = true
				cancel(messages.ErrWoken)
			}
			mu.Unlock()
		case <-stop:
		case <-reqCtx.Done():
		}
	}()
	answered = func() bool {
		mu.Lock()
		defer mu.Unlock()
		if !begun {
			begun = true
			close(stop)
		}
		return !woken
	}
	return reqCtx, answered, release
}

// errBatchInterrupted: the server interrupted a push batch before its
// end (nothing of it was applied); transient.
var errBatchInterrupted = netactor.Transient(errors.New("the server interrupted the push batch (its statement timeout may be too short for this transaction, or it is overloaded)"))

// guardFailure is how SQLite words the designed failure of a guard
// (change.Guard, continuityGuard): json() of a text that is not JSON. A
// guard step failing otherwise did not find the row changed.
const guardFailure = "malformed JSON"

// errOutOfOrder: the server's high-water mark is not where this batch
// starts (a duplicate of this request got there first, or another push by
// this client); nothing was applied, and a retry re-reads the mark:
// transient.
var errOutOfOrder = netactor.Transient(errors.New("push out of order: the server's high-water mark moved"))

const (
	highWaterSelect = "SELECT client_id, pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id IN (?, ?)"
	highWaterTable  = "CREATE TABLE IF NOT EXISTS turso_sync_last_change_id (client_id TEXT PRIMARY KEY, pull_gen INTEGER, change_id INTEGER)"
	// continuityGuard fails (json() of a non-JSON text is an error) unless
	// the server's high-water mark for this client is exactly where this
	// batch starts: a duplicated or replayed batch (the mark is past it) or
	// one that would skip changes (the mark is short of it) changes nothing.
	// Args: client id, pull generation, the batch's floor (last change id
	// the server should already have, 0 for none of this generation).
	continuityGuard = "SELECT json(CASE WHEN coalesce((SELECT CASE WHEN pull_gen = ?2 THEN change_id WHEN pull_gen < ?2 THEN 0 ELSE -1 END " +
		"FROM turso_sync_last_change_id WHERE client_id = ?1), 0) = ?3 THEN '0' ELSE 'push out of order' END)"
	highWaterUpsert = "INSERT INTO turso_sync_last_change_id(client_id, pull_gen, change_id) VALUES (?, ?, ?) " +
		"ON CONFLICT(client_id) DO UPDATE SET pull_gen=excluded.pull_gen, change_id=excluded.change_id"
)

// push sends the local changes the server does not have yet, exactly once:
// the floor is re-read from the server's high-water mark before every
// attempt, and each batch moves the mark in the same server transaction.
// A batch the server refuses because a change met a row it did not expect
// (a conflict) changes nothing there; push then pulls, so that the replay
// records or resolves the conflict, and pushes what remains.
func (s *syncActor) push(ctx context.Context, tables bool) (messages.PushResult, error) {
	var out messages.PushResult
	pulled := &out.Pulled
	m, err := s.meta(ctx)
	if err != nil {
		return out, err
	}
	if err := s.refuseCopy(ctx); err != nil {
		return out, err
	}
	if m.SyncDB.Origin != nil {
		if err := s.settleFork(ctx); err != nil {
			return out, err
		}
		if m, err = s.meta(ctx); err != nil {
			return out, err
		}
	}
	// Nothing new since the last successful push: no request at all.
	probe, err := s.cfg.DB.PendingChanges(ctx, &messages.PendingChanges{Unpushed: true, Peek: true})
	if err != nil {
		return out, err
	}
	if probe.Recorded && len(probe.Changes) == 0 {
		return out, s.waiting(ctx)
	}
	for round := 1; ; round++ {
		err := s.retry(ctx, func() error { return s.pushOnce(ctx, m.ClientUniqueID, &out.Pushed) })
		var pc *pushConflict
		switch {
		case err == nil:
			return out, s.waiting(ctx)
		case !errors.As(err, &pc):
			return out, err
		case round == maxPushRounds:
			// Pulling did not make the server take it: the server refuses
			// what the local database accepts.
			return out, fmt.Errorf("%w: %v", ErrPushRejected, pc)
		}
		s.cfg.Logger.Info("the server has changes that conflict with local ones: pulling them first", "change", pc.Error())
		res, err := s.pull(ctx, &messages.Pull{Tables: tables})
		if err != nil && !errors.Is(err, dbactor.ErrConflict) {
			return out, err
		}
		if res.Changed {
			pulled.Changed, pulled.Revision = true, res.Revision
			pulled.Tables = append(pulled.Tables, res.Tables...)
		}
	}
}

// maxPushRounds bounds the pushes (and pulls between them) of one Push.
const maxPushRounds = 3

// pushConflict is a push batch the server refused at a change: a guard
// found the row not as the change expects, or a statement failed (a
// constraint). Nothing of the batch was applied.
type pushConflict struct {
	c   change.Change
	msg string
}

func (e *pushConflict) Error() string {
	return fmt.Sprintf("the server refused the local %s of %s %v: %s", e.c.Op, e.c.Table, change.Key(e.c), e.msg)
}

// refuseCopy returns ErrClientCloned if the replica was found to be a copy
// of another one.
func (s *syncActor) refuseCopy(ctx context.Context) error {
	st, err := s.cfg.DB.ReplicaStatus(ctx)
	if err != nil || st.Cloned == "" {
		return err
	}
	return dbactor.ClonedError(s.cfg.Path, st.Cloned)
}

// waiting returns an error wrapping ErrClientCloned if the replica turned
// out to be a copy, or ErrConflict if local changes wait for conflicts to
// be resolved.
func (s *syncActor) waiting(ctx context.Context) error {
	st, err := s.cfg.DB.ReplicaStatus(ctx)
	if err != nil {
		return err
	}
	if st.Cloned != "" {
		return dbactor.ClonedError(s.cfg.Path, st.Cloned)
	}
	cs := st.Conflicts
	if len(cs) == 0 {
		return nil
	}
	c := cs[0]
	more := ""
	if len(cs) > 1 {
		more = fmt.Sprintf(" and %d more", len(cs)-1)
	}
	return fmt.Errorf("%w: %s on %s %v (conflict %d)%s; see DB.Conflicts, or run: syncdb conflicts %s",
		dbactor.ErrConflict, c.Kind, c.Table, c.Key, c.ID, more, s.cfg.Path)
}

func (s *syncActor) pushOnce(ctx context.Context, id string, pushed *int) error {
	hw, chain, err := s.highWater(ctx, id)
	if err != nil {
		return err
	}
	failpoint.Hit("push.highwater", s.cfg.Path)
	local, err := s.cfg.DB.PendingChanges(ctx, &messages.PendingChanges{Peek: true})
	if err != nil {
		return err
	}
	floor := int64(0)
	if hw != nil {
		// The server's mark must be this replica's own: a copy that shares
		// the client id would otherwise skip its changes as pushed.
		why, err := s.cfg.DB.CheckMarks(ctx, *hw, chain)
		if err != nil {
			return err
		}
		if why != "" {
			if err := s.cfg.DB.MarkCloned(ctx, why); err != nil {
				return err
			}
			return dbactor.ClonedError(s.cfg.Path, why)
		}
		floor = pushFloor(hw, local.PullGen)
	}
	// A server that shows no chain row may keep none: the database records
	// what is sent before it goes, so that the mark of a batch whose answer
	// is lost still verifies without one (dbactor's pushed.go).
	recordSent := chain == nil
	// One batch per PushBatch changes (whole local transactions), read one
	// at a time so that a large change log is never all in memory.
	for {
		batch, err := s.cfg.DB.PendingChanges(ctx, &messages.PendingChanges{After: floor, Limit: s.cfg.PushBatch, RecordSent: recordSent})
		if err != nil {
			return err
		}
		if len(batch.Changes) == 0 {
			return s.recordPush(ctx, batch.PullGen, floor)
		}
		ci, err := s.chain(ctx, batch.Changes[len(batch.Changes)-1].ID)
		if err != nil {
			return err
		}
		b, err := buildBatch(id, batch.PullGen, floor, batch.Changes, s.ignored, ci)
		if err != nil {
			return err
		}
		if err := s.send(ctx, b); err != nil {
			return err
		}
		failpoint.Hit("push.sent", s.cfg.Path)
		for _, c := range batch.Changes {
			if !s.ignored[c.Table] {
				*pushed++
			}
		}
		floor = batch.Changes[len(batch.Changes)-1].ID
		if err := s.recordPush(ctx, batch.PullGen, floor); err != nil {
			return err
		}
		failpoint.Hit("push.recorded", s.cfg.Path)
		if !batch.More {
			return nil
		}
	}
}

// pushFloor is the last change id of local pull generation gen that the
// server has, by its high-water mark hw for this client (nil: none): a mark
// of another generation says nothing about this one's changes, whose ids
// start again.
func pushFloor(hw *messages.Mark, gen int64) int64 {
	if hw == nil || hw.Gen != gen {
		return 0
	}
	return hw.ID
}

// recordPush has the database record that the server has the changes of
// generation gen up to id, and drop them from the change log, in one
// local transaction (no -info rewrite: see dbactor's pushed.go).
func (s *syncActor) recordPush(ctx context.Context, gen, id int64) error {
	err := s.cfg.DB.RecordPush(ctx, gen, id, s.cfg.Clock.Now().Unix())
	return err
}

// highWater reads client id's mark of turso_sync_last_change_id on the
// server, and its push chain value (each nil if absent). A read may be
// retried freely.
func (s *syncActor) highWater(ctx context.Context, id string) (hw, chain *messages.Mark, err error) {
	sql := highWaterSelect
	want := true
	resp, err := s.cfg.Net.Pipeline(ctx, &messages.Pipeline{Retryable: true, RetryUntil: s.until, Body: hrana.PipelineReqBody{
		Requests: []hrana.StreamRequest{{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: []hrana.BatchStep{{
			Stmt: hrana.Stmt{SQL: &sql, Args: []hrana.Value{hrana.Text(id), hrana.Text(id + dbactor.ChainSuffix)}, WantRows: &want},
		}}}}},
	}})
	if err != nil {
		return nil, nil, err
	}
	if len(resp.Results) != 1 {
		return nil, nil, fmt.Errorf("high-water read: %d results", len(resp.Results))
	}
	r := resp.Results[0]
	if r.Type != hrana.ResultOK || r.Response == nil || r.Response.BatchResult == nil {
		return nil, nil, fmt.Errorf("high-water read: %v", r.Error)
	}
	br := r.Response.BatchResult
	if len(br.StepErrors) > 0 && br.StepErrors[0] != nil {
		// The server's words are the protocol here: a Hrana step error
		// is a message and a code, and a missing table is SQLITE_ERROR
		// (SQLITE_UNKNOWN on the wire), known only by its message.
		if strings.Contains(br.StepErrors[0].Message, "no such table") {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("high-water read: %w", br.StepErrors[0])
	}
	if len(br.StepResults) == 0 || br.StepResults[0] == nil {
		return nil, nil, nil
	}
	for _, row := range br.StepResults[0].Rows {
		if len(row) < 3 {
			return nil, nil, fmt.Errorf("high-water read: unexpected row %v", row)
		}
		who, ok0 := row[0].V.(string)
		g, ok1 := row[1].V.(int64)
		c, ok2 := row[2].V.(int64)
		if !ok0 || !ok1 || !ok2 {
			return nil, nil, fmt.Errorf("high-water read: unexpected row %v", row)
		}
		if who == id {
			hw = &messages.Mark{Gen: g, ID: c}
		} else {
			chain = &messages.Mark{Gen: g, ID: c}
		}
	}
	return hw, chain, nil
}

// mutation holds deliberate bugs, off unless a build tag plants one
// (mutation_*.go; scripts/mutations.sh runs the simulator on each).
var mutation struct {
	blindDeletes bool // a push sends no guard for a delete
}

// batch is a push batch being built: steps that each run only if the one
// before succeeded (or failed tolerably) and the transaction is still
// open, so that a failing step can never let a high-water mark commit
// without the changes before it.
type batch struct {
	steps     []hrana.BatchStep
	tolerated map[int]string        // step -> the error text it may fail with
	changeAt  map[int]change.Change // step -> the change it belongs to
	guards    map[int]bool          // steps that are change.Guard reads
	marks     []int                 // steps that are continuity guards
}

func newBatch() *batch {
	b := &batch{tolerated: map[int]string{}, changeAt: map[int]change.Change{}, guards: map[int]bool{}}
	b.add("BEGIN IMMEDIATE", nil, "")
	b.add(highWaterTable, nil, "")
	return b
}

func (b *batch) add(sql string, args []any, tol string) {
	vals := make([]hrana.Value, len(args))
	for i, a := range args {
		vals[i] = hrana.Value{V: a}
	}
	no := false
	st := hrana.BatchStep{Stmt: hrana.Stmt{SQL: &sql, Args: vals, WantRows: &no}}
	if i := len(b.steps); i > 0 {
		prev := uint32(i - 1)
		ran := hrana.BatchCond{Type: hrana.CondOK, Step: prev}
		if _, tol := b.tolerated[i-1]; tol {
			ran = hrana.BatchCond{Type: hrana.CondOr, Conds: []hrana.BatchCond{ran, {Type: hrana.CondError, Step: prev}}}
		}
		st.Condition = &hrana.BatchCond{Type: hrana.CondAnd, Conds: []hrana.BatchCond{
			{Type: hrana.CondNot, Cond: &hrana.BatchCond{Type: hrana.CondIsAutocommit}}, ran}}
	}
	if tol != "" {
		b.tolerated[len(b.steps)] = tol
	}
	b.steps = append(b.steps, st)
}

// continuity adds the guard that client id's mark is (gen, floor).
func (b *batch) continuity(id string, gen, floor int64) {
	b.marks = append(b.marks, len(b.steps))
	b.add(continuityGuard, []any{id, gen, floor}, "")
}

// change adds c's guard and statements.
func (b *batch) change(c change.Change) error {
	// The row must be on the server as this change expects it; if not,
	// another client changed it meanwhile (change.Guard).
	guard, ok, err := change.Guard(c)
	if err != nil {
		return fmt.Errorf("change %d: %w", c.ID, err)
	}
	if ok && !(mutation.blindDeletes && c.Op == change.Delete) {
		b.changeAt[len(b.steps)], b.guards[len(b.steps)] = c, true
		b.add(guard.SQL, guard.Args, "")
	}
	stmts, err := change.Statements(c)
	if err != nil {
		return fmt.Errorf("change %d: %w", c.ID, err)
	}
	for _, st := range stmts {
		b.changeAt[len(b.steps)] = c
		b.add(st.SQL, st.Args, st.Tolerated)
	}
	return nil
}

// mark adds the upserts of client id's push chain value (if known) and
// mark.
func (b *batch) mark(id string, gen, last int64, chain messages.ChainInfo) {
	if chain.OK {
		b.add(highWaterUpsert, []any{id + dbactor.ChainSuffix, gen, chain.Value}, "")
	}
	b.add(highWaterUpsert, []any{id, gen, last}, "")
}

// commit ends the batch.
func (b *batch) commit() { b.add("COMMIT", nil, "") }

// send has the server run the batch (which commit ended), or explains why
// it did not commit.
func (s *syncActor) send(ctx context.Context, b *batch) error {
	steps := b.steps
	resp, err := s.cfg.Net.Pipeline(ctx, &messages.Pipeline{Body: hrana.PipelineReqBody{
		Requests: []hrana.StreamRequest{{Type: hrana.ReqBatch, Batch: &hrana.Batch{Steps: steps}}},
	}})
	if err != nil {
		return err
	}
	if len(resp.Results) != 1 || resp.Results[0].Type != hrana.ResultOK || resp.Results[0].Response.BatchResult == nil {
		return fmt.Errorf("%w: unexpected response %+v", ErrPushRejected, resp.Results)
	}
	return b.outcome(resp.Results[0].Response.BatchResult)
}

// outcome reads the server's answer to the batch: nil if it committed,
// errOutOfOrder if a continuity guard failed, errBatchInterrupted if the
// server stopped it, a *pushConflict if a change met a row it did not
// expect or a statement failed, else ErrPushRejected.
func (b *batch) outcome(br *hrana.BatchResult) error {
	steps := b.steps
	if len(br.StepResults) != len(steps) || len(br.StepErrors) != len(steps) {
		return fmt.Errorf("%w: %d step results for %d steps", ErrPushRejected, len(br.StepResults), len(steps))
	}
	for _, i := range b.marks {
		if br.StepErrors[i] != nil {
			return errOutOfOrder
		}
	}
	for i := range steps {
		if e := br.StepErrors[i]; e != nil {
			if tol, ok := b.tolerated[i]; ok && strings.Contains(e.Message, tol) {
				continue
			}
			if e.Code == "SQLITE_INTERRUPT" || e.Code == "SQLITE_BUSY" {
				// The server stopped the batch (its statement timeout, a busy
				// writer): says nothing about the rows; try again.
				return fmt.Errorf("%w at step %d of %d (%s: %s)", errBatchInterrupted, i, len(steps), e.Code, e.Message)
			}
			if c, ok := b.changeAt[i]; ok {
				pc := &pushConflict{c: c, msg: e.Message}
				if b.guards[i] && strings.Contains(e.Message, guardFailure) {
					pc.msg = "the server's row is not as this change expects (another client changed it)"
				}
				return pc
			}
			return fmt.Errorf("%w: %s: %s", ErrPushRejected, *steps[i].Stmt.SQL, e.Error())
		}
	}
	if br.StepResults[len(steps)-1] == nil {
		return fmt.Errorf("%w: the transaction did not commit", ErrPushRejected)
	}
	return nil
}

// chain asks the database actor for the push chain value up to last.
func (s *syncActor) chain(ctx context.Context, last int64) (messages.ChainInfo, error) {
	return s.cfg.DB.Chain(ctx, last)
}

// buildBatch plans the push of cs, the changes of local pull generation
// gen after floor (whole local transactions, see dbactor's
// pendingChanges), as one server transaction: BEGIN IMMEDIATE, the
// continuity guard (step 2), each change's guard and statements but those
// of the ignored tables, the push chain value ci up to the last change and
// the high-water upsert, COMMIT. It is pure: the caller reads ci and sends.
func buildBatch(id string, gen, floor int64, cs []change.Change, ignored map[string]bool, ci messages.ChainInfo) (*batch, error) {
	last := cs[len(cs)-1].ID
	if !ci.OK {
		return nil, fmt.Errorf("the push chain up to change %d cannot be computed", last)
	}
	b := newBatch()
	b.continuity(id, gen, floor) // step 2
	for _, c := range cs {
		if ignored[c.Table] {
			continue
		}
		if err := b.change(c); err != nil {
			return nil, err
		}
	}
	b.mark(id, gen, last, ci) // the mark is the last step before COMMIT (the simulator reads it)
	b.commit()
	return b, nil
}

// forkClaim decides who pushes the changes a copy inherited (those of
// generation o.PullGen up to o.Last, made under o.ClientID), from the old
// id's mark on the server (nil: none): claim is the old id's mark the new
// id takes the changes after from (nil: the old id has them all), floor
// the new id's first mark.
func forkClaim(o messages.Origin, old *messages.Mark) (claim *messages.Mark, floor int64) {
	switch {
	case old == nil || old.Gen < o.PullGen:
		// The old id has none of this generation: all of it is ours.
		return &messages.Mark{Gen: o.PullGen, ID: 0}, 0
	case old.Gen == o.PullGen && old.ID < o.Last:
		return old, old.ID
	}
	// The old id has every inherited change (or moved on to a newer
	// generation, taking the rest with it): they are its.
	return nil, o.Last
}

// forkBatch is the server transaction that settles a fork as forkClaim
// decided: with a claim, the old id's mark moves from the claimed one to
// o.Last (so that the other copy, if any, skips those changes), with
// oldChain, the push chain up to o.Last; the new id's mark, which must not
// exist yet, starts at floor, with newChain up to it.
func forkBatch(id string, o messages.Origin, claim *messages.Mark, floor int64, oldChain, newChain messages.ChainInfo) *batch {
	b := newBatch()
	if claim != nil {
		b.continuity(o.ClientID, o.PullGen, claim.ID)
		b.mark(o.ClientID, o.PullGen, o.Last, oldChain)
	}
	b.continuity(id, o.PullGen, 0)
	b.mark(id, o.PullGen, floor, newChain)
	b.commit()
	return b
}

// settleFork sorts out, before a copy's first push or pull under its new
// client id, the changes it inherited (see dbactor's home.go): in one
// server transaction, the old id's mark moves past the inherited changes it
// does not have yet (so that the other copy, if any, skips them, and this
// one pushes them), and the new id's mark starts after those it has. Done
// twice (a lost answer), it finds the new id's mark and only finishes.
func (s *syncActor) settleFork(ctx context.Context) error {
	for round := 1; ; round++ {
		m, err := s.meta(ctx)
		if err != nil || m.SyncDB.Origin == nil {
			return err
		}
		o, id := *m.SyncDB.Origin, m.ClientUniqueID
		floor := o.Last // where the new id starts
		var claim *messages.Mark
		err = s.retry(ctx, func() error {
			claim, floor = nil, o.Last
			own, _, err := s.highWater(ctx, id)
			if err != nil || own != nil {
				if own != nil {
					floor = own.ID // settled already
				}
				return err
			}
			old, _, err := s.highWater(ctx, o.ClientID)
			if err != nil {
				return err
			}
			claim, floor = forkClaim(o, old)
			var oldChain messages.ChainInfo
			if claim != nil {
				if oldChain, err = s.chain(ctx, o.Last); err != nil {
					return err
				}
			}
			newChain, err := s.chain(ctx, floor)
			if err != nil {
				return err
			}
			return s.send(ctx, forkBatch(id, o, claim, floor, oldChain, newChain))
		})
		switch {
		case errors.Is(err, errOutOfOrder) && round < maxPushRounds:
			continue // the old id moved meanwhile: look again
		case err != nil:
			return fmt.Errorf("take the new client id %s on the server: %w", id, err)
		}
		failpoint.Hit("fork.settled", s.cfg.Path)
		s.cfg.Logger.Info("the new client id is known to the server", "id", id, "inherited from", o.ClientID, "starts after", floor)
		return s.updateMeta(ctx, func(m *messages.Meta) error {
			m.SyncDB.Origin = nil
			m.LastPushedPullGenHint, m.LastPushedChangeIDHint = o.PullGen, floor
			return nil
		})
	}
}
