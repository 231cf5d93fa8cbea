package server

import (
	"database/sql/driver"
	"fmt"
	"math/rand/v2"
	"sync"

	"modernc.org/sqlite"
)

// fast_randomblob(n) is randomblob(n) made in Go: the tests that fill
// megabytes of incompressible pages spent half their CPU in SQLite's own
// randomblob under -race (its transpiled ChaCha20, instrumented byte by
// byte). Registered before any connection opens, for every connection of
// the test binary (the servers' included); not deterministic, so each row
// gets its own bytes.
func init() {
	var mu sync.Mutex
	src := rand.NewChaCha8([32]byte{'s', 'y', 'n', 'c', 'd', 'b'})
	sqlite.MustRegisterScalarFunction("fast_randomblob", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		n, ok := args[0].(int64)
		if !ok || n < 1 || n > 1<<20 {
			return nil, fmt.Errorf("fast_randomblob(%v): want 1 to 1 MiB", args[0])
		}
		b := make([]byte, n)
		mu.Lock()
		defer mu.Unlock()
		src.Read(b)
		return b, nil
	})
}
