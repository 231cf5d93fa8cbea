package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/RoaringBitmap/roaring/v2"
)

// ErrBadSelector is wrapped by every DecodeSelector error.
var ErrBadSelector = errors.New("wire: malformed page selector")

// Constants of the RoaringBitmap portable format
// (https://github.com/RoaringBitmap/RoaringFormatSpec).
const (
	cookieNoRuns     = 12346 // u32 cookie, u32 container count, always offsets
	cookieRuns       = 12347 // low u16 of the cookie; high u16 = count-1
	noOffsetMinCount = 4     // with cookieRuns, offsets only from 4 containers
	maxArrayCard     = 4096  // above this a non-run container is a bitmap
	bitmapBytes      = 8192
)

// EncodeSelector serializes a page selector in the RoaringBitmap portable
// format. A nil bitmap encodes as no bytes, which means "all pages"; an
// empty non-nil bitmap encodes as an 8-byte bitmap selecting nothing.
//
// The output never contains run containers: it always uses the no-run
// cookie (12346), the form the Rust client writes (the captured traffic
// shows it) and that every implementation reads.
func EncodeSelector(bm *roaring.Bitmap) ([]byte, error) {
	if bm == nil {
		return nil, nil
	}
	if !bm.HasRunCompression() {
		return bm.ToBytes()
	}
	// The library would write run containers with cookie 12347, and it
	// has no public way to expand them (re-adding values turns full
	// containers back into runs), so this case is serialized here.
	return encodeNoRuns(bm), nil
}

// encodeNoRuns serializes bm using array containers (at most 4096 values)
// and bitmap containers only.
func encodeNoRuns(bm *roaring.Bitmap) []byte {
	type container struct {
		key  uint16
		vals []uint16
	}
	var cs []container
	it := bm.ManyIterator()
	buf := make([]uint32, 4096)
	for n := it.NextMany(buf); n > 0; n = it.NextMany(buf) {
		for _, v := range buf[:n] {
			if len(cs) == 0 || cs[len(cs)-1].key != uint16(v>>16) {
				cs = append(cs, container{key: uint16(v >> 16)})
			}
			c := &cs[len(cs)-1]
			c.vals = append(c.vals, uint16(v))
		}
	}
	le := binary.LittleEndian
	out := le.AppendUint32(nil, cookieNoRuns)
	out = le.AppendUint32(out, uint32(len(cs)))
	for _, c := range cs {
		out = le.AppendUint16(out, c.key)
		out = le.AppendUint16(out, uint16(len(c.vals)-1))
	}
	off := len(out) + 4*len(cs)
	for _, c := range cs {
		out = le.AppendUint32(out, uint32(off))
		off += min(2*len(c.vals), bitmapBytes)
	}
	for _, c := range cs {
		if len(c.vals) <= maxArrayCard {
			for _, v := range c.vals {
				out = le.AppendUint16(out, v)
			}
			continue
		}
		var words [bitmapBytes / 8]uint64
		for _, v := range c.vals {
			words[v/64] |= 1 << (v % 64)
		}
		for _, w := range words {
			out = le.AppendUint64(out, w)
		}
	}
	return out
}

// SelectorRange returns a bitmap of the page ids in [from, to); it is
// empty if to <= from.
func SelectorRange(from, to uint32) *roaring.Bitmap {
	bm := roaring.New()
	if to > from {
		bm.AddRange(uint64(from), uint64(to))
	}
	return bm
}

// DecodeSelector parses a page selector. Empty input yields a nil bitmap,
// meaning "all pages". Both portable-format cookies are accepted. The input
// must be exactly one well-formed bitmap; errors wrap ErrBadSelector.
func DecodeSelector(b []byte) (bm *roaring.Bitmap, err error) {
	if len(b) == 0 {
		return nil, nil
	}
	// The roaring library trusts much of its input (it skips offsets and
	// only validates on request, and run validation is quadratic), so the
	// whole structure is checked here in one linear pass first.
	if err := checkSelector(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSelector, err)
	}
	defer func() {
		if r := recover(); r != nil {
			bm, err = nil, fmt.Errorf("%w: %v", ErrBadSelector, r)
		}
	}()
	bm = roaring.New()
	n, err := bm.ReadFrom(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSelector, err)
	}
	if n != int64(len(b)) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadSelector, int64(len(b))-n)
	}
	return bm, nil
}

