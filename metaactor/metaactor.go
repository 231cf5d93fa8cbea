// Package metaactor is the actor that owns a synced database's metadata
// file, <db>-info: it loads and validates the file once when it starts,
// serves copies of the current metadata, and applies updates by writing
// the whole file anew. Nothing else in syncdb writes that file while the
// actor runs (a rebuild renames a new one into place with no actor
// running). Load reads it without an actor and writes nothing: for
// syncdb.ReadStats and the CLI, sometimes while an actor runs (another
// process's, or the CLI's own after a repair), and for tests. Every write
// is a rename (below), so Load sees an old or a new file, whole.
//
// # Messages
//
// [messages.GetMeta] answers a deep copy of the current metadata, or nil if
// the file did not exist when the actor started and nothing was written
// since. [messages.UpdateMeta] runs its Fn on a deep copy of the current
// metadata (a zero Meta with Version set if there is none), validates the
// result, writes it durably and only then makes it current; the reply is a
// deep copy. If Fn, validation or the write fails, the actor's metadata is
// unchanged and the error is returned, wrapped. Fn runs inside the actor: it
// must not send requests to this actor. Both messages check the request's
// context before starting; a request abandoned by its caller while it waited
// in the mailbox is not carried out.
//
// # Durability protocol
//
// An update is written with [fsx.WriteFileAtomic]: the new content goes to
// <db>-info.tmp (created or truncated), which is fsynced and closed, renamed
// over <db>-info, and then the directory is fsynced. The file is never
// modified in place, so after a crash at any point it holds either the old
// or the new content, complete:
//
//   - before the rename, the old file is untouched (a half-written .tmp may
//     be left behind; the next update truncates it);
//   - the rename happens only after the new content is durable, so whether
//     or not the rename survives a crash, the name refers to a complete file;
//   - once the directory is fsynced the rename is durable, and only then is
//     the update acknowledged.
//
// An update with [messages.UpdateMeta.Defer] is validated and made current
// but not written: the caller keeps its durable record elsewhere, and the
// next written update carries it.
//
// An acknowledged update therefore survives a crash. A failed update leaves
// the actor's metadata unchanged, but if the failure came after the rename
// (the directory fsync failed) the file may already hold the new content:
// the caller must treat a failed update like a crash in the middle of it
// (old or new, unknown), exactly as it must for the rest of its state. The
// tests prove the crash claims with a file system that crashes at every step
// and loses unsynced data and unsynced renames.
//
// # Format and validation
//
// The file is Turso's -info JSON (version "v1") with syncdb's own state
// under "syncdb"; it is written as indented JSON in the field order of
// [messages.Meta], with a trailing newline. Fields the file has but Meta
// does not know (for example those that newer Turso clients add) are
// accepted on load and dropped when the file is rewritten.
//
// Every validation error wraps [ErrInvalidMeta] and names the offending
// field. On load: the JSON must be a syntactically valid object; "version"
// must be the string "v1" (a number means the file was written by the older
// libsql client, and the error says how to recover); the keys Turso requires
// ("version", "client_unique_id", "revert_since_wal_watermark",
// "last_pushed_pull_gen_hint", "last_pushed_change_id_hint") must be present
// and not null. On load and before every write: "client_unique_id" must not
// be empty, revisions must have type "v1", counters, sizes, frame numbers
// and times must not be negative, and "revert_since_wal_salt" must be null
// or two numbers.
//
// "revert_since_wal_salt" and "revert_since_wal_watermark" exist so that
// tools that know Turso's format can read ours; syncdb.base.wal is the
// authoritative record of the same thing. Before every write they are set
// from Base.WAL (the salts, or null for a zero position, and the frame), so
// whatever Fn put in them is overwritten. A loaded file that has a "syncdb"
// section must agree with it; a file without one (written by a Turso client)
// is loaded as it is, with a zero Base, and its first rewrite sets both
// fields from that zero Base.
//
// Its exported names are for syncdb's own packages (the facade, the CLI,
// the server, the simulator, tests), with no compatibility promise: a
// program uses package syncdb.
package metaactor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/internal/layout"
	"github.com/syncdb/syncdb/internal/walfile"
	"github.com/syncdb/syncdb/messages"
)

