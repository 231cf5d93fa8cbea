package metaactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newSys(t *testing.T) *actors.System {
	t.Helper()
	return actors.NewSystem(actors.Options{Name: "test", OnPanic: func(p *actors.PanicError) {
		t.Errorf("actor panicked: %v", p)
	}})
}

func get(t *testing.T, h Handle) *messages.Meta {
	t.Helper()
	m, err := h.Get(context.Background())
	if err != nil {
		t.Fatalf("GetMeta: %v", err)
	}
	return m
}

func update(ctx context.Context, h Handle, fn func(*messages.Meta) error) (*messages.Meta, error) {
	return h.Update(ctx, fn)
}

// setTo is an update function that replaces the metadata with want.
func setTo(want *messages.Meta) func(*messages.Meta) error {
	return func(m *messages.Meta) error {
		*m = *clone(want)
		return nil
	}
}

// sampleMeta is valid metadata with every field set, varying with n.
func sampleMeta(n int) *messages.Meta {
	url := fmt.Sprintf("http://127.0.0.1:%d/db/x?a=1&b=<2>", 8000+n)
	prefetch := n%2 == 0
	seg := 128 << 10
	pulled, pushed := int64(1_700_000_000+n), int64(1_700_000_100+n)
	m := &messages.Meta{
		Version:                        messages.MetaVersion,
		ClientUniqueID:                 fmt.Sprintf("syncdb-go-%d", n),
		SyncedRevision:                 &messages.Revision{Type: "v1", Revision: fmt.Sprintf("rev-%d", n)},
		LastPullUnixTime:               &pulled,
		LastPushUnixTime:               &pushed,
		LastPushedPullGenHint:          int64(n),
		LastPushedChangeIDHint:         int64(10 * n),
		PartialBootstrapServerRevision: &messages.Revision{Type: "v1", Revision: fmt.Sprintf("boot-%d", n)},
		SavedConfiguration: &messages.SavedConfig{
			RemoteURL: &url, PartialSyncPrefetch: &prefetch, PartialSyncSegmentSize: &seg,
		},
		SyncDB: messages.SyncDBState{
			Base: messages.Base{
				DBSize:    uint32(3 + n),
				WAL:       walfile.Position{Salt1: 11, Salt2: uint32(22 + n), Frame: 5 + n, Cksum1: 7, Cksum2: 8},
				RevertLen: int64(4096 * n),
			},
			Pull: &messages.PendingPull{
				Revision: fmt.Sprintf("rev-%d", n+1), DBSize: uint32(4 + n),
				Before:        walfile.Position{Salt1: 11, Salt2: uint32(22 + n), Frame: 9 + n, Cksum1: 1, Cksum2: 2},
				NextRevertLen: int64(8192 * n),
			},
			Checkpointing: n%2 == 1,
			DBFile:        &messages.FileStamp{Size: int64(4096 * (3 + n)), MtimeNS: -5},
			CleanClose:    &walfile.Position{Salt1: 11, Salt2: uint32(22 + n), Frame: 12 + n},
			Partial:       &messages.PartialState{DBSize: uint32(n), SegmentSize: 4096 * n},
		},
	}
	m.RevertSinceWALSalt, m.RevertSinceWALWatermark = walFields(m.SyncDB.Base.WAL)
	return m
}

