package sqlitex

import "strings"

// DSN is a data source name for modernc.org/sqlite: a file: URI of Path
// with SQLite's mode parameter, then the driver's _pragma parameters (run
// in order on each new connection), then the VFS. It is the one place
// syncdb builds them (dbactor's writer and readers, the server's
// database, its query-selector image).
//
// Path is not escaped: syncdb's paths are its own (absolute, cleaned)
// and must not hold '?' or '#'.
type DSN struct {
	Path    string
	Mode    string   // "ro" for read-only; "" = read-write, created if missing
	Pragmas []string // each "name(value)", e.g. "busy_timeout(10000)"
	VFS     string   // "" = SQLite's default
}

func (d DSN) String() string {
	var b strings.Builder
	b.WriteString("file:" + d.Path)
	sep := "?"
	param := func(k, v string) {
		b.WriteString(sep + k + "=" + v)
		sep = "&"
	}
	if d.Mode != "" {
		param("mode", d.Mode)
	}
	for _, p := range d.Pragmas {
		param("_pragma", p)
	}
	if d.VFS != "" {
		param("vfs", d.VFS)
	}
	return b.String()
}
