package syncdb_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/metaactor"
)

// The stamp a bootstrap records is the database file's: its content hash,
// which the bootstrap takes from the pages as it writes them instead of
// reading the file back, is what hashing the file gives, raw or zstd, in
// one request or in chunks.
func TestBootstrapStamp(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	// Written on the server: a push of 3000 rows would take most of the
	// test's time under -race.
	serverExec(t, url, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	serverExec(t, url, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000) INSERT INTO t SELECT i, hex(randomblob(200)) FROM n")
	for _, c := range []struct {
		name string
		cfg  syncdb.Config
	}{
		{"raw", syncdb.Config{}},
		{"zstd", syncdb.Config{ZstdPages: true}},
		{"chunked", syncdb.Config{BootstrapChunkBytes: 64 << 10}},
	} {
		path := filepath.Join(dir, c.name+".db")
		c.cfg.Path, c.cfg.URL = path, url
		b := open(t, c.cfg)
		integrity(t, b)
		meta, err := metaactor.Load(fsx.OS, path+"-info")
		if err != nil {
			t.Fatal(err)
		}
		stamp := meta.SyncDB.DBFile
		if stamp == nil || stamp.Hash == 0 {
			t.Fatalf("%s: stamp %+v", c.name, stamp)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		hash, err := dbactor.ContentHash(path)
		if err != nil {
			t.Fatal(err)
		}
		if stamp.Size != st.Size() || stamp.MtimeNS != st.ModTime().UnixNano() || stamp.Hash != hash {
			t.Fatalf("%s: stamp %+v, the file: size %d, time %d, hash %x", c.name, stamp, st.Size(), st.ModTime().UnixNano(), hash)
		}
		if st.Size() < 1<<20 {
			t.Fatalf("%s: a %d-byte database, want one of more than a run", c.name, st.Size())
		}
	}
}