// ErrInvalidMeta is wrapped by every error about the content of a metadata
// file or of metadata about to be written.
var ErrInvalidMeta = errors.New("invalid sync metadata")

// ActorName is the name the actor is spawned under in its System.
const ActorName = "meta"

// Spawn starts the actor for the metadata file at path (e.g.
// "/x/app.db-info") on sys. It loads the file eagerly: a missing file is
// fine (GetMeta then answers nil), an unreadable or invalid one is an error
// returned here, and no actor is started.
func Spawn(sys *actors.System, fsys fsx.FS, path string) (Handle, error) {
	return SpawnWatched(sys, fsys, path, nil)
}

// SpawnWatched is Spawn with watch (if not nil) called with a copy of the
// metadata every time the actor's current metadata changes, on the actor's
// goroutine: for the simulator, which compares it with the file.
func SpawnWatched(sys *actors.System, fsys fsx.FS, path string, watch func(*messages.Meta)) (Handle, error) {
	cur, err := Load(fsys, path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Handle{}, err
	}
	a := &metaActor{fs: fsys, path: path, cur: cur, watch: watch}
	ref, err := sys.Spawn(ActorName, actors.LevelMeta, a.receive, nil)
	return Handle{ref}, err
}

// Load reads and validates a metadata file without an actor. A missing
// file is an error that wraps os.ErrNotExist.
func Load(fsys fsx.FS, path string) (*messages.Meta, error) {
	data, err := fsx.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read sync metadata: %w", err)
	}
	m, err := decode(data, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// metaActor is the actor's state; only its goroutine touches it.
type metaActor struct {
	watch func(*messages.Meta)
	fs    fsx.FS
	path  string
	cur   *messages.Meta // nil: no metadata yet
}

func (a *metaActor) receive(msg any) {
	switch m := msg.(type) {
	case *messages.GetMeta:
		if err := m.Context().Err(); err != nil {
			m.Respond(nil, err)
			return
		}
		m.Respond(clone(a.cur), nil)
	case *messages.UpdateMeta:
		if err := m.Context().Err(); err != nil {
			m.Respond(nil, err)
			return
		}
		next, err := a.update(m.Fn, m.Defer)
		if err != nil {
			m.Respond(nil, err)
			return
		}
		m.Respond(next, nil)
	default:
		if f, ok := msg.(interface{ Fail(error) }); ok {
			f.Fail(fmt.Errorf("metaactor: unexpected message %T", msg))
		}
	}
}

// update carries out one UpdateMeta and returns a copy for the reply.
func (a *metaActor) update(fn func(*messages.Meta) error, deferred bool) (*messages.Meta, error) {
	if fn == nil {
		return nil, errors.New("UpdateMeta without Fn")
	}
	next := clone(a.cur)
	if next == nil {
		next = &messages.Meta{Version: messages.MetaVersion}
	}
	if err := fn(next); err != nil {
		return nil, fmt.Errorf("update %s: %w", a.path, err)
	}
	data, err := encode(next)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", a.path, err)
	}
	if deferred {
		a.setCur(next)
		return next, nil
	}
	if mutation.cacheFirst {
		a.setCur(next)
	}
	if err := fsx.WriteFileAtomic(a.fs, a.path, data); err != nil {
		return nil, fmt.Errorf("write %s: %w", a.path, err)
	}
	// Only now, and not before: a write that failed (and that the process
	// survives) must leave the cache as the file is. Fn may have kept a
	// pointer into next: keep our own copy.
	a.setCur(next)
	return next, nil
}

// setCur makes a copy of next the current metadata.
func (a *metaActor) setCur(next *messages.Meta) {
	a.cur = clone(next)
	if a.watch != nil {
		a.watch(clone(next))
	}
}

// encode sets the Turso compatibility fields from Base.WAL, validates m and
// renders it as the file's content.
func encode(m *messages.Meta) ([]byte, error) {
	m.RevertSinceWALSalt, m.RevertSinceWALWatermark = walFields(m.SyncDB.Base.WAL)
	if err := validate(m); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil { // Encode adds the trailing newline
		return nil, fmt.Errorf("encode sync metadata: %w", err)
	}
	return buf.Bytes(), nil
}

