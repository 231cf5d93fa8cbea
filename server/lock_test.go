package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// One server per data directory: a second New on it fails with
// ErrDataDirInUse naming the process that holds it, and succeeds once the
// first one closed.
func TestDataDirIsLocked(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), MaintenanceInterval: -1}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg)
	if err == nil {
		b.Close()
	}
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("a second server on the data directory: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
