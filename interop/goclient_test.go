package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncdb/syncdb"
)

// jsPeer runs one step of peer/js_peer.mjs and decodes its JSON output.
func jsPeer(t *testing.T, srv *syncServer, clientDir, step string) map[string]any {
	t.Helper()
	var res map[string]any
	runPeer(t, srv, clientDir, &res, "js_peer.mjs", step)
	return res
}

// runPeer runs `node peer/SCRIPT ARGS...` against srv with the clients'
// files in clientDir and decodes its JSON output into out.
func runPeer(t *testing.T, srv *syncServer, clientDir string, out any, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(interopDir, "peer", script)}, args...)...)
	cmd.Dir = interopDir
	cmd.Env = append(os.Environ(), "SYNCDB_URL="+srv.URL, "SYNCDB_CLIENT_DIR="+clientDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("peer %s %v: %v\n%s\n%s", script, args, err, stdout, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("peer %s %v: output %q: %v", script, args, stdout, err)
	}
}

// Our Go client and @tursodatabase/sync 0.7.2 share one database on
// syncdb serve: values, deletes, schema changes, last push wins and
// rebasing flow both ways.
func TestGoAndJSShareADatabase(t *testing.T) {
	srv := startServer(t, t.TempDir())
	clientDir := t.TempDir()
	ctx := context.Background()
	goDB, err := syncdb.Open(ctx, syncdb.Config{Path: filepath.Join(clientDir, "go.db"), URL: srv.URL, ClientName: "go"})
	if err != nil {
		t.Fatal(err)
	}
	defer goDB.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := goDB.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// Go writes every kind of value; JS bootstraps and reads them exactly.
	blob := make([]byte, 300<<10)
	for i := range blob {
		blob[i] = byte(i * 13)
	}
	exec("CREATE TABLE vals(id INTEGER PRIMARY KEY, v)")
	goVals := []any{int64(math.MinInt64), int64(math.MaxInt64), 0.1, 1e308, -1.5, 2.0, "héllo 🌍 世界", "", []byte{}, blob, nil, int64(9007199254740993)}
	for i, v := range goVals {
		exec("INSERT INTO vals VALUES(?, ?)", i+1, v)
	}
	if err := goDB.Push(ctx); err != nil {
		t.Fatal(err)
	}
	got := jsPeer(t, srv, clientDir, "read-go-values")["rows"].([]any)
	want := []string{
		`{"id":1,"t":"integer","v":"-9223372036854775808"}`, `{"id":2,"t":"integer","v":"9223372036854775807"}`,
		`{"id":3,"t":"real","v":0.1}`, `{"id":4,"t":"real","v":1e+308}`, `{"id":5,"t":"real","v":-1.5}`,
		`{"id":6,"t":"real","v":2}`, `{"id":7,"t":"text","v":"héllo 🌍 世界"}`, `{"id":8,"t":"text","v":""}`,
		`{"id":9,"t":"blob","v":{"blob":"","len":0}}`,
		fmt.Sprintf(`{"id":10,"t":"blob","v":{"blob":"%x","len":307200}}`, blob[:32]),
		`{"id":11,"t":"null","v":null}`, `{"id":12,"t":"integer","v":"9007199254740993"}`,
	}
	for i, r := range got {
		b, _ := json.Marshal(r)
		if i >= len(want) || string(b) != want[i] {
			t.Errorf("JS read row %d as %s, want %s", i, b, want[min(i, len(want)-1)])
		}
	}

	// JS writes values, a delete and an update; Go pulls them exactly.
	jsPeer(t, srv, clientDir, "write-js-values")
	if changed, err := goDB.Pull(ctx); err != nil || !changed {
		t.Fatalf("go pull: %v %v", changed, err)
	}
	check := func(q string, want any) {
		t.Helper()
		var typ string
		var v any
		if err := goDB.QueryRow(ctx, q).Scan(&typ, &v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if b, ok := v.([]byte); ok {
			v = fmt.Sprintf("blob:%d", len(b))
		}
		if s := typ + " " + fmt.Sprint(v); s != want {
			t.Errorf("%s: %s, want %s", q, s, want)
		}
	}
	check("SELECT typeof(v), v FROM vals WHERE id = 101", "integer 9223372036854775807")
	check("SELECT typeof(v), v FROM vals WHERE id = 102", "integer -9223372036854775808")
	check("SELECT typeof(v), v FROM vals WHERE id = 103", "real 2.5")
	check("SELECT typeof(v), v FROM vals WHERE id = 104", "text ünï 🌍 ç")
	check("SELECT typeof(v), v FROM vals WHERE id = 105", "null <nil>")
	check("SELECT typeof(v), v FROM vals WHERE id = 106", "blob blob:307200")
	check("SELECT typeof(v), v FROM vals WHERE id = 107", "blob blob:0")
	check("SELECT typeof(v), v FROM vals WHERE id = 108", "text ")
	check("SELECT typeof(v), v FROM vals WHERE id = 109", "real 1e+308")
	check("SELECT typeof(v), v FROM vals WHERE id = 2", "text changed by js")
	check("SELECT typeof(count(*)), count(*) FROM vals WHERE id = 1", "integer 0")

	// Last push wins on one row: Go pushes first, JS second.
	exec("UPDATE vals SET v = 'go loses' WHERE id = 3")
	jsPeer(t, srv, clientDir, "lww-write")
	if err := goDB.Push(ctx); err != nil {
		t.Fatal(err)
	}
	jsPeer(t, srv, clientDir, "push")
	jsPeer(t, srv, clientDir, "pull")
	if _, err := goDB.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	check("SELECT typeof(v), v FROM vals WHERE id = 3", "text js wins")

	// Schema changes from JS reach Go; Go writes to the new column.
	jsPeer(t, srv, clientDir, "schema")
	if _, err := goDB.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	check("SELECT typeof(note), note FROM vals WHERE id = 3", "text from js")
	exec("UPDATE vals SET note = 'from go' WHERE id = 4")
	// And Go's schema changes reach JS.
	exec("CREATE TABLE go_table(id INTEGER PRIMARY KEY, x TEXT)")
	exec("CREATE INDEX go_index ON go_table(x)")
	exec("INSERT INTO go_table VALUES(1, 'x')")

	// A local Go change rebased over JS's push.
	jsPeer(t, srv, clientDir, "rebase-push")
	if _, err := goDB.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	check("SELECT typeof(note), note FROM vals WHERE id = 4", "text from go")
	check("SELECT typeof(v), v FROM vals WHERE id = 200", "text js pushed while go had a local change")
	if err := goDB.Push(ctx); err != nil {
		t.Fatal(err)
	}
	jsPeer(t, srv, clientDir, "pull")
	dump := jsPeer(t, srv, clientDir, "dump")
	schema, _ := json.Marshal(dump["schema"])
	if string(schema) != `["index:go_index","table:go_table","table:vals","index:vals_note"]` {
		t.Errorf("JS schema: %s", schema)
	}
	var jsRows []string
	for _, r := range dump["rows"].([]any) {
		m := r.(map[string]any)
		jsRows = append(jsRows, fmt.Sprintf("%v|%v", m["id"], m["note"]))
	}
	if s := strings.Join(jsRows, ","); !strings.Contains(s, "3|from js") || !strings.Contains(s, "4|from go") || !strings.Contains(s, "200|<nil>") {
		t.Errorf("JS rows: %s", s)
	}
	var n int
	if err := goDB.QueryRow(ctx, "SELECT count(*) FROM vals").Scan(&n); err != nil || n != len(dump["rows"].([]any)) {
		t.Errorf("Go has %d rows, JS %d", n, len(dump["rows"].([]any)))
	}
}