// walFields derives Turso's revert_since_wal_salt and
// revert_since_wal_watermark from the synced base's WAL position.
func walFields(p walfile.Position) (*[2]uint32, int) {
	if p.IsZero() {
		return nil, 0
	}
	return &[2]uint32{p.Salt1, p.Salt2}, p.Frame
}

// requiredKeys are the keys Turso's format has no default for.
var requiredKeys = []string{
	"version",
	"client_unique_id",
	"revert_since_wal_watermark",
	"last_pushed_pull_gen_hint",
	"last_pushed_change_id_hint",
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidMeta, fmt.Sprintf(format, args...))
}

// decode parses and validates a file's content; path is only used to word
// the recovery advice.
func decode(data []byte, path string) (*messages.Meta, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, invalid("JSON syntax error: the file is empty")
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // for the reason and the position
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
			return nil, invalid("JSON syntax error at byte %d: %v", se.Offset, err)
		}
		return nil, invalid("JSON syntax error: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil, invalid("the file must hold a JSON object")
	}
	if err := checkVersion(raw["version"], path); err != nil {
		return nil, err
	}
	for _, k := range requiredKeys {
		v, ok := raw[k]
		if !ok {
			return nil, invalid("missing required key %q", k)
		}
		if string(v) == "null" {
			return nil, invalid("%s: must not be null", k)
		}
	}
	if v, ok := raw["revert_since_wal_salt"]; ok && string(v) != "null" {
		var s []json.RawMessage
		if err := json.Unmarshal(v, &s); err != nil || len(s) != 2 {
			return nil, invalid("revert_since_wal_salt: must be null or an array of two numbers, got %s", v)
		}
	}
	var m messages.Meta
	if err := json.Unmarshal(data, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, invalid("%s: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return nil, invalid("%v", err)
	}
	if err := validate(&m); err != nil {
		return nil, err
	}
	if v, ok := raw["syncdb"]; ok && string(v) != "null" {
		salt, wm := walFields(m.SyncDB.Base.WAL)
		if wm != m.RevertSinceWALWatermark {
			return nil, invalid("revert_since_wal_watermark: %d disagrees with syncdb.base.wal frame %d",
				m.RevertSinceWALWatermark, wm)
		}
		if !reflect.DeepEqual(salt, m.RevertSinceWALSalt) {
			return nil, invalid("revert_since_wal_salt: %s disagrees with syncdb.base.wal salts %s",
				fmtSalt(m.RevertSinceWALSalt), fmtSalt(salt))
		}
	}
	return &m, nil
}

func fmtSalt(s *[2]uint32) string {
	if s == nil {
		return "null"
	}
	return fmt.Sprintf("[%d, %d]", s[0], s[1])
}

