package hrana

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Value is one SQL value. V is exactly one of nil (NULL), int64, float64,
// string or []byte; any other payload fails to marshal.
//
// On the wire: {"type":"null"}, {"type":"integer","value":"42"} (a decimal
// string, so that 64-bit integers survive JSON parsers that use doubles),
// {"type":"float","value":1.5}, {"type":"text","value":"s"} and
// {"type":"blob","base64":"AQID"} (standard alphabet, unpadded).
type Value struct{ V any }

// Constructors for each SQL type.
func Null() Value              { return Value{} }
func Integer(v int64) Value    { return Value{v} }
func Float(v float64) Value    { return Value{v} }
func Text(v string) Value      { return Value{v} }
func Blob(v []byte) Value      { return Value{v} }
func (v Value) IsNull() bool   { return v.V == nil }
func (v Value) String() string { return fmt.Sprintf("%#v", v.V) }

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) {
	switch x := v.V.(type) {
	case nil:
		return []byte(`{"type":"null"}`), nil
	case int64:
		b := append([]byte(`{"type":"integer","value":"`), strconv.FormatInt(x, 10)...)
		return append(b, `"}`...), nil
	case float64:
		// JSON has no NaN or infinities; failing beats sending a value
		// the peer would read back as something else.
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%w: non-finite float %v", ErrBadValue, x)
		}
		f, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		b := append([]byte(`{"type":"float","value":`), f...)
		return append(b, '}'), nil
	case string:
		s, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		b := append([]byte(`{"type":"text","value":`), s...)
		return append(b, '}'), nil
	case []byte:
		b := make([]byte, 0, len(`{"type":"blob","base64":""}`)+base64.RawStdEncoding.EncodedLen(len(x)))
		b = append(b, `{"type":"blob","base64":"`...)
		b = base64.RawStdEncoding.AppendEncode(b, x)
		return append(b, `"}`...), nil
	default:
		return nil, fmt.Errorf("%w: unsupported Go type %T", ErrBadValue, v.V)
	}
}

type valueWire struct {
	Type   string          `json:"type"`
	Value  json.RawMessage `json:"value"`
	Base64 *string         `json:"base64"`
}

// UnmarshalJSON implements json.Unmarshaler. Integers are accepted as a
// decimal string or as a JSON number with an exact integer value; blobs
// with or without base64 padding.
func (v *Value) UnmarshalJSON(b []byte) error {
	if x, ok := quickValue(b); ok {
		v.V = x
		return nil
	}
	return v.decode(b)
}

// decode is UnmarshalJSON through encoding/json, for any shape.
func (v *Value) decode(b []byte) error {
	var w valueWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrBadValue, err)
	}
	raw := bytes.TrimSpace(w.Value)
	kind := byte(0) // first byte of "value": '"' string, '-'/digit number
	if len(raw) > 0 {
		kind = raw[0]
	}
	isNumber := kind == '-' || (kind >= '0' && kind <= '9')
	switch w.Type {
	case "null":
		v.V = nil
	case "integer":
		var s string
		switch {
		case kind == '"':
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("%w: %v", ErrBadValue, err)
			}
		case isNumber:
			s = string(raw)
		default:
			return fmt.Errorf("%w: integer without a string or number value", ErrBadValue)
		}
		i, err := parseInteger(s, isNumber)
		if err != nil {
			return err
		}
		v.V = i
	case "float":
		if !isNumber {
			return fmt.Errorf("%w: float without a number value", ErrBadValue)
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return fmt.Errorf("%w: float %s: %v", ErrBadValue, raw, err)
		}
		v.V = f
	case "text":
		var s string
		if kind != '"' {
			return fmt.Errorf("%w: text without a string value", ErrBadValue)
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%w: %v", ErrBadValue, err)
		}
		v.V = s
	case "blob":
		if w.Base64 == nil {
			return fmt.Errorf("%w: blob without base64", ErrBadValue)
		}
		s := *w.Base64
		for len(s) > 0 && s[len(s)-1] == '=' {
			s = s[:len(s)-1]
		}
		p, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("%w: blob: %v", ErrBadValue, err)
		}
		v.V = p
	default:
		return fmt.Errorf("%w: unknown type %q", ErrBadValue, w.Type)
	}
	return nil
}

