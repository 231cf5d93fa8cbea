package change

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var (
	negZero    = math.Copysign(0, -1)
	edgeInts   = []int64{0, 1, -1, 63, 64, -64, -65, 127, 128, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1}
	edgeFloats = []float64{0, negZero, 1, -1, 0.1, 1e308, -1e-308, math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, math.Float64frombits(0x000fffffffffffff), // largest subnormal
		math.Inf(1), math.Inf(-1), math.NaN(), math.Float64frombits(0x7ff0000000000001), math.Float64frombits(0xfff8000000000123)}
	edgeStrings = []string{"", "a", "héllo 世界 🎉", "a\x00b", "\x00", "\xff\xfe invalid utf-8", `"quoted"`, strings.Repeat("long", 10000)}
)

// sameChange reports the first difference between want and got, comparing
// every encoded field exactly (nil versus empty slices, value types, float
// bits).
func sameChange(want, got Change) string {
	switch {
	case want.Op != got.Op:
		return "Op"
	case want.Table != got.Table:
		return "Table"
	case want.SQL != got.SQL:
		return "SQL"
	case want.RowidAlias != got.RowidAlias:
		return "RowidAlias"
	case want.OldRowid != got.OldRowid:
		return "OldRowid"
	case want.NewRowid != got.NewRowid:
		return "NewRowid"
	case (want.Columns == nil) != (got.Columns == nil) || len(want.Columns) != len(got.Columns):
		return "Columns nil-ness or length"
	case (want.PK == nil) != (got.PK == nil) || len(want.PK) != len(got.PK):
		return "PK nil-ness or length"
	}
	for i := range want.Columns {
		if want.Columns[i] != got.Columns[i] {
			return "Columns"
		}
	}
	for i := range want.PK {
		if want.PK[i] != got.PK[i] {
			return "PK"
		}
	}
	for _, p := range []struct {
		name string
		w, g []any
	}{{"Before", want.Before, got.Before}, {"After", want.After, got.After}} {
		if (p.w == nil) != (p.g == nil) || len(p.w) != len(p.g) {
			return p.name + " nil-ness or length"
		}
		for i := range p.w {
			if !sameValue(p.w[i], p.g[i]) {
				return p.name + " value"
			}
			if b, ok := p.g[i].([]byte); ok && b == nil {
				return p.name + " decoded a nil []byte"
			}
		}
	}
	return ""
}

func roundTrip(t *testing.T, c Change) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if d := sameChange(c, got); d != "" {
		t.Fatalf("round trip differs in %s:\nwant %#v\ngot  %#v", d, c, got)
	}
	b2, err := got.Encode()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs (%v)", err)
	}
	return b
}

