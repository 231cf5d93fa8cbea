package layout

import (
	"testing"
	"time"
)

// TestNamesOnDisk pins the names older releases wrote: a replica's files
// are found by name, so a changed string here orphans users' files (a
// pending pull's journal, the revert store, the metadata). Do not update
// this test to match a new name; keep the old one.
func TestNamesOnDisk(t *testing.T) {
	f := For("/d/app.db")
	for _, c := range []struct{ got, want string }{
		{f.DB, "/d/app.db"},
		{f.WAL, "/d/app.db-wal"},
		{f.SHM, "/d/app.db-shm"},
		{f.Info, "/d/app.db-info"},
		{f.InfoTmp, "/d/app.db-info.tmp"},
		{f.Lock, "/d/app.db-lock"},
		{f.Bootstrap, "/d/app.db-bootstrap"},
		{f.Changes, "/d/app.db-changes"},
		{f.Revert, "/d/app.db-revert"},
		{f.RevertNext, "/d/app.db-revert.next"},
		{f.Replay, "/d/app.db-syncdb-replay"},
		{f.ReplayTmp, "/d/app.db-syncdb-replay.tmp"},
		{f.Present, "/d/app.db-present"},
		{f.PresentTmp, "/d/app.db-present.tmp"},
		{f.Recovering, "/d/app.db-recovering"},
		{f.RecoverDir, "/d/app.db.recover"},
		{f.RecoverLocal(), "/d/app.db.recover/local-changes"},
		{f.RecoverFresh(), "/d/app.db.recover/app.db"},
		{f.BeforeRecover(time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))), "/d/app.db.before-recover-20260102-020405"},
		{f.BeforeRecoverGlob(), "/d/app.db.before-recover-*"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// TestCompanions pins the list a failed first Open removes and recovery
// moves: every file but DB, the marker and the directories.
func TestCompanions(t *testing.T) {
	want := []string{"-wal", "-shm", "-info", "-info.tmp", "-lock", "-bootstrap", "-changes", "-revert", "-revert.next",
		"-syncdb-replay", "-syncdb-replay.tmp", "-present", "-present.tmp"}
	got := For("p").Companions()
	if len(got) != len(want) {
		t.Fatalf("Companions() = %q, want p+%q", got, want)
	}
	for i := range want {
		if got[i] != "p"+want[i] {
			t.Errorf("Companions()[%d] = %q, want %q", i, got[i], "p"+want[i])
		}
	}
}

func TestDBOfInfo(t *testing.T) {
	for _, c := range []struct {
		in, db string
		ok     bool
	}{{"/d/app.db-info", "/d/app.db", true}, {"-info", "", false}, {"/d/app.db-info.tmp", "", false}, {"x", "", false}} {
		if db, ok := DBOfInfo(c.in); db != c.db || ok != c.ok {
			t.Errorf("DBOfInfo(%q) = %q, %v; want %q, %v", c.in, db, ok, c.db, c.ok)
		}
	}
}
