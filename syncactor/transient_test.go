package syncactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/netactor"
)

// The workflows' own errors under the one rule (netactor.IsTransient,
// whose table is netactor's TestIsTransient): what a retry re-reads its way
// out of is transient, a refusal is not, whatever it wraps.
func TestWorkflowErrorsTransient(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"out of order", errOutOfOrder, true},
		{"out of order, wrapped", fmt.Errorf("take the new client id: %w", errOutOfOrder), true},
		{"batch interrupted", fmt.Errorf("%w at step 3 of 9 (SQLITE_INTERRUPT: interrupted)", errBatchInterrupted), true},
		{"rejected push", fmt.Errorf("%w: %w", ErrPushRejected, io.EOF), false},
		{"push conflict", &pushConflict{msg: "UNIQUE constraint failed: t.v"}, false},
		{"wrong database", fmt.Errorf("%w: this replica came from X", ErrWrongDatabase), false},
		{"rebootstrap", fmt.Errorf("%w: %w", ErrRebootstrap, netactor.ErrRevisionGone), false},
		{"external modification with a read cut short", fmt.Errorf("%w: WAL frame 3: %w", dbactor.ErrExternalModification, io.ErrUnexpectedEOF), false},
		{"client cloned", dbactor.ErrClientCloned, false},
		{"conflict", dbactor.ErrConflict, false},
		{"canceled while out of order", errors.Join(errOutOfOrder, context.Canceled), false},
	} {
		if got := netactor.IsTransient(c.err); got != c.want {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
