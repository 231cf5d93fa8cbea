package syncdb

import (
	"github.com/syncdb/syncdb/internal/layout"

	"os"
	"path/filepath"
	"testing"
)

// A replacement interrupted at any rename finishes at the next Open
// (finishSwap), and finishing twice changes nothing.
func TestFinishSwapAfterACrash(t *testing.T) {
	for crashAfter := 0; crashAfter <= 5; crashAfter++ {
		dir := t.TempDir()
		path := filepath.Join(dir, "a.db")
		fresh := filepath.Join(dir, "a.db.recover", "a.db")
		backup := filepath.Join(dir, "a.db.before-recover-x")
		os.Mkdir(filepath.Dir(fresh), 0o755)
		for _, s := range []string{"", "-wal", "-info", "-revert"} {
			os.WriteFile(path+s, []byte("old"+s), 0o644)
			os.WriteFile(fresh+s, []byte("new"+s), 0o644)
		}
		if err := os.WriteFile(layout.For(path).Recovering, []byte(`{"fresh":"`+fresh+`","backup":"`+backup+`","files":["","-wal","-revert"]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		// The renames finishSwap makes, in its order, up to the crash.
		os.MkdirAll(backup, 0o755)
		steps := [][2]string{{path + "-info", backup + "/a.db-info"}, {path, backup + "/a.db"}, {fresh, path},
			{path + "-wal", backup + "/a.db-wal"}, {fresh + "-wal", path + "-wal"}}
		for _, s := range steps[:crashAfter] {
			os.Rename(s[0], s[1])
		}
		for i := 0; i < 2; i++ {
			if err := finishSwap(path); err != nil {
				t.Fatalf("crash after %d renames: %v", crashAfter, err)
			}
		}
		for _, s := range []string{"", "-wal", "-info", "-revert"} {
			if b, _ := os.ReadFile(path + s); string(b) != "new"+s {
				t.Errorf("crash after %d: %s holds %q", crashAfter, path+s, b)
			}
			if b, _ := os.ReadFile(filepath.Join(backup, "a.db"+s)); string(b) != "old"+s {
				t.Errorf("crash after %d: the backup of %s holds %q", crashAfter, s, b)
			}
		}
		if _, err := os.Stat(layout.For(path).Recovering); err == nil {
			t.Errorf("crash after %d: the marker is left", crashAfter)
		}
	}
}
