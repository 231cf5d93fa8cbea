package history_test

import (
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/server/history/historytest"
)

func TestConformance(t *testing.T) {
	open := func(t *testing.T, path string) history.Backend {
		s, err := history.Open(path, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	historytest.Run(t, historytest.Backends{
		New: func(t *testing.T) history.Backend { return open(t, filepath.Join(t.TempDir(), "h.sqlite")) },
		Reopen: func(t *testing.T, b history.Backend) history.Backend {
			s := b.(*history.Store)
			path := s.Path()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, path)
		},
	})
}

// The SQLite history keeps the WAL cursor of the served database.
func TestCursorSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.sqlite")
	s, err := history.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(t.Context(), "c", historytest.Commit(1, map[uint32]int{1: 1}), history.Cursor{Frame: 1}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), history.Fence{}, []history.Commit{historytest.Commit(1, map[uint32]int{1: 3})}, history.Cursor{Salt1: 9, Frame: 7}, 2); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = history.Open(path, ""); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c := s.Cursor(); c.Frame != 7 || c.Salt1 != 9 {
		t.Fatalf("cursor after reopen: %+v", c)
	}
}
