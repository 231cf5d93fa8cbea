package dbactor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/syncdb/syncdb/internal/failpoint"
	"github.com/syncdb/syncdb/internal/sqlitex"
	"github.com/syncdb/syncdb/messages"
)

// ErrUnsupportedStatement reports a statement syncdb cannot run for the
// user because it would break change capture or the synced base.
var ErrUnsupportedStatement = errors.New("statement not supported on a synced database")

// cacheable reports statements worth keeping prepared on the writer: DML,
// whose plans do not depend on anything the statement itself changes.
func cacheable(keyword string) bool {
	switch keyword {
	case "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH":
		return true
	}
	return false
}

// Pragmas that would break the WAL or the synced base.
var deniedPragmas = []string{"journal_mode", "wal_checkpoint", "wal_autocheckpoint", "locking_mode", "page_size",
	"writable_schema", "query_only", "auto_vacuum", "incremental_vacuum", "schema_version", "journal_size_limit"}

// checkStatement refuses statements that would defeat capture or the base.
func checkStatement(stmt string, inTx bool) error {
	kw := sqlitex.FirstKeyword(stmt)
	switch kw {
	case "BEGIN", "COMMIT", "END":
		return fmt.Errorf("%w: %s: use DB.Tx for transactions", ErrUnsupportedStatement, kw)
	case "ROLLBACK":
		rest := strings.ToUpper(strings.Join(strings.Fields(stmt)[1:], " "))
		if !inTx || !(strings.HasPrefix(rest, "TO") || strings.HasPrefix(rest, "TRANSACTION TO")) {
			return fmt.Errorf("%w: ROLLBACK: use DB.Tx (return an error to roll back)", ErrUnsupportedStatement)
		}
	case "SAVEPOINT", "RELEASE":
		if !inTx {
			return fmt.Errorf("%w: %s outside DB.Tx", ErrUnsupportedStatement, kw)
		}
	case "VACUUM", "ATTACH", "DETACH":
		return fmt.Errorf("%w: %s", ErrUnsupportedStatement, kw)
	case "PRAGMA":
		p := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(stmt[len(kw):], " ")))
		p = strings.TrimPrefix(p, "main.")
		if strings.HasPrefix(p, "wal_checkpoint") {
			return fmt.Errorf("%w: PRAGMA wal_checkpoint: use DB.Checkpoint", ErrUnsupportedStatement)
		}
		for _, d := range deniedPragmas {
			if strings.HasPrefix(p, d) {
				rest := strings.TrimSpace(p[len(d):])
				if rest != "" && rest != ";" { // reading is fine, setting is not
					return fmt.Errorf("%w: PRAGMA %s", ErrUnsupportedStatement, d)
				}
			}
		}
	}
	return nil
}

// CheckRead refuses, in a read on the read pool, every statement of query
// that a write would refuse: on a pooled connection, transaction control,
// ATTACH or a pragma that checkpoints or changes the journal would outlive
// the read or break the synced base.
func CheckRead(query string) error {
	for _, st := range sqlitex.SplitStatements(query) {
		if err := checkStatement(st, false); err != nil {
			return err
		}
	}
	return nil
}

// writeConn is the WriteConn a Tx function gets.
type writeConn struct {
	a   *dbActor
	err error // first capture error: the transaction must not commit
}

// usable reports the error that ends the transaction, if any. SQLite may
// have rolled it back meanwhile (a failed step of a query the function
// read, INSERT OR ROLLBACK ... RETURNING): any later statement would then
// commit on its own, without its capture, so none may run.
func (w *writeConn) usable() error {
	if w.err == nil && w.a.txGone() {
		w.err = captureError{errors.New("the transaction was rolled back by SQLite")}
	}
	return w.err
}

func (w *writeConn) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	res, err := w.a.execStatements(ctx, query, args, true)
	if err != nil && w.err == nil && isCaptureError(err) {
		w.err = err
	}
	return res, err
}

