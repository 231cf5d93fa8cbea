package change

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrCorrupt is wrapped by every error Decode returns.
var ErrCorrupt = errors.New("change: corrupt record")

// Version is the format version that Encode writes as the record's first
// byte.
const Version = 1

const (
	flagRowidAlias = 1 << iota
	flagColumns
	flagPK
	flagBefore
	flagAfter
	flagKeyAssigned
	flagsKnown = flagRowidAlias | flagColumns | flagPK | flagBefore | flagAfter | flagKeyAssigned
)

// Value tags.
const (
	tagNull = iota
	tagInt
	tagFloat
	tagText
	tagBlob
)

// Encode returns the binary form of c (every field but ID and Txn; see the
// package documentation for the layout). It fails on an unknown Op or on a
// value that is not nil, int64, float64, string or []byte. It does not
// otherwise check consistency: see Validate.
func (c *Change) Encode() ([]byte, error) {
	if !c.Op.valid() {
		return nil, fmt.Errorf("change: encode: invalid op %d", int(c.Op))
	}
	size := 3 + 2*binary.MaxVarintLen64 + strSize(c.Table) + strSize(c.SQL)
	var flags byte
	if c.RowidAlias {
		flags |= flagRowidAlias
	}
	if c.KeyAssigned {
		flags |= flagKeyAssigned
	}
	if c.Columns != nil {
		flags |= flagColumns
		size += binary.MaxVarintLen64
		for _, s := range c.Columns {
			size += strSize(s)
		}
	}
	if c.PK != nil {
		flags |= flagPK
		size += binary.MaxVarintLen64 * (1 + len(c.PK))
	}
	for i, img := range [2][]any{c.Before, c.After} {
		if img == nil {
			continue
		}
		flags |= flagBefore << i
		size += binary.MaxVarintLen64
		for j, v := range img {
			n, err := valueSize(v)
			if err != nil {
				return nil, fmt.Errorf("change: encode: %s value %d: %w", [2]string{"before", "after"}[i], j, err)
			}
			size += n
		}
	}

	b := make([]byte, 0, size)
	b = append(b, Version, byte(c.Op), flags)
	b = appendStr(b, c.Table)
	b = appendStr(b, c.SQL)
	b = binary.AppendVarint(b, c.OldRowid)
	b = binary.AppendVarint(b, c.NewRowid)
	if c.Columns != nil {
		b = binary.AppendUvarint(b, uint64(len(c.Columns)))
		for _, s := range c.Columns {
			b = appendStr(b, s)
		}
	}
	if c.PK != nil {
		b = binary.AppendUvarint(b, uint64(len(c.PK)))
		for _, i := range c.PK {
			b = binary.AppendVarint(b, int64(i))
		}
	}
	for _, img := range [2][]any{c.Before, c.After} {
		if img == nil {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(img)))
		for _, v := range img {
			b = appendValue(b, v)
		}
	}
	return b, nil
}

func strSize(s string) int { return binary.MaxVarintLen64 + len(s) }

func valueSize(v any) (int, error) {
	switch x := v.(type) {
	case nil:
		return 1, nil
	case int64:
		return 1 + binary.MaxVarintLen64, nil
	case float64:
		return 9, nil
	case string:
		return 1 + strSize(x), nil
	case []byte:
		return 1 + binary.MaxVarintLen64 + len(x), nil
	}
	return 0, checkValue(v)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue appends v, which valueSize has accepted.
func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull)
	case int64:
		return binary.AppendVarint(append(b, tagInt), x)
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x))
	case string:
		return appendStr(append(b, tagText), x)
	case []byte:
		b = binary.AppendUvarint(append(b, tagBlob), uint64(len(x)))
		return append(b, x...)
	}
	panic("change: appendValue: unchecked type") // unreachable: valueSize checked
}

// Decode parses a record written by Encode. ID and Txn are left zero. An
// empty BLOB decodes as a non-nil empty []byte. Strings and blobs are copies:
// the result does not alias b.
func Decode(b []byte) (Change, error) {
	d := decoder{b: b}
	c, err := d.change()
	if err != nil {
		return Change{}, err
	}
	return c, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrCorrupt, fmt.Sprintf(format, args...), d.off)
}

