package shimvfs

import (
	"database/sql"
	"testing"
)

// BenchmarkPointLookup compares rowid lookups on a complete database through
// plain unix and through the shim (attached, nothing missing, so every read
// asks Missing). With cache_size(10) nearly every lookup reads from the file.
//
//	go test -run x -bench PointLookup -count 5 ./internal/shimvfs/
func BenchmarkPointLookup(b *testing.B) {
	for _, cache := range []string{"default", "cache10"} {
		for _, via := range []string{"unix", "shim"} {
			b.Run(cache+"/"+via, func(b *testing.B) {
				path := copyFile(b, source(b), b.TempDir(), false)
				params := "_pragma=journal_mode(WAL)"
				if cache == "cache10" {
					params += "&_pragma=cache_size(10)"
				}
				if via == "shim" {
					detach, err := Attach(path, newTestPages(b, path, 1, false))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(detach)
				}
				db := openDB(b, path, via == "shim", params)
				db.SetMaxOpenConns(1)
				st, err := db.Prepare(`SELECT k, v FROM t WHERE id = ?`)
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				lookup := func(i int) {
					var k string
					var v int
					if err := st.QueryRow(1+i*7919%nRows).Scan(&k, &v); err != nil && err != sql.ErrNoRows {
						b.Fatal(err)
					}
				}
				for i := range nRows { // warm the OS and page caches
					lookup(i)
				}
				b.ResetTimer()
				for i := range b.N {
					lookup(i)
				}
			})
		}
	}
}