// checkVersion checks the raw "version" value before anything else, so that
// a file of another format gets an error about its format rather than about
// some field.
func checkVersion(v json.RawMessage, path string) error {
	if v == nil {
		return invalid("missing required key %q", "version")
	}
	if string(v) == "null" {
		return invalid("version: must not be null")
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		if s != messages.MetaVersion {
			return invalid("version: unsupported version %q (this syncdb reads %q)", s, messages.MetaVersion)
		}
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err == nil {
		db := "the database file"
		files := "its companion files"
		if base, ok := layout.DBOfInfo(path); ok && base != "" {
			db = base
			files = base + "-* files (this one included)"
		}
		return invalid("version: numeric version %s: this file was written by the older libsql client, "+
			"whose local sync format syncdb cannot read. To recover: push any unpushed changes with the "+
			"libsql client, close every program using the database, move %s and %s aside "+
			"(keep them until you have checked the result), and open it again with syncdb, "+
			"which bootstraps a fresh copy from the server", n, db, files)
	}
	return invalid("version: must be the string %q, got %s", messages.MetaVersion, v)
}

// validate checks what must hold both for a loaded file and before a write.
func validate(m *messages.Meta) error {
	if m.Version != messages.MetaVersion {
		return invalid("version: must be %q, got %q", messages.MetaVersion, m.Version)
	}
	if m.ClientUniqueID == "" {
		return invalid("client_unique_id: must not be empty")
	}
	for _, r := range []struct {
		name string
		rev  *messages.Revision
	}{
		{"synced_revision", m.SyncedRevision},
		{"partial_bootstrap_server_revision", m.PartialBootstrapServerRevision},
	} {
		if r.rev != nil && r.rev.Type != "v1" {
			return invalid("%s.type: must be \"v1\", got %q (only the pages protocol's revisions are supported)",
				r.name, r.rev.Type)
		}
	}
	type counter struct {
		name string
		v    int64
	}
	cs := []counter{
		// The frame first: on a write, the watermark is derived from it.
		{"syncdb.base.wal.Frame", int64(m.SyncDB.Base.WAL.Frame)},
		{"revert_since_wal_watermark", int64(m.RevertSinceWALWatermark)},
		{"last_pushed_pull_gen_hint", m.LastPushedPullGenHint},
		{"last_pushed_change_id_hint", m.LastPushedChangeIDHint},
		{"syncdb.base.revert_len", m.SyncDB.Base.RevertLen},
	}
	if t := m.LastPullUnixTime; t != nil {
		cs = append(cs, counter{"last_pull_unix_time", *t})
	}
	if t := m.LastPushUnixTime; t != nil {
		cs = append(cs, counter{"last_push_unix_time", *t})
	}
	if c := m.SavedConfiguration; c != nil && c.PartialSyncSegmentSize != nil {
		cs = append(cs, counter{"saved_configuration.partial_sync_segment_size", int64(*c.PartialSyncSegmentSize)})
	}
	if p := m.SyncDB.Pull; p != nil {
		cs = append(cs,
			counter{"syncdb.pull.before.Frame", int64(p.Before.Frame)},
			counter{"syncdb.pull.next_revert_len", p.NextRevertLen})
	}
	if p := m.SyncDB.Pulled; p != nil {
		cs = append(cs, counter{"syncdb.pulled.Frame", int64(p.Frame)})
	}
	if f := m.SyncDB.DBFile; f != nil {
		cs = append(cs, counter{"syncdb.db_file.size", f.Size})
	}
	if c := m.SyncDB.CleanClose; c != nil {
		cs = append(cs, counter{"syncdb.clean_close.Frame", int64(c.Frame)})
	}
	if l := m.SyncDB.LocalWAL; l != nil {
		cs = append(cs, counter{"syncdb.local_wal.Frame", int64(l.Frame)})
	}
	if p := m.SyncDB.Partial; p != nil {
		cs = append(cs, counter{"syncdb.partial.segment_size", int64(p.SegmentSize)})
	}
	for _, c := range cs {
		if c.v < 0 {
			return invalid("%s: must not be negative, got %d", c.name, c.v)
		}
	}
	return nil
}

// clone returns a deep copy of m: nothing reachable from the copy is shared
// with m. It copies by reflection so that fields added to Meta later are
// copied deeply without anyone remembering to update it.
func clone(m *messages.Meta) *messages.Meta {
	if m == nil {
		return nil
	}
	return deepCopy(reflect.ValueOf(m)).Interface().(*messages.Meta)
}

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		c := reflect.New(v.Type().Elem())
		c.Elem().Set(deepCopy(v.Elem()))
		return c
	case reflect.Struct:
		c := reflect.New(v.Type()).Elem()
		c.Set(v) // unexported fields, if any, are copied shallowly
		for i := range v.NumField() {
			if c.Field(i).CanSet() {
				c.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return c
	case reflect.Array:
		c := reflect.New(v.Type()).Elem()
		for i := range v.Len() {
			c.Index(i).Set(deepCopy(v.Index(i)))
		}
		return c
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			c.Index(i).Set(deepCopy(v.Index(i)))
		}
		return c
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		c := reflect.MakeMapWithSize(v.Type(), v.Len())
		it := v.MapRange()
		for it.Next() {
			c.SetMapIndex(deepCopy(it.Key()), deepCopy(it.Value()))
		}
		return c
	case reflect.Interface:
		c := reflect.New(v.Type()).Elem()
		if !v.IsNil() {
			c.Set(deepCopy(v.Elem()))
		}
		return c
	default: // scalars, strings; funcs and channels are shared
		return v
	}
}

// mutation holds the bugs that build tags plant (scripts/mutations.sh), to
// show that the simulator's invariants catch them.
var mutation struct {
	cacheFirst bool // the cache advances before the file is written
}
