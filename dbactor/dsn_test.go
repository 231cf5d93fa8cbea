package dbactor

import "testing"

// WriterDSN and ReaderDSN are the strings they were before sqlitex.DSN.
func TestDSNs(t *testing.T) {
	const w = "file:/d/a.db?_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_pragma=foreign_keys(0)"
	const r = "file:/d/a.db?_pragma=query_only(1)&_pragma=busy_timeout(10000)"
	if got := WriterDSN("/d/a.db", ""); got != w {
		t.Errorf("WriterDSN: %q", got)
	}
	if got := WriterDSN("/d/a.db", "v"); got != w+"&vfs=v" {
		t.Errorf("WriterDSN with a VFS: %q", got)
	}
	if got := ReaderDSN("/d/a.db", ""); got != r {
		t.Errorf("ReaderDSN: %q", got)
	}
	if got := ReaderDSN("/d/a.db", "v"); got != r+"&vfs=v" {
		t.Errorf("ReaderDSN with a VFS: %q", got)
	}
}
