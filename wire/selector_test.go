package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// Selectors the real client sent (turso-js-client.md §3.1).
var capturedSelectors = []struct {
	name string
	hex  string
	ids  []uint32
}{
	{"prefix 8192", "3a300000 01000000 0000 0100 10000000 0000 0100", []uint32{0, 1}},
	{"prefix 4096", "3a300000 01000000 0000 0000 10000000 0000", []uint32{0}},
	{"lazy load", "3a300000 01000000 0000 0000 10000000 0200", []uint32{2}},
	{"segment 64k", "3a300000 01000000 0000 0f00 10000000 " +
		"0000 0100 0200 0300 0400 0500 0600 0700 0800 0900 0a00 0b00 0c00 0d00 0e00 0f00", rangeIDs(0, 16)},
}

func rangeIDs(from, to uint32) []uint32 {
	var ids []uint32
	for i := from; i < to; i++ {
		ids = append(ids, i)
	}
	return ids
}

func evenIDs(from, to uint32) []uint32 {
	var ids []uint32
	for i := from; i < to; i += 2 {
		ids = append(ids, i)
	}
	return ids
}

func TestCapturedSelectors(t *testing.T) {
	for _, tc := range capturedSelectors {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.hex)
			bm, err := DecodeSelector(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := bm.ToArray(); !slices.Equal(got, tc.ids) {
				t.Fatalf("decoded %v, want %v", got, tc.ids)
			}
			// SelectorRange builds run containers; the encoder must still
			// produce the client's no-run bytes.
			enc, err := EncodeSelector(SelectorRange(tc.ids[0], tc.ids[len(tc.ids)-1]+1))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, b) {
				t.Fatalf("encoded %x, want %x", enc, b)
			}
		})
	}
}

// The prefetch selector {3..107}: 105 ids in one array container.
func TestSelectorPrefetchRange(t *testing.T) {
	b, err := EncodeSelector(SelectorRange(3, 108))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 16+2*105 || binary.LittleEndian.Uint16(b[10:]) != 104 {
		t.Fatalf("encoded %x", b)
	}
	bm, err := DecodeSelector(b)
	if err != nil || bm.GetCardinality() != 105 || !bm.Contains(3) || !bm.Contains(107) || bm.Contains(108) {
		t.Fatalf("decoded %v, %v", bm, err)
	}
}

func TestSelectorRoundTrips(t *testing.T) {
	many := roaring.New()
	for i := uint32(0); i < 300000; i += 3 {
		many.Add(i)
	}
	for _, tc := range []struct {
		name string
		bm   *roaring.Bitmap
	}{
		{"empty", roaring.New()},
		{"bitmap container", SelectorRange(0, 5000)},
		{"several containers", SelectorRange(65000, 200000)},
		{"sparse", roaring.BitmapOf(1, 70000, 1<<31, 1<<32-1)},
		{"many", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeSelector(tc.bm)
			if err != nil {
				t.Fatal(err)
			}
			if binary.LittleEndian.Uint32(b) != cookieNoRuns {
				t.Fatalf("cookie %x, want the no-run cookie", b[:4])
			}
			back, err := DecodeSelector(b)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Equals(tc.bm) {
				t.Fatalf("round trip changed the bitmap")
			}
		})
	}
}

// Bitmaps written with run containers (cookie 12347), as Go and C
// libraries do after RunOptimize, must decode too.
func TestDecodeRunSelector(t *testing.T) {
	for _, bm := range []*roaring.Bitmap{
		SelectorRange(10, 20),                            // < 4 containers: no offsets
		roaring.BitmapOf(1, 2, 3, 1<<16, 2<<16, 3<<16+5), // 4 containers: offsets
	} {
		bm.AddRange(5<<16, 6<<16)
		bm.RunOptimize()
		b, err := bm.ToBytes()
		if err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint16(b) != cookieRuns {
			t.Fatalf("test bitmap has no runs: %x", b[:4])
		}
		back, err := DecodeSelector(b)
		if err != nil {
			t.Fatal(err)
		}
		if !back.Equals(bm) {
			t.Fatal("run bitmap changed in decoding")
		}
	}
}

func TestDecodeSelectorEmpty(t *testing.T) {
	bm, err := DecodeSelector(nil)
	if bm != nil || err != nil {
		t.Fatalf("DecodeSelector(nil) = %v, %v; want nil (all pages)", bm, err)
	}
	b, err := EncodeSelector(nil)
	if b != nil || err != nil {
		t.Fatalf("EncodeSelector(nil) = %x, %v", b, err)
	}
	if bm := SelectorRange(5, 5); !bm.IsEmpty() {
		t.Fatal("SelectorRange(5, 5) not empty")
	}
}

