package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/datadriven"

	"github.com/syncdb/syncdb/server/history"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// A pull's plan, as scenarios: testdata/pull/*.txt give a /pull-updates
// request, what the history says about its revisions and which pages
// changed; the output is what planPull's pure steps decide (readPullRequest,
// pullRevisions, pageQuery.since and choose): the revisions, whether it
// waits or is a snapshot, and the pages sent or the error with its HTTP
// status. go test ./server -run TestPlanPull -rewrite rewrites them.
//
// The command:
//
//	pull [client=REV] [server=REV] [sel=(P,...)] [query=(P,...)] [long-poll]
//	     [encoding=raw|zstd|N] [kind=N] latest=SEQ/SIZE [changed=(P,...)]
//
// REV is how parseRevision found the revision: SEQ/SIZE (or SEQ) a
// retained one; SEQ:gone below the horizon (compacted); future, other (of
// another database) or down (the store did not answer). sel is the page
// selector (0-based page indexes, as on the wire), query the pages the
// query selector names (1-based), latest the latest revision, changed the
// pages (1-based) changed after the revision the plan asks about (since)
// up to the target.
func TestPlanPull(t *testing.T) {
	datadriven.Walk(t, "testdata/pull", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "pull" {
				t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			}
			return pullCase(t, d)
		})
	})
}

func pullCase(t *testing.T, d *datadriven.TestData) string {
	req := &syncpb.PullUpdatesReqProtoBody{}
	var latest history.Revision
	var query, changed *roaring.Bitmap
	var client, server parsedRevision
	for _, a := range d.CmdArgs {
		v := strings.Join(a.Vals, ",")
		switch a.Key {
		case "client":
			req.ClientRevision, client = "rev-"+v, parsedRev(t, d, v)
		case "server":
			req.ServerRevision, server = "rev-"+v, parsedRev(t, d, v)
		case "sel":
			b, err := wire.EncodeSelector(pageSet(t, d, a.Vals))
			if err != nil {
				t.Fatal(err)
			}
			req.ServerPagesSelector = b
		case "query":
			req.ServerQuerySelector = "SELECT ..."
			query = pageSet(t, d, a.Vals)
		case "long-poll":
			req.LongPollTimeoutMs = 30000
		case "encoding":
			switch v {
			case "raw":
			case "zstd":
				req.Encoding = syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD
			default:
				req.Encoding = syncpb.PageUpdatesEncodingReq(atoi(t, d, v))
			}
		case "kind":
			req.StreamKind = syncpb.PullUpdatesStreamKind(atoi(t, d, v))
		case "latest":
			latest = sizedRev(t, d, v)
		case "changed":
			changed = pageSet(t, d, a.Vals)
		default:
			t.Fatalf("%s: unknown argument %q", d.Pos, a.Key)
		}
	}
	var out strings.Builder
	fail := func(err error) string {
		fmt.Fprintf(&out, "error %d: %v", pullStatus(err), err)
		return out.String()
	}
	r, err := readPullRequest(req)
	if err != nil {
		return fail(err)
	}
	revs, err := pullRevisions(r, client, server)
	if err != nil {
		return fail(err)
	}
	target := revs.target
	if revs.latest {
		target = latest
	}
	from := "from no revision"
	if revs.from >= 0 {
		from = fmt.Sprintf("from revision %d", revs.from)
	}
	to := fmt.Sprintf("to revision %d", target.Seq)
	if revs.latest {
		to = fmt.Sprintf("to the latest revision %d", target.Seq)
	}
	fmt.Fprintf(&out, "%s %s (%d pages)", from, to, target.DBSize)
	if revs.past > 0 {
		fmt.Fprintf(&out, ", a page fetch as of compacted revision %d", revs.past)
	}
	if revs.wait {
		fmt.Fprintf(&out, ", long poll while the latest is %d or older", revs.from)
	}
	if r.zstd {
		out.WriteString(", zstd pages")
	}
	out.WriteString("\n")
	if revs.snapshot {
		out.WriteString("a snapshot: the cache or the live database may serve it, else the history\n")
	}
	q := pageQuery{from: revs.from, past: revs.past, target: target, sel: r.sel, query: query}
	since, err := q.since()
	if err != nil {
		return fail(err)
	}
	if since >= 0 {
		if changed == nil {
			t.Fatalf("%s: the plan asks for the pages changed after %d: give changed=", d.Pos, since)
		}
		fmt.Fprintf(&out, "the history: %s changed after revision %d\n", pages(changed), since)
		changed = changed.Clone()
	} else {
		changed = nil
	}
	set, all, named, err := q.choose(changed)
	if err != nil {
		return fail(err)
	}
	name := ""
	if named != 0 {
		name = fmt.Sprintf(", named revision %d", named)
	}
	switch {
	case all && target.DBSize == 0:
		fmt.Fprintf(&out, "send every page: none%s", name)
	case all:
		fmt.Fprintf(&out, "send every page, 1 to %d%s", target.DBSize, name)
	case set.IsEmpty():
		fmt.Fprintf(&out, "send no page%s", name)
	default:
		fmt.Fprintf(&out, "send %s%s", pages(set), name)
	}
	return out.String()
}

