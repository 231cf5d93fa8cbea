package dbactor

import (
	"errors"
	"strings"
	"testing"
)

// A pull that recovery abandoned after T1's write reported success says
// so, not "%!w(<nil>)"; a failed write keeps its error.
func TestAbandonedPullError(t *testing.T) {
	err := abandonedPull(nil)
	if strings.Contains(err.Error(), "%!") || !errors.Is(err, errT1NotInWAL) {
		t.Errorf("abandonedPull(nil) = %q, want errT1NotInWAL", err)
	}
	werr := errors.New("disk full")
	if err := abandonedPull(werr); !errors.Is(err, werr) || errors.Is(err, errT1NotInWAL) {
		t.Errorf("abandonedPull(%v) = %q", werr, err)
	}
}