func (w *writeConn) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := w.prepareQuery(ctx, query); err != nil {
		return nil, err
	}
	// A script's statements but the last run as Exec runs them, each
	// captured on its own (flush): in one QueryContext their changes would
	// be taken as one statement's, and the triggers' rows of one decided
	// by another's changes. The rows are the last statement's, as before.
	// The last one runs as split too: flush reads its target from the
	// text, which must not start with an empty statement (";"). Each gets
	// all the arguments, as modernc binds a script's: every statement's
	// parameters by their own name or position in the same list (its
	// statement has no argument count to check, NumInput is -1).
	if stmts := sqlitex.SplitStatements(query); len(stmts) > 0 {
		for _, st := range stmts[:len(stmts)-1] {
			if _, err := w.Exec(ctx, st, args...); err != nil {
				return nil, err
			}
		}
		query = stmts[len(stmts)-1]
		if err := w.usable(); err != nil {
			return nil, err
		}
	}
	var rows *sql.Rows
	// INSERT ... RETURNING makes its changes in the first step, inside
	// QueryContext.
	w.a.cap.startStmt(query)
	err := func() error {
		w.a.cap.assigned = assignedKey(w.a.readInsert(query), args)
		// Deferred, as in execOne: the statement may panic (recovered
		// above, by the Tx function's recovery or the lent writer's do).
		defer func() { w.a.cap.assigned = nil }()
		return w.a.asUser(func() (err error) {
			rows, err = w.a.conn.QueryContext(ctx, query, args...)
			return err
		})
	}()
	if err != nil {
		// What the hook saw of it is recorded only if SQLite kept it.
		if w.a.txGone() {
			w.a.cap.dropRows()
			err = captureError{fmt.Errorf("the transaction was rolled back: %w", err)}
		} else {
			err = w.a.statementFailed(ctx, err, nil)
		}
	}
	if isCaptureError(err) {
		w.err = err
	}
	return rows, err
}

// prepareQuery checks a query (SELECT, or DML with RETURNING) before it
// runs on the writer: the same refusals as Exec, and schema changes only
// through Exec, whose schema diff captures them.
func (w *writeConn) prepareQuery(ctx context.Context, query string) error {
	if err := w.usable(); err != nil {
		return err
	}
	for _, st := range sqlitex.SplitStatements(query) {
		if err := checkStatement(st, true); err != nil {
			return err
		}
		switch kw := sqlitex.FirstKeyword(st); kw {
		case "CREATE", "DROP", "ALTER":
			return fmt.Errorf("%w: %s in a query: run schema changes with Exec", ErrUnsupportedStatement, kw)
		}
	}
	if err := w.a.flush(ctx); err != nil {
		w.err = err
		return err
	}
	return nil
}

// captureError marks errors after which the transaction must not commit
// (the change log would miss a change).
type captureError struct{ error }

func (e captureError) Unwrap() error { return e.error }

func isCaptureError(err error) bool {
	var ce captureError
	return errors.As(err, &ce)
}

// exec runs a script as one transaction.
func (a *dbActor) exec(ctx context.Context, query string, args []any) (sql.Result, error) {
	var res sql.Result
	err := a.inTx(ctx, func() error {
		var err error
		res, err = a.execStatements(ctx, query, args, false)
		return err
	})
	return res, err
}

// tx runs fn as one transaction.
func (a *dbActor) tx(ctx context.Context, fn func(messages.WriteConn) error) error {
	return a.inTx(ctx, func() (err error) {
		w := &writeConn{a: a}
		a.cap.inTxFn = true
		defer func() {
			a.cap.inTxFn = false
			if v := recover(); v != nil {
				err = fmt.Errorf("panic in transaction function: %v", v)
			}
		}()
		if err := fn(w); err != nil {
			return err
		}
		return w.err
	})
}

