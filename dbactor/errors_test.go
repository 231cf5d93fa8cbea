package dbactor

import (
	"errors"
	"io"
	"testing"
)

// TestExternalModificationKeepsItsCause: the error a detached replica
// returns is ErrExternalModification and still its cause (a short read of
// the WAL stays io.ErrUnexpectedEOF to errors.Is).
func TestExternalModificationKeepsItsCause(t *testing.T) {
	err := externalModification("the WAL cannot be read: %w", io.ErrUnexpectedEOF)
	if !errors.Is(err, ErrExternalModification) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v: want both ErrExternalModification and io.ErrUnexpectedEOF", err)
	}
	const want = "the database files were modified outside syncdb: the WAL cannot be read: unexpected EOF"
	if err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if err := externalModification("has %d, needs %d", 1, 2); err.Error() != ErrExternalModification.Error()+": has 1, needs 2" {
		t.Fatalf("message %q", err)
	}
}
