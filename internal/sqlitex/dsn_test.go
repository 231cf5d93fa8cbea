package sqlitex

import "testing"

// The DSNs syncdb opens are the strings it built by hand before DSN (the
// same parameters, in the same order).
func TestDSN(t *testing.T) {
	for _, c := range []struct {
		d    DSN
		want string
	}{
		{DSN{Path: "/d/a.db"}, "file:/d/a.db"},
		{DSN{Path: "/d/a.db", Pragmas: []string{"busy_timeout(10000)", "synchronous(FULL)", "wal_autocheckpoint(0)", "foreign_keys(0)"}},
			"file:/d/a.db?_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_pragma=foreign_keys(0)"},
		{DSN{Path: "/d/a.db", VFS: "rec1", Pragmas: []string{"query_only(1)", "busy_timeout(10000)"}},
			"file:/d/a.db?_pragma=query_only(1)&_pragma=busy_timeout(10000)&vfs=rec1"},
		{DSN{Path: "/s/main.db", Mode: "ro", Pragmas: []string{"query_only(1)", "busy_timeout(10000)", "mmap_size(1073741824)"}},
			"file:/s/main.db?mode=ro&_pragma=query_only(1)&_pragma=busy_timeout(10000)&_pragma=mmap_size(1073741824)"},
		{DSN{Path: "img", Mode: "ro", VFS: "q7"}, "file:img?mode=ro&vfs=q7"},
	} {
		if got := c.d.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}