func TestDecodeSelectorErrors(t *testing.T) {
	bitmap := func(card uint16, words map[int]uint64) string {
		b := unhex(t, "3a300000 01000000 0000")
		b = binary.LittleEndian.AppendUint16(b, card-1)
		b = binary.LittleEndian.AppendUint32(b, 16)
		bits := make([]byte, bitmapBytes)
		for i, w := range words {
			binary.LittleEndian.PutUint64(bits[8*i:], w)
		}
		return string(append(b, bits...))
	}
	full := make(map[int]uint64)
	for i := range 65 {
		full[i] = ^uint64(0)
	}
	for _, tc := range []struct{ name, in string }{
		{"short cookie", "3a30"},
		{"bad cookie", "\x3a\x31\x00\x00\x00\x00\x00\x00"},
		{"no count", "\x3a\x30\x00\x00"},
		{"too many containers", "\x3a\x30\x00\x00\x01\x00\x01\x00"},
		{"short header", "\x3a\x30\x00\x00\x01\x00\x00\x00\x00"},
		{"short array", string(unhex(t, "3a300000 01000000 0000 0100 10000000 0000"))},
		{"trailing bytes", string(unhex(t, "3a300000 01000000 0000 0000 10000000 0000 ff"))},
		{"unsorted array", string(unhex(t, "3a300000 01000000 0000 0100 10000000 0100 0000"))},
		{"duplicate array", string(unhex(t, "3a300000 01000000 0000 0100 10000000 0100 0100"))},
		{"bad offset", string(unhex(t, "3a300000 01000000 0000 0000 11000000 0000"))},
		{"unsorted keys", string(unhex(t, "3a300000 02000000 0100 0000 0000 0000 18000000 1a000000 0000 0000"))},
		{"bitmap card mismatch", bitmap(4097, full)},
		{"run overlap", string(unhex(t, "3b300000 01 0000 0900 0200 0000 0400 0200 0400"))},
		{"run out of range", string(unhex(t, "3b300000 01 0000 0100 0100 ffff 0100"))},
		{"run card mismatch", string(unhex(t, "3b300000 01 0000 0500 0100 0000 0300"))},
		{"no runs", string(unhex(t, "3b300000 01 0000 0000 0000"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bm, err := DecodeSelector([]byte(tc.in))
			if !errors.Is(err, ErrBadSelector) || bm != nil {
				t.Fatalf("DecodeSelector = %v, %v; want ErrBadSelector", bm, err)
			}
		})
	}
	// Sanity check of the helper: the well-formed variant decodes.
	okBits := make(map[int]uint64)
	for i := range 64 {
		okBits[i] = ^uint64(0)
	}
	okBits[64] = 1
	if _, err := DecodeSelector([]byte(bitmap(4097, okBits))); err != nil {
		t.Fatalf("valid bitmap container rejected: %v", err)
	}
}

func FuzzDecodeSelector(f *testing.F) {
	for _, tc := range capturedSelectors {
		f.Add(unhex(f, tc.hex))
	}
	run, _ := roaring.BitmapOf(1, 2, 3, 70000, 70001, 140000, 1<<20).ToBytes()
	f.Add(run)
	f.Add([]byte{})
	f.Add([]byte("\x3b\x30\x03\x00\x07"))
	f.Fuzz(func(t *testing.T, b []byte) {
		bm, err := DecodeSelector(b)
		if err != nil {
			if !errors.Is(err, ErrBadSelector) {
				t.Fatalf("error %v does not wrap ErrBadSelector", err)
			}
			return
		}
		if bm == nil {
			if len(b) != 0 {
				t.Fatal("nil bitmap for non-empty input")
			}
			return
		}
		// Whatever we accept must be a bitmap the library considers sound.
		if err := bm.Validate(); err != nil {
			t.Fatalf("accepted an invalid bitmap: %v", err)
		}
		enc, err := EncodeSelector(bm)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeSelector(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !back.Equals(bm) || back.GetCardinality() != bm.GetCardinality() {
			t.Fatal("round trip changed the bitmap")
		}
	})
}

// encodeNoRuns must agree byte for byte with the library wherever the
// library writes no runs.
func TestEncodeNoRunsMatchesLibrary(t *testing.T) {
	for _, bm := range []*roaring.Bitmap{
		roaring.New(),
		roaring.BitmapOf(0, 1, 2, 70000, 1<<31),
		roaring.BitmapOf(rangeIDs(0, 5000)...),
		roaring.BitmapOf(evenIDs(60000, 200000)...), // bitmap containers
	} {
		want, err := bm.ToBytes()
		if err != nil {
			t.Fatal(err)
		}
		if bm.HasRunCompression() {
			t.Fatal("test bitmap has runs")
		}
		if got := encodeNoRuns(bm); !bytes.Equal(got, want) {
			t.Fatalf("encodeNoRuns differs from the library for %v", bm)
		}
	}
}
