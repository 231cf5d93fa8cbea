package syncactor

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// The bootstrap's plan, as scenarios: testdata/bootstrap/*.txt script what
// the server answers; the output is each decision of the plan (the
// requests, what a header and the pages make of the download, when it is
// complete), then the steps that finish it, in order, and the metadata
// written. go test ./syncactor -run TestBootstrapPlan -rewrite rewrites
// them.
//
// The commands:
//
//	full [chunk=BYTES] [hashed=false]
//	partial (prefix=BYTES|query=Q) [segment=N] [prefetch]
//
// hashed is the run writer's verdict (every page once, in order:
// TestRunWriterContentHash), default true. The input of full and partial,
// one line each, in the order the server does it: "header size=N rev=R"
// (the response's header), "pages A-B C ..." (pages sent), "end
// [database=D]" (the response ended well), "fail [database=D]" (it
// failed transiently: the retry's next attempt begins, the file created
// anew). A page the plan refuses fails the bootstrap: its error is not
// transient, nothing is retried.
func TestBootstrapPlan(t *testing.T) {
	datadriven.Walk(t, "testdata/bootstrap", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, c *datadriven.TestData) string {
			switch c.Cmd {
			case "full":
				return fullCase(t, c)
			case "partial":
				return partialCase(t, c)
			}
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
			return ""
		})
	})
}

// serverLine is one line of a scenario's input.
type serverLine struct {
	op       string // header, pages, end, fail, attempt
	size     uint64
	rev      string
	pages    []uint32
	database string
}

func parseServer(t *testing.T, c *datadriven.TestData) []serverLine {
	var out []serverLine
	for _, line := range strings.Split(strings.TrimSpace(c.Input), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		l := serverLine{op: f[0]}
		for _, w := range f[1:] {
			k, v, kv := strings.Cut(w, "=")
			switch {
			case kv && k == "size":
				l.size = uint64(mustInt(t, c, v))
			case kv && k == "rev":
				l.rev = v
			case kv && k == "database":
				l.database = v
			case !kv && l.op == "pages":
				from, to, r := strings.Cut(w, "-")
				if !r {
					to = from
				}
				for p := mustInt(t, c, from); p <= mustInt(t, c, to); p++ {
					l.pages = append(l.pages, uint32(p))
				}
			default:
				t.Fatalf("%s: bad word %q in %q", c.Pos, w, line)
			}
		}
		out = append(out, l)
	}
	return out
}

// showRequest prints a request as the server reads it.
func showRequest(t *testing.T, req *syncpb.PullUpdatesReqProtoBody) string {
	var parts []string
	switch {
	case req.ServerQuerySelector != "":
		parts = append(parts, "query "+strconv.Quote(req.ServerQuerySelector))
	case req.ServerPagesSelector != nil:
		bm, err := wire.DecodeSelector(req.ServerPagesSelector)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("page ids [%d,%d)", bm.Minimum(), bm.Maximum()+1))
	default:
		parts = append(parts, "every page")
	}
	if req.ServerRevision != "" {
		parts = append(parts, "at revision "+req.ServerRevision)
	} else {
		parts = append(parts, "at the latest revision")
	}
	return "request " + strings.Join(parts, " ")
}

func showPages(ps []uint32) string {
	var runs []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if j == i {
			runs = append(runs, fmt.Sprint(ps[i]))
		} else {
			runs = append(runs, fmt.Sprintf("%d-%d", ps[i], ps[j]))
		}
		i = j + 1
	}
	return strings.Join(runs, " ")
}

func fullCase(t *testing.T, c *datadriven.TestData) string {
	var out strings.Builder
	say := func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }
	chunk := chunkPages(mustInt(t, c, arg(c, "chunk", "0")))
	say("chunk: %d pages per request", chunk)
	d := fullDownload{chunk: chunk}
	attempt := 0
	begin := func() {
		attempt++
		d.restart()
		req, err := d.request()
		if err != nil {
			t.Fatal(err)
		}
		say("attempt %d: %s", attempt, showRequest(t, req))
	}
	begin()
	lines := parseServer(t, c)
	for i, l := range lines {
		switch l.op {
		case "header":
			kept := d.hdr == nil
			d.header(&syncpb.PullUpdatesRespProtoBody{DbSize: l.size, ServerRevision: l.rev})
			if kept {
				say("header: size %d, revision %s: kept", l.size, l.rev)
			} else {
				say("header: size %d, revision %s: ignored, the first one counts", l.size, l.rev)
			}
		case "pages":
			var got, total int64
			for _, p := range l.pages {
				var err error
				if got, total, err = d.page(p); err != nil {
					return out.String() + fmt.Sprintf("page %d: the bootstrap fails (not transient): %v\n", p, err) + noMore(t, c, lines[i+1:])
				}
			}
			say("pages %s: progress %d of %d", showPages(l.pages), got, total)
		case "fail":
			say("the response fails: retry")
			begin()
		case "end":
			if d.answered(l.database) {
				say("complete: %d pages at revision %s, database %q", d.hdr.DbSize, d.hdr.ServerRevision, d.database)
				noMore(t, c, lines[i+1:])
				steps := finishFull(d.hdr.DbSize, arg(c, "hashed", "true") == "true")
				facts := bootFacts{revision: d.hdr.ServerRevision, size: d.hdr.DbSize, database: d.database}
				return out.String() + showFinish(steps, facts)
			}
			req, err := d.request()
			if err != nil {
				t.Fatal(err)
			}
			say("next: %s", showRequest(t, req))
		default:
			t.Fatalf("%s: unknown line %q", c.Pos, l.op)
		}
	}
	return out.String() + "not complete\n"
}

