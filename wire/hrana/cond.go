package hrana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Batch condition types.
const (
	CondOK           = "ok"            // step Step succeeded
	CondError        = "error"         // step Step failed
	CondNot          = "not"           // Cond does not hold
	CondAnd          = "and"           // all of Conds hold
	CondOr           = "or"            // any of Conds holds
	CondIsAutocommit = "is_autocommit" // no transaction is open
)

// MaxCondDepth bounds the nesting of batch conditions, so that hostile
// input cannot exhaust the stack of code that evaluates them recursively.
const MaxCondDepth = 100

// BatchCond is a condition on a batch step. Type selects the fields used:
// Step for ok and error, Cond for not, Conds for and and or.
type BatchCond struct {
	Type  string
	Step  uint32
	Cond  *BatchCond
	Conds []BatchCond
}

// condWire mirrors the JSON shape. encoding/json decodes the whole tree in
// one pass (it caps nesting itself); the depth check happens afterwards
// while converting, which avoids re-scanning raw sub-documents per level.
type condWire struct {
	Type  string      `json:"type"`
	Step  *uint32     `json:"step"`
	Cond  *condWire   `json:"cond"`
	Conds *[]condWire `json:"conds"`
}

func (c BatchCond) MarshalJSON() ([]byte, error) {
	return c.appendJSON(nil, 1)
}

func (c *BatchCond) appendJSON(b []byte, depth int) ([]byte, error) {
	if depth > MaxCondDepth {
		return nil, fmt.Errorf("%w: batch condition nested deeper than %d", ErrInvalid, MaxCondDepth)
	}
	var err error
	switch c.Type {
	case CondOK, CondError:
		b = append(b, `{"type":"`...)
		b = append(b, c.Type...)
		b = append(b, `","step":`...)
		b = strconv.AppendUint(b, uint64(c.Step), 10)
		b = append(b, '}')
	case CondNot:
		if c.Cond == nil {
			return nil, fmt.Errorf("%w: not condition without cond", ErrInvalid)
		}
		b = append(b, `{"type":"not","cond":`...)
		if b, err = c.Cond.appendJSON(b, depth+1); err != nil {
			return nil, err
		}
		b = append(b, '}')
	case CondAnd, CondOr:
		b = append(b, `{"type":"`...)
		b = append(b, c.Type...)
		b = append(b, `","conds":[`...)
		for i := range c.Conds {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = c.Conds[i].appendJSON(b, depth+1); err != nil {
				return nil, err
			}
		}
		b = append(b, "]}"...)
	case CondIsAutocommit:
		b = append(b, `{"type":"is_autocommit"}`...)
	default:
		return nil, fmt.Errorf("%w: unknown condition type %q", ErrInvalid, c.Type)
	}
	return b, nil
}

func (c *BatchCond) UnmarshalJSON(b []byte) error {
	if q, rest, ok := quickCond(b, 1); ok && len(rest) == 0 {
		*c = q
		return nil
	}
	return c.decode(b)
}

// decode is UnmarshalJSON through encoding/json, for any shape.
func (c *BatchCond) decode(b []byte) error {
	var w condWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return c.fromWire(&w, 1)
}

func (c *BatchCond) fromWire(w *condWire, depth int) error {
	if depth > MaxCondDepth {
		return fmt.Errorf("%w: batch condition nested deeper than %d", ErrInvalid, MaxCondDepth)
	}
	*c = BatchCond{Type: w.Type}
	switch w.Type {
	case CondOK, CondError:
		if w.Step == nil {
			return fmt.Errorf("%w: %s condition without step", ErrInvalid, w.Type)
		}
		c.Step = *w.Step
	case CondNot:
		if w.Cond == nil {
			return fmt.Errorf("%w: not condition without cond", ErrInvalid)
		}
		c.Cond = new(BatchCond)
		return c.Cond.fromWire(w.Cond, depth+1)
	case CondAnd, CondOr:
		if w.Conds == nil {
			return fmt.Errorf("%w: %s condition without conds", ErrInvalid, w.Type)
		}
		c.Conds = make([]BatchCond, len(*w.Conds))
		for i := range *w.Conds {
			if err := c.Conds[i].fromWire(&(*w.Conds)[i], depth+1); err != nil {
				return err
			}
		}
	case CondIsAutocommit:
	default:
		return fmt.Errorf("%w: unknown condition type %q", ErrInvalid, w.Type)
	}
	return nil
}

// quickCond decodes a condition at the start of b in the shape appendJSON
// writes (keys in its order, no white space), without encoding/json: a
// push batch has a condition per step. It returns the rest of b after
// it; ok is false for anything else, including nesting deeper than
// MaxCondDepth, which UnmarshalJSON then decodes (or refuses) as before.
// Where ok is true the result is the one decode gives (TestQuickCondAgrees).
func quickCond(b []byte, depth int) (c BatchCond, rest []byte, ok bool) {
	if depth > MaxCondDepth {
		return c, nil, false
	}
	if b, ok = bytes.CutPrefix(b, []byte(`{"type":"`)); !ok {
		return c, nil, false
	}
	cut := func(p string) bool {
		b, ok = bytes.CutPrefix(b, []byte(p))
		return ok
	}
	switch {
	case cut(`ok","step":`):
		c.Type = CondOK
	case cut(`error","step":`):
		c.Type = CondError
	case cut(`is_autocommit"}`):
		return BatchCond{Type: CondIsAutocommit}, b, true
	case cut(`not","cond":`):
		inner, rest, ok := quickCond(b, depth+1)
		if !ok || len(rest) == 0 || rest[0] != '}' {
			return c, nil, false
		}
		return BatchCond{Type: CondNot, Cond: &inner}, rest[1:], true
	case cut(`and","conds":[`):
		return quickConds(CondAnd, b, depth)
	case cut(`or","conds":[`):
		return quickConds(CondOr, b, depth)
	default:
		return c, nil, false
	}
	// ok or error: the step, a JSON integer without leading zeros.
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == 0 || n > 1 && b[0] == '0' || n >= len(b) || b[n] != '}' {
		return c, nil, false
	}
	step, err := strconv.ParseUint(string(b[:n]), 10, 32)
	if err != nil {
		return c, nil, false
	}
	c.Step = uint32(step)
	return c, b[n+1:], true
}

// quickConds decodes the conditions of an and or an or, b starting after
// its '['.
func quickConds(typ string, b []byte, depth int) (BatchCond, []byte, bool) {
	c := BatchCond{Type: typ, Conds: []BatchCond{}}
	if rest, ok := bytes.CutPrefix(b, []byte("]}")); ok {
		return c, rest, true
	}
	for {
		inner, rest, ok := quickCond(b, depth+1)
		if !ok || len(rest) == 0 {
			return c, nil, false
		}
		c.Conds = append(c.Conds, inner)
		switch {
		case rest[0] == ',':
			b = rest[1:]
		case bytes.HasPrefix(rest, []byte("]}")):
			return c, rest[2:], true
		default:
			return c, nil, false
		}
	}
}
