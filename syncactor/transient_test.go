package syncactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/netactor"
)

// transient tells failures worth another attempt of a workflow by their
// type, never by their text: the network's and the server's 5xx/429 are,
// refusals and cancellations are not.
func TestTransient(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"503", &netactor.HTTPError{Status: 503}, true},
		{"429", &netactor.HTTPError{Status: 429}, true},
		{"400", &netactor.HTTPError{Status: 400}, false},
		{"stream cut", fmt.Errorf("pull-updates stream cut after 3 pages: %w", io.ErrUnexpectedEOF), true},
		{"body ended", fmt.Errorf("read response: %w", io.EOF), true},
		{"connection reset", fmt.Errorf("pipeline: %w", reset), true},
		{"broken pipe", fmt.Errorf("send: %w", syscall.EPIPE), true},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"unreachable", fmt.Errorf("push: %w", netactor.ErrUnreachable), true},
		{"out of order", errOutOfOrder, true},
		{"rejected push", fmt.Errorf("%w: %w", ErrPushRejected, io.EOF), false},
		{"external modification", dbactor.ErrExternalModification, false},
		{"canceled", fmt.Errorf("pull: %w", context.Canceled), false},
		{"EOF only in the text", errors.New(`the server refused "SELECT 'EOF'": connection reset is not a column`), false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("%s: transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