// checkSelector validates a serialized bitmap: header, strictly increasing
// keys, offsets, container contents consistent with the declared
// cardinalities, and no trailing bytes.
func checkSelector(b []byte) error {
	r := byteReader{b: b}
	cookie, ok := r.u32()
	if !ok {
		return errors.New("short cookie")
	}
	var count int
	var runFlags []byte
	switch {
	case cookie == cookieNoRuns:
		c, ok := r.u32()
		if !ok {
			return errors.New("short container count")
		}
		if c > 1<<16 {
			return fmt.Errorf("%d containers", c)
		}
		count = int(c)
	case cookie&0xffff == cookieRuns:
		count = int(cookie>>16) + 1
		if runFlags, ok = r.next((count + 7) / 8); !ok {
			return errors.New("short run flags")
		}
	default:
		return fmt.Errorf("unknown cookie %#x", cookie)
	}
	header, ok := r.next(4 * count)
	if !ok {
		return errors.New("short descriptive header")
	}
	var offsets []byte
	if runFlags == nil || count >= noOffsetMinCount {
		if offsets, ok = r.next(4 * count); !ok {
			return errors.New("short offset header")
		}
	}
	for i := range count {
		key := binary.LittleEndian.Uint16(header[4*i:])
		card := int(binary.LittleEndian.Uint16(header[4*i+2:])) + 1
		if i > 0 && key <= binary.LittleEndian.Uint16(header[4*i-4:]) {
			return fmt.Errorf("container %d: key %d out of order", i, key)
		}
		if offsets != nil && binary.LittleEndian.Uint32(offsets[4*i:]) != uint32(r.off) {
			return fmt.Errorf("container %d: offset %d, want %d", i, binary.LittleEndian.Uint32(offsets[4*i:]), r.off)
		}
		var err error
		switch {
		case runFlags != nil && runFlags[i/8]&(1<<(i%8)) != 0:
			err = checkRuns(&r, card)
		case card > maxArrayCard:
			err = checkBitmap(&r, card)
		default:
			err = checkArray(&r, card)
		}
		if err != nil {
			return fmt.Errorf("container %d: %v", i, err)
		}
	}
	if r.off != len(b) {
		return fmt.Errorf("%d trailing bytes", len(b)-r.off)
	}
	return nil
}

func checkArray(r *byteReader, card int) error {
	v, ok := r.next(2 * card)
	if !ok {
		return errors.New("short array container")
	}
	for i := 2; i < len(v); i += 2 {
		if binary.LittleEndian.Uint16(v[i:]) <= binary.LittleEndian.Uint16(v[i-2:]) {
			return errors.New("array values out of order")
		}
	}
	return nil
}

func checkBitmap(r *byteReader, card int) error {
	v, ok := r.next(bitmapBytes)
	if !ok {
		return errors.New("short bitmap container")
	}
	n := 0
	for i := 0; i < len(v); i += 8 {
		n += bits.OnesCount64(binary.LittleEndian.Uint64(v[i:]))
	}
	if n != card {
		return fmt.Errorf("bitmap has %d bits, header says %d", n, card)
	}
	return nil
}

func checkRuns(r *byteReader, card int) error {
	nb, ok := r.next(2)
	if !ok {
		return errors.New("short run count")
	}
	v, ok := r.next(4 * int(binary.LittleEndian.Uint16(nb)))
	if !ok {
		return errors.New("short run container")
	}
	if len(v) == 0 {
		return errors.New("run container without runs")
	}
	n, prevEnd := 0, -1
	for i := 0; i < len(v); i += 4 {
		start := int(binary.LittleEndian.Uint16(v[i:]))
		end := start + int(binary.LittleEndian.Uint16(v[i+2:]))
		if start <= prevEnd || end > 0xffff {
			return errors.New("runs overlap, are out of order or out of range")
		}
		n += end - start + 1
		prevEnd = end
	}
	if n != card {
		return fmt.Errorf("runs cover %d values, header says %d", n, card)
	}
	return nil
}

// byteReader is a bounds-checked cursor over a byte slice.
type byteReader struct {
	b   []byte
	off int
}

func (r *byteReader) next(n int) ([]byte, bool) {
	if n > len(r.b)-r.off {
		return nil, false
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v, true
}

func (r *byteReader) u32() (uint32, bool) {
	v, ok := r.next(4)
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint32(v), true
}