func TestRoundTripEdgeValues(t *testing.T) {
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	var vals []any
	vals = append(vals, nil, []byte{}, "", big, []byte{0}, []byte{0xff, 0})
	for _, v := range edgeInts {
		vals = append(vals, v)
	}
	for _, v := range edgeFloats {
		vals = append(vals, v)
	}
	for _, v := range edgeStrings {
		vals = append(vals, v)
	}
	cols := make([]string, len(vals))
	for i := range cols {
		cols[i] = string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	after := append([]any(nil), vals...)
	for i, j := 0, len(after)-1; i < j; i, j = i+1, j-1 {
		after[i], after[j] = after[j], after[i]
	}
	c := Change{ID: 7, Txn: 3, Op: Update, Table: "t", Columns: cols, PK: []int{2, 0},
		OldRowid: math.MinInt64, NewRowid: math.MaxInt64, Before: vals, After: after}
	b := roundTrip(t, c)
	if got, _ := Decode(b); got.ID != 0 || got.Txn != 0 {
		t.Errorf("ID/Txn decoded as %d/%d, want 0/0 (not encoded)", got.ID, got.Txn)
	}

	// Each value alone, so that a mistake is easy to read.
	for i, v := range vals {
		roundTrip(t, Change{Op: Insert, Table: "t", Columns: []string{"v"}, After: []any{v}})
		_ = i
	}

	// Empty vs nil slices, every op, schema changes, odd names.
	for _, c := range []Change{
		{Op: Schema, Table: "t", SQL: `CREATE TABLE IF NOT EXISTS "t"(a)`},
		{Op: Schema},
		{Op: Delete, Table: "t", Columns: []string{}, PK: []int{}, Before: []any{}, After: []any{}},
		{Op: Delete, Table: "", Columns: []string{""}, PK: []int{-1, 1 << 40}, Before: []any{nil}},
		{Op: Insert, Table: "we\"ird tåble", Columns: []string{"order", "a b", "ü"}, PK: []int{0}, RowidAlias: true, NewRowid: -5, After: []any{int64(-5), "x", []byte("y")}},
	} {
		roundTrip(t, c)
	}
}

// A []byte(nil) value is an empty BLOB, not NULL.
func TestNilBlobIsEmptyBlob(t *testing.T) {
	c := Change{Op: Insert, Table: "t", Columns: []string{"b"}, After: []any{[]byte(nil)}}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got.After[0].([]byte); !ok || v == nil || len(v) != 0 {
		t.Fatalf("decoded %#v, want []byte{}", got.After[0])
	}
}

func randString(r *rand.Rand) string {
	switch r.IntN(4) {
	case 0:
		return edgeStrings[r.IntN(len(edgeStrings))]
	case 1:
		return ""
	default:
		var sb strings.Builder
		for range r.IntN(20) {
			switch r.IntN(4) {
			case 0:
				sb.WriteRune(rune(0x80 + r.IntN(0x10000-0x80)))
			case 1:
				sb.WriteByte(byte(r.IntN(256))) // possibly invalid UTF-8
			default:
				sb.WriteByte(byte('a' + r.IntN(26)))
			}
		}
		return sb.String()
	}
}

func randValue(r *rand.Rand) any {
	switch r.IntN(12) {
	case 0, 1:
		return nil
	case 2:
		return int64(r.Uint64())
	case 3:
		return int64(r.IntN(200) - 100)
	case 4:
		return edgeInts[r.IntN(len(edgeInts))]
	case 5:
		return math.Float64frombits(r.Uint64())
	case 6:
		return edgeFloats[r.IntN(len(edgeFloats))]
	case 7:
		return r.NormFloat64()
	case 8, 9:
		return randString(r)
	case 10:
		return []byte{}
	default:
		b := make([]byte, r.IntN(64))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
}

func randImage(r *rand.Rand, n int) []any {
	img := make([]any, n)
	for i := range img {
		img[i] = randValue(r)
	}
	return img
}

// randChange returns a random change; it need not pass Validate, since the
// encoding must carry any change exactly.
func randChange(r *rand.Rand) Change {
	c := Change{Op: Op(r.IntN(4) - 1), Table: randString(r), RowidAlias: r.IntN(2) == 0}
	if r.IntN(3) == 0 {
		c.SQL = randString(r)
	}
	if r.IntN(2) == 0 {
		c.OldRowid = int64(r.Uint64())
		c.NewRowid = edgeInts[r.IntN(len(edgeInts))]
	}
	n := r.IntN(8)
	if r.IntN(8) != 0 {
		c.Columns = make([]string, n)
		for i := range c.Columns {
			c.Columns[i] = randString(r)
		}
	}
	if r.IntN(4) != 0 {
		c.PK = []int{}
		for range r.IntN(4) {
			c.PK = append(c.PK, r.IntN(n+3)-1)
		}
	}
	if r.IntN(3) != 0 {
		c.Before = randImage(r, n)
	}
	if r.IntN(3) != 0 {
		c.After = randImage(r, n)
	}
	return c
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		c := randChange(r)
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("#%d Encode: %v", i, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("#%d Decode: %v", i, err)
		}
		if d := sameChange(c, got); d != "" {
			t.Fatalf("#%d: round trip differs in %s:\nwant %#v\ngot  %#v", i, d, c, got)
		}
		if b2, _ := got.Encode(); !bytes.Equal(b, b2) {
			t.Fatalf("#%d: re-encoding differs", i)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, v := range []any{1, int32(1), uint64(1), uint8(1), true, float32(1), time.Now(), new(string), []any{}, map[string]int{}, struct{}{}} {
		for _, c := range []Change{
			{Op: Insert, Table: "t", Columns: []string{"a"}, After: []any{v}},
			{Op: Delete, Table: "t", Columns: []string{"a"}, Before: []any{v}},
		} {
			_, err := c.Encode()
			if err == nil || !strings.Contains(err.Error(), "unsupported value type") {
				t.Errorf("%T: got %v, want an unsupported value type error", v, err)
			}
		}
	}
	for _, op := range []Op{-2, 3, 127} {
		c := Change{Op: op, Table: "t"}
		if _, err := c.Encode(); err == nil {
			t.Errorf("op %d encoded", op)
		}
	}
}

// TestEncodingLayout pins format version 1.
func TestEncodingLayout(t *testing.T) {
	c := Change{Op: Update, Table: "t", Columns: []string{"id", "v"}, PK: []int{0}, RowidAlias: true,
		OldRowid: 1, NewRowid: -1, Before: []any{int64(1), nil}, After: []any{int64(1), 1.5}}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "01" + "00" + "1f" + // version, op, flags (alias|columns|pk|before|after)
		"0174" + "00" + "02" + "01" + // table "t", sql "", rowids 1 and -1 (zig-zag)
		"02" + "026964" + "0176" + // columns
		"01" + "00" + // pk [0]
		"02" + "0102" + "00" + // before: INTEGER 1, NULL
		"02" + "0102" + "02000000000000f83f" // after: INTEGER 1, REAL 1.5
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("layout\ngot  %s\nwant %s", got, want)
	}
	c = Change{Op: Delete, Table: "t", Columns: []string{}, Before: []any{"", []byte{}}}
	b, _ = c.Encode()
	if got, want := hex.EncodeToString(b), "01ff0a"+"0174"+"00"+"00"+"00"+"00"+"02"+"0300"+"0400"; got != want {
		t.Errorf("layout\ngot  %s\nwant %s", got, want)
	}
}

func mustDecodeFail(t *testing.T, b []byte, what string) {
	t.Helper()
	_, err := Decode(b)
	if err == nil {
		t.Fatalf("%s: Decode(%x) succeeded", what, b)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: error %v does not wrap ErrCorrupt", what, err)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		c := randChange(r)
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		// Every proper prefix is truncated, hence an error.
		for n := range len(b) {
			if len(b) < 4096 || n < 512 || n > len(b)-512 || n%97 == 0 {
				mustDecodeFail(t, b[:n], "prefix")
			}
		}
		mustDecodeFail(t, append(append([]byte(nil), b...), 0), "trailing byte")
		// Bit flips and random bytes must not panic; whatever decodes must
		// re-encode to the same bytes (the encoding is canonical).
		for range 20 {
			m := append([]byte(nil), b...)
			m[r.IntN(len(m))] ^= byte(1 << r.IntN(8))
			checkDecode(t, m)
		}
		_ = i
	}
	for range 2000 {
		g := make([]byte, r.IntN(40))
		for i := range g {
			g[i] = byte(r.Uint32())
		}
		if len(g) > 0 && r.IntN(2) == 0 {
			g[0] = Version
		}
		checkDecode(t, g)
	}

	valid := func(tail string) []byte {
		b, _ := hex.DecodeString("01" + "01" + "10" + "0174" + "00" + "00" + "00" + tail)
		return b
	}
	if _, err := Decode(valid("01" + "00")); err != nil { // after: [NULL]
		t.Fatalf("baseline: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":              nil,
		"version 0":          {0, 1, 0, 0, 0, 0, 0},
		"version 2":          {2, 1, 0, 0, 0, 0, 0},
		"op 3":               {1, 3, 0, 0, 0, 0, 0},
		"op -2":              {1, 0xfe, 0, 0, 0, 0, 0},
		"unknown flag":       {1, 1, 0x40, 0, 0, 0, 0},
		"non-minimal varint": valid("8100" + "00"),
		"non-minimal int":    valid("01" + "018000"),
		"varint overflow":    valid("01" + "01ffffffffffffffffff02"),
		"11-byte varint":     valid("01" + "01ffffffffffffffffff8001"),
		"unknown tag":        valid("01" + "05"),
		"short float":        valid("01" + "020000"),
		"text too long":      valid("01" + "0305616263"),
		"blob too long":      valid("01" + "04ffffffff0f00"),
		"count too large":    valid("ffffffff0f"),
		"count > remaining":  valid("03" + "00"),
		"huge string length": {1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		mustDecodeFail(t, b, name)
	}
}

// checkDecode: Decode must not panic, and anything it accepts must
// re-encode to exactly b.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	c, err := Decode(b)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Decode(%x): error %v does not wrap ErrCorrupt", b, err)
		}
		return
	}
	b2, err := c.Encode()
	if err != nil {
		t.Fatalf("Decode(%x) gave a change that does not encode: %v", b, err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("Decode(%x) re-encodes as %x", b, b2)
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		c := randChange(r)
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

func BenchmarkEncode(b *testing.B) {
	c := Change{Op: Update, Table: "items", Columns: []string{"id", "name", "price", "data"}, PK: []int{0}, RowidAlias: true,
		OldRowid: 42, NewRowid: 42, Before: []any{int64(42), "widget", 9.99, []byte("0123456789")}, After: []any{int64(42), "widget", 10.49, []byte("0123456789")}}
	for b.Loop() {
		if _, err := c.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	c := Change{Op: Update, Table: "items", Columns: []string{"id", "name", "price", "data"}, PK: []int{0}, RowidAlias: true,
		OldRowid: 42, NewRowid: 42, Before: []any{int64(42), "widget", 9.99, []byte("0123456789")}, After: []any{int64(42), "widget", 10.49, []byte("0123456789")}}
	enc, _ := c.Encode()
	for b.Loop() {
		if _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}