// inTx wraps fn in BEGIN IMMEDIATE ... COMMIT on the writer, rolling back
// on any error, and runs the after-write duties.
func (a *dbActor) inTx(ctx context.Context, fn func() error) error {
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	a.walFrames = 0
	if _, err := a.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := fn()
	if err == nil {
		err = a.flush(ctx)
	}
	if err == nil {
		failpoint.Hit("write.captured", a.cfg.Path) // the rows and their capture written, not committed
		if _, err = a.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err != nil {
		a.rollback()
		a.endTxn(false)
		return err
	}
	a.endTxn(true)
	a.unsynced = a.unsynced || a.cfg.SyncNormal && !a.forceFull
	failpoint.Hit("write.committed", a.cfg.Path)
	if a.cfg.OnCommit != nil {
		a.cfg.OnCommit()
	}
	return a.afterWrite(ctx)
}

// syncLocal makes the local commits durable before a push sends them:
// under SyncNormal they may not be on disk, and a power loss after the
// server took them would take back changes the server has under this
// client id. The replica would then be refused as a copy (ErrClientCloned),
// and its recovery, a new client id, would send again whatever of them
// survived, over later writes of others. One durable commit's fsync covers
// every frame before it.
func (a *dbActor) syncLocal(ctx context.Context) error {
	if !a.unsynced || mutation.unsyncedPush {
		return nil
	}
	if err := a.checkForeignWrites(); err != nil {
		return err
	}
	if err := a.durableMark(ctx); err != nil {
		return fmt.Errorf("make the local commits durable before a push: %w", err)
	}
	return nil
}

// durableMark makes every local commit durable: under SyncNormal one
// durable commit's fsync covers every frame before it.
func (a *dbActor) durableMark(ctx context.Context) error {
	err := a.durable(ctx, func() error {
		_, err := a.own().ExecContext(ctx, "INSERT OR REPLACE INTO _syncdb_local(key, value) VALUES('synced', ?)", a.now().UnixNano())
		return err
	})
	a.noteWAL()
	if err != nil {
		return err
	}
	a.unsynced = false
	return nil
}

// txGone reports whether SQLite ended the transaction inTx began.
func (a *dbActor) txGone() bool {
	gone := false
	sqlitex.Raw(context.Background(), a.conn, func(c *sqlitex.Conn) error {
		gone = c.Autocommit()
		return nil
	})
	return gone
}

// rollback ends the open transaction, if SQLite has not, and takes the
// WAL's size from the file: a transaction whose pages outgrew the page
// cache spilled frames into the WAL, past its last commit, which stay there
// after the rollback. They are ours, not a foreign write.
func (a *dbActor) rollback() {
	sqlitex.Raw(context.Background(), a.conn, func(c *sqlitex.Conn) error {
		if !c.Autocommit() {
			return c.Exec("ROLLBACK")
		}
		return nil
	})
	a.noteWAL()
}

// afterWrite notes the WAL's new end, records its generation in -info if
// this is its first local commit (recordLocalWAL), and checkpoints when
// it holds more than AutoCheckpointFrames frames not yet copied.
func (a *dbActor) afterWrite(ctx context.Context) error {
	before := a.walPos // inTx checked it is the WAL's end
	a.noteWAL()
	a.recordLocalWAL(ctx, before)
	if n := a.cfg.AutoCheckpointFrames; n > 0 && a.walUncopied() > n {
		if err := a.checkpoint(context.WithoutCancel(ctx), true); err != nil {
			// The write committed; a failed checkpoint is retried later.
			a.cfg.Logger.Warn("automatic checkpoint failed", "err", err)
		}
	}
	return nil
}

// execStatements runs each statement of a script inside the current
// transaction, capturing its changes. It returns the last statement's
// result.
func (a *dbActor) execStatements(ctx context.Context, query string, args []any, inTx bool) (sql.Result, error) {
	stmts := sqlitex.SplitStatements(query)
	if len(stmts) == 0 {
		return nil, errors.New("no SQL statement")
	}
	if len(stmts) > 1 && len(args) > 0 {
		return nil, errors.New("arguments are only supported for a single statement")
	}
	var res sql.Result
	for _, st := range stmts {
		if err := checkStatement(st, inTx); err != nil {
			return nil, err
		}
		var err error
		if res, err = a.execOne(ctx, st, args, true); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// asUser runs fn, which prepares and runs a user's statement, under the
// authorizer's user rules, and turns its refusal into an error that says
// what was refused.
//
// a.user is reset by a deferred call: fn may panic (an argument's Value
// method, a driver panic) and the panic be recovered further up (the Tx
// function's recovery, the lent writer's do), or end the goroutine
// (runtime.Goexit), after which the writer runs syncdb's own statements:
// under the user's rules, the authorizer would refuse their changes to
// syncdb's own tables.
//
// If fn does not return (a panic or a Goexit), it ended inside database/sql
// and modernc, which both left things behind: modernc resets a kept
// statement after its step without a deferred call, and database/sql
// (Go 1.26) releases the connection without one after Stmt.ExecContext
// and a query. The arguments' Value methods are called before (the
// facade's resolveArgs), but a Go SQL function of the user's, called by
// SQLite while the statement steps, can still panic there. The statement
// left stepping is reset here, or no later transaction could commit
// ("SQL statements in progress") and the writer's close would wait for
// it; and the connection is marked connLocked, so that it is closed
// without database/sql's close, which would wait for the lock left held
// (dropConn). The connection stays in use meanwhile: the lock left held
// is a read lock, which nothing but close waits for.
func (a *dbActor) asUser(fn func() error) error {
	a.user, a.denied = true, ""
	returned := false
	defer func() {
		a.user = false
		if !returned && a.conn != nil {
			a.connLocked = true
			sqlitex.Raw(context.Background(), a.conn, func(c *sqlitex.Conn) error {
				c.ResetBusy()
				return nil
			})
		}
	}()
	err := fn()
	returned = true
	if err != nil && a.denied != "" {
		return refusedProtected(a.denied)
	}
	return err
}

// execOne runs one statement and captures what it changed; user marks a
// statement of the user's (see authorize).
func (a *dbActor) execOne(ctx context.Context, stmt string, args []any, user bool) (sql.Result, error) {
	if err := a.flush(ctx); err != nil {
		return nil, captureError{err}
	}
	kw := sqlitex.FirstKeyword(stmt)
	ddl := kw == "CREATE" || kw == "DROP" || kw == "ALTER"
	var before map[string]schemaObject
	if ddl {
		var err error
		if before, err = a.schema(ctx); err != nil {
			return nil, err
		}
	}
	var res sql.Result
	run := func() (err error) {
		if !ddl && cacheable(kw) {
			res, err = a.stmts.Exec(ctx, stmt, args...)
		} else {
			res, err = a.conn.ExecContext(ctx, stmt, args...)
		}
		return err
	}
	var err error
	if user {
		a.cap.startStmt(stmt)
		a.cap.assigned = assignedKey(a.readInsert(stmt), args)
		defer func() { a.cap.assigned = nil }()
		err = a.asUser(run)
		if afterUserStatement != nil {
			err = afterUserStatement(stmt, err)
		}
	} else {
		err = run()
	}
	if err != nil {
		if isCaptureError(err) {
			a.cap.dropRows()
			return nil, err
		}
		// Some errors (an interrupted write, OR ROLLBACK, RAISE(ROLLBACK))
		// roll the whole transaction back: later statements would then run
		// outside it, committing on their own.
		if a.txGone() {
			a.cap.dropRows()
			return nil, captureError{fmt.Errorf("the transaction was rolled back: %w", err)}
		}
		// A replayed change: replayOne rolls back its savepoint. DB.Exec:
		// inTx rolls the whole transaction back.
		if !user || !a.cap.inTxFn {
			a.cap.dropRows()
			return nil, err
		}
		return nil, a.statementFailed(ctx, err, before) // before: nil unless DDL
	}
	if err := a.flush(ctx); err != nil {
		return nil, captureError{err}
	}
	if ddl {
		if err := a.captureDDL(ctx, stmt, kw, before); err != nil {
			if isCaptureError(err) {
				return nil, err
			}
			return nil, captureError{err}
		}
	}
	return res, nil
}
