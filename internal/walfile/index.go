package walfile

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
)

// Index records which frames hold which pages, so that a page can be read
// "as of" a frame watermark W: its content then is the frame with the highest
// Index ≤ W that holds the page, or the database file if there is none.
// Build it from committed frames (from a Scanner or ReadAll) of one WAL
// generation; a watermark is meaningful at commit frames. Lookups cost
// O(log n). Methods other than Add may be called concurrently with each other.
type Index struct {
	frames  []Frame          // ascending by Frame.Index
	byPage  map[uint32][]int // per page: positions in frames, ascending
	commits []int            // positions in frames of commit frames
}

// BuildIndex returns an Index of frames. The frames need not be sorted; if
// two share an Index the later one in the slice is kept.
func BuildIndex(frames []Frame) *Index {
	x := &Index{byPage: make(map[uint32][]int)}
	sorted := slices.IsSortedFunc(frames, func(a, b Frame) int { return cmp.Compare(a.Index, b.Index) })
	if !sorted || hasDupIndex(frames) {
		fs := slices.Clone(frames)
		slices.SortStableFunc(fs, func(a, b Frame) int { return cmp.Compare(a.Index, b.Index) })
		// Keep the last of each run of equal Index.
		out := fs[:0]
		for i, f := range fs {
			if i+1 < len(fs) && fs[i+1].Index == f.Index {
				continue
			}
			out = append(out, f)
		}
		frames = out
	}
	x.frames = make([]Frame, 0, len(frames))
	for _, f := range frames {
		x.add(f)
	}
	return x
}

func hasDupIndex(sorted []Frame) bool {
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Index == sorted[i-1].Index {
			return true
		}
	}
	return false
}

// Add appends frames, which must continue the Index in ascending order of
// Frame.Index (as successive Scanner transactions do).
func (x *Index) Add(frames ...Frame) error {
	last := x.Last()
	for _, f := range frames {
		if f.Index <= last {
			return fmt.Errorf("walfile: Index.Add: frame %d does not follow frame %d", f.Index, last)
		}
		last = f.Index
	}
	if x.byPage == nil {
		x.byPage = make(map[uint32][]int)
	}
	for _, f := range frames {
		x.add(f)
	}
	return nil
}

func (x *Index) add(f Frame) {
	p := len(x.frames)
	x.frames = append(x.frames, f)
	x.byPage[f.Pgno] = append(x.byPage[f.Pgno], p)
	if f.IsCommit() {
		x.commits = append(x.commits, p)
	}
}

// Len returns the number of frames in the Index.
func (x *Index) Len() int { return len(x.frames) }

// Last returns the highest frame Index held, or 0 if the Index is empty.
func (x *Index) Last() int {
	if len(x.frames) == 0 {
		return 0
	}
	return x.frames[len(x.frames)-1].Index
}

// Lookup returns the frame with the highest Index ≤ upTo that holds page
// pgno. ok is false if no such frame exists (the page's content as of upTo
// is then the database file's).
func (x *Index) Lookup(pgno uint32, upTo int) (f Frame, ok bool) {
	ps := x.byPage[pgno]
	// Number of positions whose frame Index is ≤ upTo.
	n := sort.Search(len(ps), func(i int) bool { return x.frames[ps[i]].Index > upTo })
	if n == 0 {
		return Frame{}, false
	}
	return x.frames[ps[n-1]], true
}

// DBSize returns the database size in pages recorded by the last commit
// frame with Index ≤ upTo; ok is false if there is none.
func (x *Index) DBSize(upTo int) (size uint32, ok bool) {
	n := sort.Search(len(x.commits), func(i int) bool { return x.frames[x.commits[i]].Index > upTo })
	if n == 0 {
		return 0, false
	}
	return x.frames[x.commits[n-1]].DBSize, true
}

// ChangedAfter returns the distinct page numbers, ascending, held by frames
// with Index > w. Pages cut off by a commit that shrank the database are not
// included unless a frame wrote them; compare DBSize values for that.
func (x *Index) ChangedAfter(w int) []uint32 {
	p := sort.Search(len(x.frames), func(i int) bool { return x.frames[i].Index > w })
	seen := make(map[uint32]struct{})
	var out []uint32
	for _, f := range x.frames[p:] {
		if _, ok := seen[f.Pgno]; !ok {
			seen[f.Pgno] = struct{}{}
			out = append(out, f.Pgno)
		}
	}
	slices.Sort(out)
	return out
}
