package hrana

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestValueEncoding(t *testing.T) {
	for _, tc := range []struct {
		v    Value
		json string
	}{
		{Null(), `{"type":"null"}`},
		{Integer(42), `{"type":"integer","value":"42"}`},
		{Integer(math.MinInt64), `{"type":"integer","value":"-9223372036854775808"}`},
		{Integer(math.MaxInt64), `{"type":"integer","value":"9223372036854775807"}`},
		{Float(1.5), `{"type":"float","value":1.5}`},
		{Float(0.1), `{"type":"float","value":0.1}`},
		{Float(1e308), `{"type":"float","value":1e+308}`},
		{Float(math.MaxFloat64), `{"type":"float","value":1.7976931348623157e+308}`},
		{Float(math.SmallestNonzeroFloat64), `{"type":"float","value":5e-324}`},
		{Float(math.Copysign(0, -1)), `{"type":"float","value":-0}`},
		{Text("s"), `{"type":"text","value":"s"}`},
		{Text("héllo, 世界 🌍 \x00 \u2028 \"q\""), `{"type":"text","value":"héllo, 世界 🌍 \u0000 \u2028 \"q\""}`},
		{Text(""), `{"type":"text","value":""}`},
		{Blob([]byte{1, 2, 3}), `{"type":"blob","base64":"AQID"}`},
		{Blob([]byte{1, 2}), `{"type":"blob","base64":"AQI"}`},
		{Blob([]byte{}), `{"type":"blob","base64":""}`},
	} {
		got, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatalf("marshal %v: %v", tc.v, err)
		}
		if string(got) != tc.json {
			t.Errorf("marshal %v = %s, want %s", tc.v, got, tc.json)
		}
		var back Value
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", got, err)
		}
		if !sameValue(back, tc.v) {
			t.Errorf("round trip of %s gave %v", got, back)
		}
	}
}

// sameValue compares payloads exactly, telling -0.0 from 0.0.
func sameValue(a, b Value) bool {
	if fa, ok := a.V.(float64); ok {
		fb, ok := b.V.(float64)
		return ok && math.Float64bits(fa) == math.Float64bits(fb)
	}
	return reflect.DeepEqual(a, b)
}

func TestValueDecodeLenient(t *testing.T) {
	for _, tc := range []struct {
		json string
		want Value
	}{
		{`{"type":"integer","value":42}`, Integer(42)},
		{`{"type":"integer","value":-9223372036854775808}`, Integer(math.MinInt64)},
		{`{"type":"integer","value":9223372036854775807}`, Integer(math.MaxInt64)},
		{`{"type":"integer","value":1e3}`, Integer(1000)},
		{`{"type":"integer","value":7.0}`, Integer(7)},
		{`{"type":"integer","value":-0}`, Integer(0)},
		{`{"type":"integer","value":0.0e5}`, Integer(0)},
		{`{"type":"integer","value":92233720368547758.07e2}`, Integer(math.MaxInt64)},
		{`{"type":"integer","value":"+5"}`, Integer(5)},
		{`{"type":"float","value":1}`, Float(1)},
		{`{"value":"x","type":"text"}`, Text("x")},
		{`{"type":"blob","base64":"AQI="}`, Blob([]byte{1, 2})},
		{`{"type":"blob","base64":"AQ=="}`, Blob([]byte{1})},
		{`{"type":"null","value":"ignored"}`, Null()},
		{`{"type":"text","value":"\ud83c\udf0d"}`, Text("🌍")},
	} {
		var v Value
		if err := json.Unmarshal([]byte(tc.json), &v); err != nil {
			t.Errorf("unmarshal %s: %v", tc.json, err)
		} else if !sameValue(v, tc.want) {
			t.Errorf("unmarshal %s = %v, want %v", tc.json, v, tc.want)
		}
	}
}

func TestValueDecodeErrors(t *testing.T) {
	for _, in := range []string{
		`{"type":"bigint","value":"1"}`,
		`{"value":"1"}`,
		`{"type":"integer"}`,
		`{"type":"integer","value":null}`,
		`{"type":"integer","value":"1.5"}`,
		`{"type":"integer","value":"abc"}`,
		`{"type":"integer","value":"9223372036854775808"}`,
		`{"type":"integer","value":9223372036854775808}`,
		`{"type":"integer","value":7.5}`,
		`{"type":"integer","value":1e19}`,
		`{"type":"integer","value":1.0000000000000001}`,
		`{"type":"integer","value":1e999999999999}`,
		`{"type":"integer","value":true}`,
		`{"type":"float","value":"1.5"}`,
		`{"type":"float","value":1e999}`,
		`{"type":"float"}`,
		`{"type":"text","value":5}`,
		`{"type":"text"}`,
		`{"type":"blob"}`,
		`{"type":"blob","base64":"!!"}`,
		`{"type":"blob","base64":"AQIDB"}`,
		`{"type":"blob","value":"AQID"}`,
		`"text"`,
		`null`,
		`[]`,
	} {
		var v Value
		err := json.Unmarshal([]byte(in), &v)
		if err == nil {
			t.Errorf("unmarshal %s: no error, got %v", in, v)
		} else if !errors.Is(err, ErrBadValue) || !errors.Is(err, ErrInvalid) {
			t.Errorf("unmarshal %s: error %v does not wrap ErrBadValue", in, err)
		}
	}
}

