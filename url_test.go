package syncdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncdb/syncdb"
)

func savedURL(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path + "-info")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Saved struct {
			URL string `json:"remote_url"`
		} `json:"saved_configuration"`
	}
	json.Unmarshal(b, &m)
	return m.Saved.URL
}

// Case 7: a replica belongs to one remote database. A different URL is
// checked against the server's identity of the database before anything
// is saved: another database is a clear error naming both, and the replica
// keeps its URL; the same database under another URL is fine.
func TestReplicaBelongsToOneDatabase(t *testing.T) {
	ctx := context.Background()
	url := newServer(t)
	otherServer := newServer(t)
	path := filepath.Join(t.TempDir(), "a.db")
	a := open(t, syncdb.Config{Path: path, URL: url + "/db/one"})
	mustExec(t, a, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close()

	for name, wrong := range map[string]string{
		"another database": url + "/db/two",
		"another server":   otherServer + "/db/one",
		"the default one":  url,
		"nothing listens":  deadURL(t),
		"nothing resolves": "http://no-such-host.invalid",
	} {
		start := time.Now()
		_, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: wrong, MaxRetryTime: time.Second})
		if err == nil {
			t.Fatalf("%s: opened", name)
		}
		if strings.HasPrefix(name, "nothing") {
			if !errors.Is(err, syncdb.ErrUnreachable) {
				t.Errorf("%s: %v", name, err)
			}
		} else if !errors.Is(err, syncdb.ErrWrongDatabase) || !strings.Contains(err.Error(), url+"/db/one") || !strings.Contains(err.Error(), "nothing was saved") {
			t.Errorf("%s: %v", name, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s took %v", name, time.Since(start))
		}
		if got := savedURL(t, path); got != url+"/db/one" {
			t.Fatalf("after %s the replica's URL is %q", name, got)
		}
	}
	// The same database under another spelling of the URL is accepted.
	same := strings.Replace(url, "127.0.0.1", "localhost", 1) + "/db/one/"
	b := open(t, syncdb.Config{Path: path, URL: same})
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got := savedURL(t, path); got != same {
		t.Fatalf("saved URL %q, want %q", got, same)
	}

	// A replica that predates the server's names: its revision and page 1
	// decide.
	info, _ := os.ReadFile(path + "-info")
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(info)))
	dec.UseNumber()
	dec.Decode(&m)
	delete(m["syncdb"].(map[string]any), "database")
	info, _ = json.Marshal(m)
	os.WriteFile(path+"-info", info, 0o644)
	if _, err := syncdb.Open(ctx, syncdb.Config{Path: path, URL: url + "/db/two"}); !errors.Is(err, syncdb.ErrWrongDatabase) {
		t.Errorf("an unnamed replica, another database: %v", err)
	}
	c := open(t, syncdb.Config{Path: path, URL: url + "/db/one"})
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}