func (d *decoder) change() (Change, error) {
	var c Change
	if len(d.b) < 3 {
		return c, d.fail("record of %d bytes is too short", len(d.b))
	}
	if v := d.b[0]; v != Version {
		return c, d.fail("unsupported format version %d (want %d)", v, Version)
	}
	c.Op = Op(int8(d.b[1]))
	if !c.Op.valid() {
		return c, d.fail("invalid op %d", int(c.Op))
	}
	flags := d.b[2]
	if flags&^flagsKnown != 0 {
		return c, d.fail("unknown flags %#x", flags)
	}
	d.off = 3
	c.RowidAlias = flags&flagRowidAlias != 0
	c.KeyAssigned = flags&flagKeyAssigned != 0
	var err error
	if c.Table, err = d.str(); err != nil {
		return c, err
	}
	if c.SQL, err = d.str(); err != nil {
		return c, err
	}
	if c.OldRowid, err = d.varint(); err != nil {
		return c, err
	}
	if c.NewRowid, err = d.varint(); err != nil {
		return c, err
	}
	if flags&flagColumns != 0 {
		n, err := d.count()
		if err != nil {
			return c, err
		}
		c.Columns = make([]string, n)
		for i := range c.Columns {
			if c.Columns[i], err = d.str(); err != nil {
				return c, err
			}
		}
	}
	if flags&flagPK != 0 {
		n, err := d.count()
		if err != nil {
			return c, err
		}
		c.PK = make([]int, n)
		for i := range c.PK {
			v, err := d.varint()
			if err != nil {
				return c, err
			}
			if int64(int(v)) != v {
				return c, d.fail("primary key index %d overflows int", v)
			}
			c.PK[i] = int(v)
		}
	}
	for i, img := range [2]*[]any{&c.Before, &c.After} {
		if flags&(flagBefore<<i) == 0 {
			continue
		}
		n, err := d.count()
		if err != nil {
			return c, err
		}
		*img = make([]any, n)
		for j := range *img {
			if (*img)[j], err = d.value(); err != nil {
				return c, err
			}
		}
	}
	if d.off != len(d.b) {
		return c, d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return c, nil
}

// uvarint reads a minimal unsigned LEB128 varint of at most 64 bits.
func (d *decoder) uvarint() (uint64, error) {
	var x uint64
	for i := 0; ; i++ {
		if d.off >= len(d.b) {
			return 0, d.fail("truncated varint")
		}
		c := d.b[d.off]
		d.off++
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, d.fail("varint overflows 64 bits")
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, d.fail("non-minimal varint")
			}
			return x, nil
		}
	}
}

func (d *decoder) varint() (int64, error) {
	u, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x, nil
}

// length reads a byte length and checks that that many bytes follow.
func (d *decoder) length() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, d.fail("length %d exceeds the %d remaining bytes", n, len(d.b)-d.off)
	}
	return int(n), nil
}

// count reads an element count. Every element takes at least one byte, so a
// count larger than the remaining input is corrupt; this bounds allocations.
func (d *decoder) count() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, d.fail("count %d exceeds the %d remaining bytes", n, len(d.b)-d.off)
	}
	return int(n), nil
}

func (d *decoder) str() (string, error) {
	n, err := d.length()
	if err != nil {
		return "", err
	}
	s := string(d.b[d.off : d.off+n])
	d.off += n
	return s, nil
}

func (d *decoder) value() (any, error) {
	if d.off >= len(d.b) {
		return nil, d.fail("truncated value")
	}
	tag := d.b[d.off]
	d.off++
	switch tag {
	case tagNull:
		return nil, nil
	case tagInt:
		return d.varint()
	case tagFloat:
		if len(d.b)-d.off < 8 {
			return nil, d.fail("truncated REAL")
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
		d.off += 8
		return f, nil
	case tagText:
		return d.str()
	case tagBlob:
		n, err := d.length()
		if err != nil {
			return nil, err
		}
		v := make([]byte, n)
		copy(v, d.b[d.off:])
		d.off += n
		return v, nil
	}
	d.off--
	return nil, d.fail("unknown value tag %d", tag)
}