// parseInteger parses a decimal string, or a JSON number whose value is
// an exact int64 (so 1e3 and 7.0 pass, 7.5 does not).
func parseInteger(s string, number bool) (int64, error) {
	i, err := strconv.ParseInt(s, 10, 64)
	if err == nil {
		return i, nil
	}
	if number {
		if i, ok := exactInteger(s); ok {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: integer %q: not an exact int64", ErrBadValue, s)
}

// exactInteger converts a valid JSON number with a fraction or exponent to
// an int64 by decimal digit manipulation; going through float64 would
// round (1.0000000000000001 is not an integer).
func exactInteger(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	mant, exp := strings.TrimPrefix(s, "-"), 0
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		e, err := strconv.Atoi(mant[i+1:])
		if err != nil || e < -maxExponent || e > maxExponent {
			return 0, false
		}
		mant, exp = mant[:i], e
	}
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		exp -= len(mant) - i - 1
		mant = mant[:i] + mant[i+1:]
	}
	mant = strings.TrimLeft(mant, "0")
	for strings.HasSuffix(mant, "0") {
		mant, exp = mant[:len(mant)-1], exp+1
	}
	switch {
	case mant == "":
		return 0, true
	case exp < 0 || len(mant)+exp > 19: // a fraction, or more digits than any int64
		return 0, false
	}
	if neg {
		mant = "-" + mant
	}
	i, err := strconv.ParseInt(mant+strings.Repeat("0", exp), 10, 64)
	return i, err == nil
}

// maxExponent bounds the exponents exactInteger considers, keeping its
// arithmetic far from overflow; larger ones never denote an int64 in a
// message of sane size.
const maxExponent = 1 << 20

// quickValue decodes the values clients send, in the shape MarshalJSON
// writes them (keys in its order, no white space, text without escapes),
// without encoding/json: a push batch holds tens of thousands of values,
// and a json.Unmarshal per value was a quarter of decoding it. ok is false
// for anything else, which UnmarshalJSON then decodes as before; where ok
// is true the result is the one UnmarshalJSON would give
// (TestQuickValueAgrees).
func quickValue(b []byte) (v any, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"type":"`))
	if !ok {
		return nil, false
	}
	switch {
	case string(rest) == `null"}`:
		return nil, true
	case bytes.HasPrefix(rest, []byte(`integer","value":"`)):
		s, ok := quickString(rest[len(`integer","value":"`):])
		if !ok || len(s) == 0 || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
			return nil, false
		}
		i, err := strconv.ParseInt(string(s), 10, 64)
		return i, err == nil
	case bytes.HasPrefix(rest, []byte(`text","value":"`)):
		s, ok := quickString(rest[len(`text","value":"`):])
		if !ok || !utf8.Valid(s) {
			return nil, false
		}
		return string(s), true
	case bytes.HasPrefix(rest, []byte(`blob","base64":"`)):
		s, ok := quickString(rest[len(`blob","base64":"`):])
		if !ok {
			return nil, false
		}
		s = bytes.TrimRight(s, "=")
		p := make([]byte, base64.RawStdEncoding.DecodedLen(len(s)))
		n, err := base64.RawStdEncoding.Decode(p, s)
		return p[:n], err == nil
	case bytes.HasPrefix(rest, []byte(`float","value":`)):
		num, ok := bytes.CutSuffix(rest[len(`float","value":`):], []byte("}"))
		if !ok || !jsonNumber(num) {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(num), 64)
		return f, err == nil
	}
	return nil, false
}

// quickString returns the contents of a JSON string that b starts inside
// of and that ends b with `"}`, if it has no escapes or control bytes.
func quickString(b []byte) ([]byte, bool) {
	s, ok := bytes.CutSuffix(b, []byte(`"}`))
	if !ok {
		return nil, false
	}
	for _, c := range s {
		if c == '"' || c == '\\' || c < 0x20 {
			return nil, false
		}
	}
	return s, true
}

// jsonNumber reports whether b is a number as JSON writes it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(b []byte) bool {
	digits := func() bool {
		n := 0
		for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
			b, n = b[1:], n+1
		}
		return n > 0
	}
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	switch {
	case len(b) > 0 && b[0] == '0':
		b = b[1:]
	case !digits():
		return false
	}
	if len(b) > 0 && b[0] == '.' {
		b = b[1:]
		if !digits() {
			return false
		}
	}
	if len(b) > 0 && (b[0] == 'e' || b[0] == 'E') {
		b = b[1:]
		if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
			b = b[1:]
		}
		if !digits() {
			return false
		}
	}
	return len(b) == 0
}