func TestValueEncodeErrors(t *testing.T) {
	for _, v := range []Value{
		Float(math.NaN()), Float(math.Inf(1)), Float(math.Inf(-1)),
		{V: 42}, {V: int32(1)}, {V: true}, {V: []int64{1}},
	} {
		if b, err := json.Marshal(v); err == nil || !errors.Is(err, ErrBadValue) {
			t.Errorf("marshal %#v = %s, %v; want ErrBadValue", v.V, b, err)
		}
	}
}

func TestLargeBlob(t *testing.T) {
	blob := make([]byte, 300<<10)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	b, err := json.Marshal(Blob(blob))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("=")) {
		t.Fatal("blob encoding is padded")
	}
	var v Value
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.V.([]byte), blob) {
		t.Fatal("300 KB blob changed in round trip")
	}
	// Large text, too, survives escaping.
	text := strings.Repeat("ü\"\\\n", 100<<10)
	b, err = json.Marshal(Text(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil || v.V != text {
		t.Fatalf("large text round trip: %v", err)
	}
}

var quickValueSeeds = []string{
	`{"type":"null"}`, `{"type":"integer","value":"42"}`, `{"type":"integer","value":"-9223372036854775808"}`,
	`{"type":"integer","value":"9223372036854775808"}`, `{"type":"integer","value":"+5"}`, `{"type":"integer","value":"-"}`,
	`{"type":"integer","value":""}`, `{"type":"integer","value":"0x10"}`, `{"type":"integer","value":7}`,
	`{"type":"text","value":"héllo"}`, `{"type":"text","value":""}`, `{"type":"text","value":"a\"b"}`,
	`{"type":"text","value":"a\\u00e9"}`, "{\"type\":\"text\",\"value\":\"\xff\xfe\"}", "{\"type\":\"text\",\"value\":\"a\nb\"}",
	`{"type":"text","value":"x","value":"y"}`, `{"type":"text","value":5}`, `{"type": "text","value":"x"}`,
	`{"type":"blob","base64":"AQID"}`, `{"type":"blob","base64":"AQI="}`, `{"type":"blob","base64":""}`,
	`{"type":"blob","base64":"A"}`, `{"type":"blob","base64":"AQ=="}`, `{"type":"blob","base64":"!!!!"}`,
	`{"type":"float","value":1.5}`, `{"type":"float","value":-0}`, `{"type":"float","value":1e400}`,
	`{"type":"float","value":01}`, `{"type":"float","value":1.}`, `{"type":"float","value":.5}`, `{"type":"float","value":"1"}`,
	`{"type":"float","value":2E-3}`, `{"type":"float","value":-1e+2}`, `{"type":"bogus"}`, `{"type":"null","value":1}`,
	`{"type":"integer","value":"1"`, `{"type":"integer","value":"1"}x`,
}

// quickValue agrees with decoding through encoding/json wherever it
// decodes: same value, same Go type, and no input it takes that the other
// refuses.
func TestQuickValueAgrees(t *testing.T) {
	for _, s := range quickValueSeeds {
		checkQuickValue(t, []byte(s))
	}
}

func FuzzQuickValue(f *testing.F) {
	for _, s := range quickValueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkQuickValue)
}

func checkQuickValue(t *testing.T, b []byte) {
	quick, ok := quickValue(b)
	if !ok {
		return
	}
	var slow Value
	if err := slow.decode(b); err != nil {
		t.Fatalf("%q: quick decodes %#v, encoding/json refuses: %v", b, quick, err)
	}
	if fmt.Sprintf("%T %#v", quick, quick) != fmt.Sprintf("%T %#v", slow.V, slow.V) {
		t.Fatalf("%q: quick decodes %T %#v, encoding/json %T %#v", b, quick, quick, slow.V, slow.V)
	}
	if f, isF := quick.(float64); isF && math.Signbit(f) != math.Signbit(slow.V.(float64)) {
		t.Fatalf("%q: sign of zero differs", b)
	}
}
