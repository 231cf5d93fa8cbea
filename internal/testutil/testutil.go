// Package testutil holds the helpers syncdb's tests share: running SQL that
// must succeed, waiting for a condition, and a buffer several goroutines
// write (a child process's stderr, a logger). Helpers tied to one package's
// types (a *syncdb.DB, sqlitex's Conn, a server started in-process by the
// server package's own tests) stay in that package: importing them here
// would make an import cycle or hide what they wrap.
package testutil

import (
	"bytes"
	"database/sql"
	"sync"
	"testing"
	"time"
)

// Execer is what MustExec runs SQL on: a *sql.DB or a *sql.Tx.
type Execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

// MustExec runs query with args on db and fails the test if it fails.
func MustExec(tb testing.TB, db Execer, query string, args ...any) {
	tb.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}

// Eventually polls cond every 20 ms until it holds, and fails the test if
// it does not within bound.
func Eventually(tb testing.TB, bound time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s (%v)", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LockedBuffer is a bytes.Buffer that several goroutines may write and read.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
