package hrana

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// The response encoders append to one buffer instead of nesting
// json.Marshal calls: encoding/json re-scans (compacts) what every nested
// MarshalJSON returns, once per level, and a push batch's response holds a
// step result per step (10k-row push: 3.5 MB, five levels deep). The bytes
// are the ones encoding/json wrote for the same types (TestEncodeAsBefore).

func (p *PipelineRespBody) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"baton":`...)
	b = appendStringPtr(b, p.Baton)
	b = append(b, `,"base_url":`...)
	b = appendStringPtr(b, p.BaseURL)
	b = append(b, `,"results":[`...)
	var err error
	for i := range p.Results {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = p.Results[i].appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

func (r *StreamResult) appendJSON(b []byte) ([]byte, error) {
	w := *r
	if err := w.check(); err != nil {
		return nil, err
	}
	b = append(b, `{"type":`...)
	b = appendString(b, w.Type)
	var err error
	if w.Response != nil {
		b = append(b, `,"response":`...)
		if b, err = w.Response.appendJSON(b); err != nil {
			return nil, err
		}
	}
	if w.Error != nil {
		b = append(b, `,"error":`...)
		b = w.Error.appendJSON(b)
	}
	return append(b, '}'), nil
}

func (r *StreamResponse) appendJSON(b []byte) ([]byte, error) {
	var err error
	switch r.Type {
	case ReqExecute:
		if r.StmtResult == nil {
			break
		}
		b = append(b, `{"type":"execute","result":`...)
		if b, err = r.StmtResult.appendJSON(b); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	case ReqBatch:
		if r.BatchResult == nil {
			break
		}
		b = append(b, `{"type":"batch","result":`...)
		if b, err = r.BatchResult.appendJSON(b); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	case ReqDescribe:
		if r.DescribeResult == nil {
			break
		}
		d, err := json.Marshal(r.DescribeResult)
		if err != nil {
			return nil, err
		}
		b = append(b, `{"type":"describe","result":`...)
		return append(append(b, d...), '}'), nil
	case ReqSequence, ReqClose, ReqStoreSQL, ReqCloseSQL:
		b = append(b, `{"type":`...)
		b = appendString(b, r.Type)
		return append(b, '}'), nil
	case ReqGetAutocommit:
		b = append(b, `{"type":"get_autocommit","is_autocommit":`...)
		b = strconv.AppendBool(b, r.IsAutocommit)
		return append(b, '}'), nil
	default:
		return nil, fmt.Errorf("%w: unknown response type %q", ErrInvalid, r.Type)
	}
	return nil, fmt.Errorf("%w: %s response without result", ErrInvalid, r.Type)
}

func (r *BatchResult) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"step_results":[`...)
	var err error
	for i, res := range r.StepResults {
		if i > 0 {
			b = append(b, ',')
		}
		if res == nil {
			b = append(b, "null"...)
		} else if b, err = res.appendJSON(b); err != nil {
			return nil, err
		}
	}
	b = append(b, `],"step_errors":[`...)
	for i, e := range r.StepErrors {
		if i > 0 {
			b = append(b, ',')
		}
		if e == nil {
			b = append(b, "null"...)
		} else {
			b = e.appendJSON(b)
		}
	}
	b = append(b, `],"replication_index":`...)
	b = appendUintPtr(b, r.ReplicationIndex)
	return append(b, '}'), nil
}

func (r *StmtResult) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"cols":[`...)
	for i, c := range r.Cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendStringPtr(b, c.Name)
		b = append(b, `,"decltype":`...)
		b = appendStringPtr(b, c.Decltype)
		b = append(b, '}')
	}
	b = append(b, `],"rows":[`...)
	for i, row := range r.Rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, v := range row {
			if j > 0 {
				b = append(b, ',')
			}
			vb, err := v.MarshalJSON()
			if err != nil {
				return nil, err
			}
			b = append(b, vb...)
		}
		b = append(b, ']')
	}
	b = append(b, `],"affected_row_count":`...)
	b = strconv.AppendUint(b, r.AffectedRowCount, 10)
	b = append(b, `,"last_insert_rowid":`...)
	if r.LastInsertRowid == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = strconv.AppendInt(b, *r.LastInsertRowid, 10)
		b = append(b, '"')
	}
	b = append(b, `,"replication_index":`...)
	b = appendUintPtr(b, r.ReplicationIndex)
	b = append(b, `,"rows_read":`...)
	b = strconv.AppendUint(b, r.RowsRead, 10)
	b = append(b, `,"rows_written":`...)
	b = strconv.AppendUint(b, r.RowsWritten, 10)
	b = append(b, `,"query_duration_ms":`...)
	return appendFloat(b, r.QueryDurationMS)
}

func (e *Error) appendJSON(b []byte) []byte {
	b = append(b, `{"message":`...)
	b = appendString(b, e.Message)
	b = append(b, `,"code":`...)
	b = appendString(b, e.Code)
	return append(b, '}')
}

// appendString appends s as encoding/json writes it: as it is if it is
// printable ASCII that needs no escape, else through encoding/json (which
// escapes <, > and &, and replaces invalid UTF-8).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
}

// appendUintPtr appends a ",string" uint64: "N" or null.
func appendUintPtr(b []byte, v *uint64) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = strconv.AppendUint(b, *v, 10)
	return append(b, '"')
}

// appendFloat appends f and the closing '}' as encoding/json writes a
// float64; like it, it refuses NaN and infinities.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: non-finite float %v", ErrInvalid, f)
	}
	// encoding/json's choice: %f between 1e-6 and 1e21, else %e with a
	// one-digit negative exponent shortened (1e-07 -> 1e-7).
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return append(b, '}'), nil
}

// The request encoders, for the client's side: a push batch is a step per
// statement (10k-row push: 12 MB of JSON).

func (p *PipelineReqBody) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"baton":`...)
	b = appendStringPtr(b, p.Baton)
	b = append(b, `,"requests":[`...)
	var err error
	for i := range p.Requests {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = p.Requests[i].appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

func (r *StreamRequest) appendJSON(b []byte) ([]byte, error) {
	var err error
	switch r.Type {
	case ReqExecute:
		if r.Stmt == nil {
			break
		}
		b = append(b, `{"type":"execute","stmt":`...)
		if b, err = r.Stmt.appendJSON(b); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	case ReqBatch:
		if r.Batch == nil {
			break
		}
		b = append(b, `{"type":"batch","batch":`...)
		if b, err = r.Batch.appendJSON(b); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	}
	// The other requests are small; so are the refusals.
	o, err := r.marshalOther()
	if err != nil {
		return nil, err
	}
	return append(b, o...), nil
}

func (bt *Batch) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"steps":[`...)
	var err error
	for i := range bt.Steps {
		if i > 0 {
			b = append(b, ',')
		}
		st := &bt.Steps[i]
		b = append(b, `{"condition":`...)
		if st.Condition == nil {
			b = append(b, "null"...)
		} else if b, err = st.Condition.appendJSON(b, 1); err != nil {
			return nil, err
		}
		b = append(b, `,"stmt":`...)
		if b, err = st.Stmt.appendJSON(b); err != nil {
			return nil, err
		}
		b = append(b, '}')
	}
	b = append(b, `],"replication_index":`...)
	b = appendUintPtr(b, bt.ReplicationIndex)
	return append(b, '}'), nil
}

func (s *Stmt) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"sql":`...)
	b = appendStringPtr(b, s.SQL)
	b = append(b, `,"sql_id":`...)
	if s.SQLID == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, int64(*s.SQLID), 10)
	}
	b = append(b, `,"args":[`...)
	var err error
	for i := range s.Args {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = s.Args[i].appendJSON(b); err != nil {
			return nil, err
		}
	}
	b = append(b, `],"named_args":[`...)
	for i := range s.NamedArgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, s.NamedArgs[i].Name)
		b = append(b, `,"value":`...)
		if b, err = s.NamedArgs[i].Value.appendJSON(b); err != nil {
			return nil, err
		}
		b = append(b, '}')
	}
	b = append(b, `],"want_rows":`...)
	if s.WantRows == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendBool(b, *s.WantRows)
	}
	b = append(b, `,"replication_index":`...)
	b = appendUintPtr(b, s.ReplicationIndex)
	return append(b, '}'), nil
}

// appendJSON appends what MarshalJSON returns, text without a
// json.Marshal of its own where it needs no escaping.
func (v Value) appendJSON(b []byte) ([]byte, error) {
	if s, ok := v.V.(string); ok {
		b = append(b, `{"type":"text","value":`...)
		b = appendString(b, s)
		return append(b, '}'), nil
	}
	j, err := v.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}