// TestRoundTrip updates through the actor, reads back, and reopens.
func TestRoundTrip(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db-info")
	ctx := context.Background()

	sys := newSys(t)
	pid, err := Spawn(sys, fsx.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if m := get(t, pid); m != nil {
		t.Fatalf("no file yet, GetMeta = %+v", m)
	}

	// The first update starts from a zero Meta with the version set.
	want := sampleMeta(1)
	reply, err := update(ctx, pid, func(m *messages.Meta) error {
		if !reflect.DeepEqual(m, &messages.Meta{Version: messages.MetaVersion}) {
			t.Errorf("first update starts from %+v", m)
		}
		*m = *clone(want)
		m.RevertSinceWALWatermark = 999 // overwritten from Base.WAL
		m.RevertSinceWALSalt = nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(reply, want) {
		t.Fatalf("reply %+v, want %+v", reply, want)
	}
	if got := get(t, pid); !reflect.DeepEqual(got, want) {
		t.Fatalf("GetMeta %+v, want %+v", got, want)
	}

	// A second update sees the first's result.
	want.LastPushedChangeIDHint = 77
	want.SyncDB.Base.WAL = walfile.Position{Salt1: 1, Salt2: 2, Frame: 3}
	want.RevertSinceWALSalt, want.RevertSinceWALWatermark = &[2]uint32{1, 2}, 3
	if _, err := update(ctx, pid, func(m *messages.Meta) error {
		if m.ClientUniqueID != "syncdb-go-1" {
			t.Errorf("second update starts from %+v", m)
		}
		m.LastPushedChangeIDHint = 77
		m.SyncDB.Base.WAL = walfile.Position{Salt1: 1, Salt2: 2, Frame: 3}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sys.Stop()

	// Nothing but the file is left.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}

	// Reopen.
	sys2 := newSys(t)
	pid2, err := Spawn(sys2, fsx.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, pid2); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen %+v, want %+v", got, want)
	}
	sys2.Stop()
	if got, err := Load(fsx.OS, path); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Load: %+v, %v", got, err)
	}
}

// TestDeepCopies: what callers get, and what Fn keeps, is theirs.
func TestDeepCopies(t *testing.T) {
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, newCrashFS(crashDir), crashPath)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleMeta(3)
	var kept *messages.Meta
	reply, err := update(context.Background(), pid, func(m *messages.Meta) error {
		*m = *clone(want)
		kept = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := get(t, pid)
	for _, m := range []*messages.Meta{reply, got, kept} {
		m.ClientUniqueID = "changed"
		m.SyncedRevision.Revision = "changed"
		m.RevertSinceWALSalt[0] = 12345
		*m.LastPullUnixTime = 1
		*m.SavedConfiguration.RemoteURL = "changed"
		*m.SavedConfiguration.PartialSyncSegmentSize = 1
		m.SyncDB.Pull.Revision = "changed"
		m.SyncDB.CleanClose.Frame = 1000
		m.SyncDB.Partial.DBSize = 1000
	}
	if got := get(t, pid); !reflect.DeepEqual(got, want) {
		t.Fatalf("the actor's state changed through a copy: %+v", got)
	}
}

// fill sets every field reachable from v to a non-zero value.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i), n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range v.Len() {
			fill(v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k := reflect.New(v.Type().Key()).Elem()
		fill(k, n)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

// shared reports a pointer, slice or map reachable from both a and b.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return path
		}
	}
	switch a.Kind() {
	case reflect.Pointer:
		if !a.IsNil() {
			return shared(a.Elem(), b.Elem(), path)
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if s := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); s != "" {
				return s
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range a.Len() {
			if s := shared(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); s != "" {
				return s
			}
		}
	case reflect.Map:
		for _, k := range a.MapKeys() {
			if s := shared(a.MapIndex(k), b.MapIndex(k), fmt.Sprintf("%s[%v]", path, k)); s != "" {
				return s
			}
		}
	}
	return ""
}

// TestEveryFieldIsCopiedAndStored fills every field of Meta (including
// fields added after this test was written) and checks that clone copies
// it deeply and that the file stores it.
func TestEveryFieldIsCopiedAndStored(t *testing.T) {
	m := &messages.Meta{}
	n := 0
	fill(reflect.ValueOf(m).Elem(), &n)
	c := clone(m)
	if !reflect.DeepEqual(c, m) {
		t.Fatalf("clone differs:\n%+v\n%+v", c, m)
	}
	if s := shared(reflect.ValueOf(c), reflect.ValueOf(m), "Meta"); s != "" {
		t.Fatalf("clone shares %s", s)
	}

	// Make it valid, then store and load it.
	m.Version = messages.MetaVersion
	m.SyncedRevision.Type = "v1"
	m.PartialBootstrapServerRevision.Type = "v1"
	data, err := encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(data, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("stored and loaded:\n%+v\nwant\n%+v\nfile:\n%s", got, m, data)
	}
}

// TestFileFormat: indented, struct field order, trailing newline, readable
// URLs.
func TestFileFormat(t *testing.T) {
	data, err := encode(sampleMeta(1))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if !strings.HasPrefix(s, "{\n  \"version\": \"v1\",\n  \"client_unique_id\": \"syncdb-go-1\",\n") {
		t.Fatalf("not indented as expected:\n%s", s)
	}
	if !strings.HasSuffix(s, "\n}\n") {
		t.Fatalf("no trailing newline:\n%q", s)
	}
	if !strings.Contains(s, `"remote_url": "http://127.0.0.1:8001/db/x?a=1&b=<2>"`) {
		t.Fatalf("URL escaped:\n%s", s)
	}
	// Top-level keys in Meta's field order.
	dec := json.NewDecoder(bytes.NewReader(data))
	var keys []string
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	rt := reflect.TypeFor[messages.Meta]()
	for i := range rt.NumField() {
		want = append(want, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
	}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("key order %q, want %q", keys, want)
	}
	// Encoding is deterministic.
	again, _ := encode(sampleMeta(1))
	if !bytes.Equal(again, data) {
		t.Fatal("encoding not stable")
	}
}

// validFile is the content of a valid file as a map, for mutation.
func validFile(t *testing.T) map[string]any {
	t.Helper()
	data, err := encode(sampleMeta(1))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadValidation(t *testing.T) {
	valid, err := encode(sampleMeta(1))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) string {
		m := validFile(t)
		f(m)
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	set := func(key string, v any) string { return edit(func(m map[string]any) { m[key] = v }) }
	setIn := func(v any, keys ...string) string {
		return edit(func(m map[string]any) {
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			m[keys[len(keys)-1]] = v
		})
	}
	cases := []struct {
		name, file, want string
	}{
		{"syntax", `{"version": "v1",`, "JSON syntax error"},
		{"empty file", ``, "JSON syntax error"},
		{"trailing garbage", string(valid) + "}", "JSON syntax error at byte"},
		{"array", `[]`, "the file must hold a JSON object"},
		{"null", `null`, "the file must hold a JSON object"},
		{"libsql", `{"hash":1,"version":2,"durable_frame_num":0,"generation":1}`,
			"version: numeric version 2: this file was written by the older libsql client"},
		{"version v2", set("version", "v2"), `version: unsupported version "v2" (this syncdb reads "v1")`},
		{"version bool", set("version", true), `version: must be the string "v1", got true`},
		{"version null", `{"version" : null , "client_unique_id": "x"}`, "version: must not be null"},
		{"version object", set("version", map[string]any{}), `version: must be the string "v1", got {}`},
		{"empty client id", set("client_unique_id", ""), "client_unique_id: must not be empty"},
		{"numeric client id", set("client_unique_id", 5), "client_unique_id: expected string, got JSON number"},
		{"legacy revision", set("synced_revision", map[string]any{"type": "legacy", "generation": 1, "synced_frame_no": nil}),
			`synced_revision.type: must be "v1", got "legacy"`},
		{"bad partial revision", set("partial_bootstrap_server_revision", map[string]any{"type": "v2", "revision": "x"}),
			`partial_bootstrap_server_revision.type: must be "v1", got "v2"`},
		{"negative watermark", set("revert_since_wal_watermark", -1), "revert_since_wal_watermark: must not be negative, got -1"},
		{"negative pull gen", set("last_pushed_pull_gen_hint", -2), "last_pushed_pull_gen_hint: must not be negative, got -2"},
		{"negative change id", set("last_pushed_change_id_hint", -3), "last_pushed_change_id_hint: must not be negative, got -3"},
		{"negative pull time", set("last_pull_unix_time", -4), "last_pull_unix_time: must not be negative, got -4"},
		{"negative segment size", setIn(-5, "saved_configuration", "partial_sync_segment_size"),
			"saved_configuration.partial_sync_segment_size: must not be negative, got -5"},
		{"negative revert len", setIn(-6, "syncdb", "base", "revert_len"), "syncdb.base.revert_len: must not be negative, got -6"},
		{"negative base frame", setIn(-7, "syncdb", "base", "wal", "Frame"), "syncdb.base.wal.Frame: must not be negative, got -7"},
		{"negative segment size", setIn(-8, "syncdb", "partial", "segment_size"), "syncdb.partial.segment_size: must not be negative, got -8"},
		{"negative db size", setIn(-1, "syncdb", "base", "db_size"), "syncdb.base.db_size: expected uint32, got JSON number -1"},
		{"fractional watermark", set("revert_since_wal_watermark", 1.5), "revert_since_wal_watermark: expected int, got JSON number 1.5"},
		{"salt of three", set("revert_since_wal_salt", []int{1, 2, 3}), "revert_since_wal_salt: must be null or an array of two numbers, got [1,2,3]"},
		{"salt not array", set("revert_since_wal_salt", "x"), `revert_since_wal_salt: must be null or an array of two numbers, got "x"`},
		{"negative salt", set("revert_since_wal_salt", []int{1, -1}), "revert_since_wal_salt"},
		{"watermark disagrees", set("revert_since_wal_watermark", 3), "revert_since_wal_watermark: 3 disagrees with syncdb.base.wal frame 6"},
		{"salt disagrees", set("revert_since_wal_salt", []int{1, 2}), "revert_since_wal_salt: [1, 2] disagrees with syncdb.base.wal salts [11, 23]"},
		{"salt missing", set("revert_since_wal_salt", nil), "revert_since_wal_salt: null disagrees with syncdb.base.wal salts [11, 23]"},
	}
	for _, k := range requiredKeys {
		cases = append(cases,
			struct{ name, file, want string }{"missing " + k, edit(func(m map[string]any) { delete(m, k) }), fmt.Sprintf("missing required key %q", k)},
		)
		if k != "version" {
			cases = append(cases,
				struct{ name, file, want string }{"null " + k, set(k, nil), k + ": must not be null"})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := newCrashFS(crashDir)
			fs.put(crashPath, []byte(tc.file))
			m, err := Load(fs, crashPath)
			if err == nil {
				t.Fatalf("loaded %+v", m)
			}
			if !errors.Is(err, ErrInvalidMeta) {
				t.Fatalf("%v does not wrap ErrInvalidMeta", err)
			}
			prefix := crashPath + ": invalid sync metadata: "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant   %q", err, prefix+tc.want+"...")
			}
			// Spawn refuses it the same way, and starts no actor.
			sys := newSys(t)
			defer sys.Stop()
			if _, serr := Spawn(sys, fs, crashPath); serr == nil || serr.Error() != err.Error() {
				t.Fatalf("Spawn: %v", serr)
			}
			if _, serr := Spawn(sys, newCrashFS(crashDir), crashPath); serr != nil {
				t.Fatalf("an actor was left behind: %v", serr)
			}
		})
	}
}

// TestLibsqlFile: the whole friendly error for the older client's file.
func TestLibsqlFile(t *testing.T) {
	fs := newCrashFS("/x")
	fs.put("/x/app.db-info", []byte(`{"hash":1,"version":2,"durable_frame_num":0,"generation":1}`))
	_, err := Load(fs, "/x/app.db-info")
	want := `/x/app.db-info: invalid sync metadata: version: numeric version 2: this file was written by the older ` +
		`libsql client, whose local sync format syncdb cannot read. To recover: push any unpushed changes ` +
		`with the libsql client, close every program using the database, move /x/app.db and /x/app.db-* files ` +
		`(this one included) aside (keep them until you have checked the result), and open it again with ` +
		`syncdb, which bootstraps a fresh copy from the server`
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidMeta) {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// tursoFile is -info as Turso's engine writes it (newest fields included).
const tursoFile = `{"version":"v1","client_unique_id":"turso-sync-js-0d5b","synced_revision":{"type":"v1","revision":"r1"},` +
	`"revert_since_wal_salt":[1,2],"revert_since_wal_watermark":7,"last_pull_unix_time":1700000000,` +
	`"last_push_unix_time":null,"last_pushed_pull_gen_hint":0,"last_pushed_change_id_hint":0,` +
	`"last_pushed_replay_floor_change_id_hint":0,"partial_bootstrap_server_revision":null,` +
	`"fresh_bootstrap_pending_cdc_ack":false,"remote_pull_protocol":"pages",` +
	`"logical_table_names_by_stable_id":{"2":"items"},` +
	`"saved_configuration":{"remote_url":"http://x","partial_sync_prefetch":null,"partial_sync_segment_size":null}}`

// TestTursoFile: Turso's files load; unknown fields are dropped on rewrite,
// and the compatibility fields follow syncdb.base.wal.
func TestTursoFile(t *testing.T) {
	fs := newCrashFS(crashDir)
	fs.put(crashPath, []byte(tursoFile))
	m, err := Load(fs, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	if m.ClientUniqueID != "turso-sync-js-0d5b" || m.RevertSinceWALWatermark != 7 ||
		*m.RevertSinceWALSalt != [2]uint32{1, 2} || *m.LastPullUnixTime != 1700000000 ||
		*m.SavedConfiguration.RemoteURL != "http://x" || m.SyncDB != (messages.SyncDBState{}) {
		t.Fatalf("loaded %+v", m)
	}

	// The oldest format (v0.2.0): only the original fields.
	fs.put(crashPath, []byte(`{"version":"v1","client_unique_id":"c","synced_revision":null,"revert_since_wal_salt":null,`+
		`"revert_since_wal_watermark":0,"last_pull_unix_time":null,"last_push_unix_time":null,`+
		`"last_pushed_pull_gen_hint":0,"last_pushed_change_id_hint":0}`))
	if _, err := Load(fs, crashPath); err != nil {
		t.Fatal(err)
	}

	fs.put(crashPath, []byte(tursoFile))
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, fs, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := update(context.Background(), pid, func(m *messages.Meta) error {
		m.LastPushedChangeIDHint = 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	data, err := fsx.ReadFile(fs, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"remote_pull_protocol", "logical_table_names_by_stable_id", "fresh_bootstrap_pending_cdc_ack"} {
		if bytes.Contains(data, []byte(gone)) {
			t.Errorf("%s kept:\n%s", gone, data)
		}
	}
	m, err = Load(fs, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	if m.RevertSinceWALSalt != nil || m.RevertSinceWALWatermark != 0 || m.LastPushedChangeIDHint != 5 ||
		m.SyncedRevision.Revision != "r1" {
		t.Fatalf("rewritten: %+v", m)
	}
}

// TestUpdateFailures: a failing Fn, invalid results and failing writes
// leave the state (and, up to the rename, the file) unchanged.
func TestUpdateFailures(t *testing.T) {
	ctx := context.Background()
	fs := newCrashFS(crashDir)
	orig := sampleMeta(1)
	data, _ := encode(clone(orig))
	fs.put(crashPath, data)
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, fs, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		if got := get(t, pid); !reflect.DeepEqual(got, orig) {
			t.Fatalf("%s: state changed to %+v", what, got)
		}
		if got, err := Load(fs, crashPath); err != nil || !reflect.DeepEqual(got, orig) {
			t.Fatalf("%s: file changed: %+v, %v", what, got, err)
		}
	}

	// Fn fails after changing its copy: nothing is written.
	errFn := errors.New("fn failed")
	fs.startCounting(-1)
	_, err = update(ctx, pid, func(m *messages.Meta) error {
		m.ClientUniqueID = "half-done"
		m.SyncedRevision.Revision = "half-done"
		return errFn
	})
	if !errors.Is(err, errFn) {
		t.Fatalf("Fn error: %v", err)
	}
	if log := fs.opLog(); len(log) != 0 {
		t.Fatalf("a failed Fn wrote: %q", log)
	}
	unchanged("failing Fn")

	// Invalid results are refused before anything is written.
	for _, tc := range []struct {
		name string
		fn   func(*messages.Meta)
		want string
	}{
		{"empty client id", func(m *messages.Meta) { m.ClientUniqueID = "" }, "client_unique_id: must not be empty"},
		{"version", func(m *messages.Meta) { m.Version = "v2" }, `version: must be "v1", got "v2"`},
		{"revision type", func(m *messages.Meta) { m.SyncedRevision.Type = "legacy" }, `synced_revision.type: must be "v1"`},
		{"negative hint", func(m *messages.Meta) { m.LastPushedChangeIDHint = -1 }, "last_pushed_change_id_hint: must not be negative"},
		{"negative frame", func(m *messages.Meta) { m.SyncDB.Base.WAL.Frame = -1 }, "syncdb.base.wal.Frame: must not be negative"},
		{"negative len", func(m *messages.Meta) { m.SyncDB.Pull.NextRevertLen = -1 }, "syncdb.pull.next_revert_len: must not be negative"},
	} {
		_, err := update(ctx, pid, func(m *messages.Meta) error { tc.fn(m); return nil })
		if !errors.Is(err, ErrInvalidMeta) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if log := fs.opLog(); len(log) != 0 {
			t.Fatalf("%s: an invalid update wrote: %q", tc.name, log)
		}
		unchanged(tc.name)
	}

	// No Fn.
	if _, err := update(ctx, pid, nil); err == nil {
		t.Fatal("UpdateMeta without Fn succeeded")
	}

	// The write fails at each of its steps (the process lives on).
	steps := []string{"open", "write", "sync", "close", "rename"}
	for _, step := range steps {
		errDisk := fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		fs.fail = func(op string) error {
			if strings.HasPrefix(op, step+" ") {
				return errDisk
			}
			return nil
		}
		_, err := update(ctx, pid, func(m *messages.Meta) error { m.LastPushedChangeIDHint = 1000; return nil })
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "write "+crashPath) {
			t.Fatalf("%s fails: %v", step, err)
		}
		unchanged(step + " fails")
	}
	// After the rename, only the state is unchanged: the file has the new
	// content (see the package doc).
	fs.fail = func(op string) error {
		if op == "syncdir" {
			return syscall.EIO
		}
		return nil
	}
	if _, err := update(ctx, pid, func(m *messages.Meta) error { m.LastPushedChangeIDHint = 1000; return nil }); !errors.Is(err, syscall.EIO) {
		t.Fatalf("syncdir fails: %v", err)
	}
	if got := get(t, pid); !reflect.DeepEqual(got, orig) {
		t.Fatalf("syncdir fails: state changed to %+v", got)
	}

	// The disk recovers: the next update works from the unchanged state.
	fs.fail = nil
	got, err := update(ctx, pid, func(m *messages.Meta) error { m.LastPushedPullGenHint = 42; return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := clone(orig)
	want.LastPushedPullGenHint = 42
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after recovery %+v", got)
	}
	if loaded, err := Load(fs, crashPath); err != nil || !reflect.DeepEqual(loaded, want) {
		t.Fatalf("after recovery the file holds %+v, %v", loaded, err)
	}
}

// TestAbandonedRequest: a request whose caller gave up while it waited in
// the mailbox is not carried out.
func TestAbandonedRequest(t *testing.T) {
	ctx := context.Background()
	fs := newCrashFS(crashDir)
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, fs, crashPath)
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := update(ctx, pid, func(m *messages.Meta) error {
			close(entered)
			<-release
			m.ClientUniqueID = "first"
			return nil
		})
		first <- err
	}()
	<-entered

	cctx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{}, 1)
	second := make(chan error, 1)
	go func() {
		_, err := update(cctx, pid, func(m *messages.Meta) error {
			ran <- struct{}{}
			m.ClientUniqueID = "second"
			return nil
		})
		second <- err
	}()
	// Let the second request reach the mailbox, then abandon it.
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned request: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := get(t, pid); got.ClientUniqueID != "first" {
		t.Fatalf("state %+v", got)
	}
	select {
	case <-ran:
		t.Fatal("the abandoned request's Fn ran")
	default:
	}

	// A request with a context that already ended is not even sent.
	if _, err := pid.Get(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetMeta with a cancelled context: %v", err)
	}
}

// TestSpawnReadError: an unreadable file (other than a missing one) is an
// error.
func TestSpawnReadError(t *testing.T) {
	sys := newSys(t)
	defer sys.Stop()
	dir := t.TempDir()
	// A directory where the file should be.
	path := filepath.Join(dir, "app.db-info")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Spawn(sys, fsx.OS, path); err == nil || errors.Is(err, ErrInvalidMeta) {
		t.Fatalf("Spawn on a directory: %v", err)
	}
	// A missing file is not an error, but a missing directory makes the
	// first update fail, without changing the (empty) state.
	missing := filepath.Join(dir, "nodir", "app.db-info")
	pid, err := Spawn(sys, fsx.OS, missing)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := update(context.Background(), pid, setTo(sampleMeta(1))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("update in a missing directory: %v", err)
	}
	if m := get(t, pid); m != nil {
		t.Fatalf("state %+v", m)
	}
}

// TestStopNoLeak: stopping the system stops the actor without leaking
// goroutines, and requests after Stop fail.
func TestStopNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t)
	sys := newSys(t)
	pid, err := Spawn(sys, newCrashFS(crashDir), crashPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := update(context.Background(), pid, setTo(sampleMeta(1))); err != nil {
		t.Fatal(err)
	}
	sys.Stop()
	if _, err := pid.Get(context.Background()); !errors.Is(err, actors.ErrStopped) {
		t.Fatalf("after Stop: %v", err)
	}
}

// FuzzLoad: Load never panics; what it accepts can be written, and the
// written form is a fixed point.
func FuzzLoad(f *testing.F) {
	valid, _ := encode(sampleMeta(1))
	f.Add(valid)
	f.Add([]byte(tursoFile))
	f.Add([]byte(`{"hash":1,"version":2,"durable_frame_num":0,"generation":1}`))
	f.Add([]byte(`{"version":"v1","client_unique_id":"c","revert_since_wal_watermark":0,"last_pushed_pull_gen_hint":0,"last_pushed_change_id_hint":0,"syncdb":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := newCrashFS(crashDir)
		fs.put(crashPath, data)
		m, err := Load(fs, crashPath)
		if err != nil {
			if !errors.Is(err, ErrInvalidMeta) {
				t.Fatalf("error does not wrap ErrInvalidMeta: %v", err)
			}
			return
		}
		out, err := encode(clone(m))
		if err != nil {
			t.Fatalf("accepted %q but cannot write it: %v", data, err)
		}
		m2, err := decode(out, crashPath)
		if err != nil {
			t.Fatalf("cannot load what was written: %v\n%s", err, out)
		}
		out2, err := encode(m2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("not a fixed point: %v\n%s\n%s", err, out, out2)
		}
	})
}

// TestDeferredUpdate: a deferred update is current (GetMeta, the next
// update's start) but not in the file, until the next written update
// carries it; an invalid one is refused like any other.
func TestDeferredUpdate(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "app.db-info")
	ctx := context.Background()
	sys := newSys(t)
	defer sys.Stop()
	pid, err := Spawn(sys, fsx.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := update(ctx, pid, setTo(sampleMeta(1))); err != nil {
		t.Fatal(err)
	}
	deferred := func(fn func(*messages.Meta) error) error {
		_, err := pid.UpdateDeferred(ctx, fn)
		return err
	}
	if err := deferred(func(m *messages.Meta) error { m.SyncedRevision.Revision = "rev-deferred"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := get(t, pid).SyncedRevision.Revision; got != "rev-deferred" {
		t.Fatalf("GetMeta after a deferred update: %q", got)
	}
	if m, err := Load(fsx.OS, path); err != nil || m.SyncedRevision.Revision != "rev-1" {
		t.Fatalf("the file after a deferred update: %+v, %v", m, err)
	}
	if err := deferred(func(m *messages.Meta) error { m.ClientUniqueID = ""; return nil }); err == nil {
		t.Fatal("a deferred update with an empty client id was accepted")
	}
	if _, err := update(ctx, pid, func(m *messages.Meta) error { m.LastPushedChangeIDHint = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	if m, err := Load(fsx.OS, path); err != nil || m.SyncedRevision.Revision != "rev-deferred" || m.LastPushedChangeIDHint != 5 {
		t.Fatalf("the file after the next update: %+v, %v", m, err)
	}
}