// noMore fails a scenario whose script goes on after the bootstrap ended.
func noMore(t *testing.T, c *datadriven.TestData, rest []serverLine) string {
	if len(rest) > 0 {
		t.Fatalf("%s: %q after the bootstrap ended", c.Pos, rest[0].op)
	}
	return ""
}

func partialCase(t *testing.T, c *datadriven.TestData) string {
	var out strings.Builder
	say := func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }
	p := &messages.PartialBootstrap{
		PrefixBytes: mustInt(t, c, arg(c, "prefix", "0")),
		Query:       arg(c, "query", ""),
		SegmentSize: int(mustInt(t, c, arg(c, "segment", "0"))),
		Prefetch:    c.HasArg("prefetch"),
	}
	req, err := partialRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	var d partialDownload
	attempt := 0
	begin := func() {
		attempt++
		d.restart()
		say("attempt %d: %s", attempt, showRequest(t, req))
	}
	begin()
	lines := parseServer(t, c)
	for i, l := range lines {
		switch l.op {
		case "header":
			say("header: size %d, revision %s: truncate the file to %d bytes", l.size, l.rev,
				d.header(&syncpb.PullUpdatesRespProtoBody{DbSize: l.size, ServerRevision: l.rev}))
		case "pages":
			var got int64
			for _, pg := range l.pages {
				var err error
				if got, err = d.page(pg); err != nil {
					return out.String() + fmt.Sprintf("page %d: the bootstrap fails (not transient): %v\n", pg, err) + noMore(t, c, lines[i+1:])
				}
			}
			say("pages %s: progress %d", showPages(l.pages), got)
		case "fail":
			d.answered(l.database)
			say("the response fails: retry")
			begin()
		case "end":
			d.answered(l.database)
			noMore(t, c, lines[i+1:])
			say("complete: %d pages at revision %s, database %q, present %v", d.hdr.DbSize, d.hdr.ServerRevision, d.database, d.present.ToArray())
			steps := finishPartial(d.hdr.DbSize, d.present.Contains(1))
			facts := bootFacts{revision: d.hdr.ServerRevision, size: d.hdr.DbSize, database: d.database, partial: p}
			return out.String() + showFinish(steps, facts)
		default:
			t.Fatalf("%s: unknown line %q", c.Pos, l.op)
		}
	}
	return out.String() + "not complete\n"
}

// showFinish prints the steps, marking those on the file that dbactor
// runs (FinishDownload: downloadSteps), and, if they write it, the
// metadata (as bootMeta writes it over an empty one: every field it sets).
func showFinish(steps []bootStep, b bootFacts) string {
	var out strings.Builder
	meta := false
	file, _ := downloadSteps(steps) // the first ones, run by dbactor
	for i, st := range steps {
		by := ""
		if i < len(file) {
			by = " (dbactor)"
		}
		fmt.Fprintf(&out, "finish %d%s: %s\n", i+1, by, st)
		if st.op == opStamp {
			// A stand-in for the file's stamp (dbactor's, of the real file).
			b.stamp = &messages.FileStamp{Size: int64(b.size) * wire.PageSize, MtimeNS: 1, Hash: 7}
		}
		meta = meta || st.op == opMeta
	}
	if !meta {
		return out.String()
	}
	url := "http://server"
	b.clientID, b.saved, b.now = "c1", messages.SavedConfig{RemoteURL: &url}, 1000
	var m messages.Meta
	bootMeta(&m, b)
	raw, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		panic(err)
	}
	var lines []string
	flatten("", tree, &lines)
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintf(&out, "meta %s\n", l)
	}
	return out.String()
}

// flatten lists a JSON tree's leaves as "a.b: value", but for null, 0 and
// "" (fields bootMeta leaves unset, mostly).
func flatten(prefix string, v any, lines *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if prefix != "" {
				k = prefix + "." + k
			}
			flatten(k, c, lines)
		}
	case nil:
	case bool:
		*lines = append(*lines, fmt.Sprintf("%s: %v", prefix, v))
	case float64:
		if v != 0 {
			*lines = append(*lines, fmt.Sprintf("%s: %v", prefix, v))
		}
	case string:
		if v != "" {
			*lines = append(*lines, fmt.Sprintf("%s: %q", prefix, v))
		}
	default:
		*lines = append(*lines, fmt.Sprintf("%s: %v", prefix, v))
	}
}