// parsedRev is what parseRevision returns for the test's REV.
func parsedRev(t *testing.T, d *datadriven.TestData, v string) parsedRevision {
	switch v {
	case "future":
		return parsedRevision{err: fmt.Errorf("%w: %w: 99 > 9", ErrBadRevision, history.ErrFuture)}
	case "other":
		return parsedRevision{err: fmt.Errorf("%w: %q is not a revision of database %q (it may have been recreated)", ErrBadRevision, "x-1", "db")}
	case "down":
		return parsedRevision{err: errors.New("the history store did not answer")}
	}
	if seq, ok := strings.CutSuffix(v, ":gone"); ok {
		n := atoi(t, d, seq)
		return parsedRevision{rev: history.Revision{Seq: n},
			err: fmt.Errorf("%w: %w: %d < horizon", ErrBadRevision, history.ErrTooOld, n)}
	}
	return parsedRevision{rev: sizedRev(t, d, v)}
}

func sizedRev(t *testing.T, d *datadriven.TestData, v string) history.Revision {
	seq, size, _ := strings.Cut(v, "/")
	r := history.Revision{Seq: atoi(t, d, seq)}
	if size != "" {
		r.DBSize = uint32(atoi(t, d, size))
	}
	return r
}

func pageSet(t *testing.T, d *datadriven.TestData, vals []string) *roaring.Bitmap {
	bm := roaring.New()
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if lo, hi, ok := strings.Cut(v, "-"); ok {
			bm.AddRange(uint64(atoi(t, d, lo)), uint64(atoi(t, d, hi))+1)
			continue
		}
		bm.Add(uint32(atoi(t, d, v)))
	}
	return bm
}

// pages prints a set as ranges: "pages 1-3 5", "page 4", "no page".
func pages(bm *roaring.Bitmap) string {
	switch bm.GetCardinality() {
	case 0:
		return "no page"
	case 1:
		return fmt.Sprintf("page %d", bm.Minimum())
	}
	var parts []string
	it := bm.Iterator()
	lo, hi := int64(-1), int64(-1)
	flush := func() {
		if lo < 0 {
			return
		}
		if lo == hi {
			parts = append(parts, strconv.FormatInt(lo, 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", lo, hi))
		}
	}
	for it.HasNext() {
		p := int64(it.Next())
		if p == hi+1 && lo >= 0 {
			hi = p
			continue
		}
		flush()
		lo, hi = p, p
	}
	flush()
	return "pages " + strings.Join(parts, " ")
}

func atoi(t *testing.T, d *datadriven.TestData, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", d.Pos, err)
	}
	return n
}
