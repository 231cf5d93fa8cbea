package hranapb

import (
	"fmt"
	"math"

	"github.com/syncdb/syncdb/wire/hrana"
	"google.golang.org/protobuf/proto"
)

// The server executes the JSON model of package hrana; these functions map
// the protobuf messages to it (requests) and back (responses). Decoding
// errors wrap hrana.ErrInvalid.

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{hrana.ErrInvalid}, args...)...)
}

// DecodePipelineReq decodes a /v3-protobuf/pipeline request body.
func DecodePipelineReq(b []byte) (*hrana.PipelineReqBody, error) {
	var m PipelineReqBody
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, invalid("%v", err)
	}
	out := &hrana.PipelineReqBody{Baton: m.Baton, Requests: make([]hrana.StreamRequest, 0, len(m.Requests))}
	for i, r := range m.Requests {
		sr, err := streamRequest(r)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		out.Requests = append(out.Requests, sr)
	}
	return out, nil
}

// DecodeCursorReq decodes a /v3-protobuf/cursor request body.
func DecodeCursorReq(b []byte) (*hrana.CursorReqBody, error) {
	var m CursorReqBody
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, invalid("%v", err)
	}
	batch, err := FromBatch(m.Batch)
	if err != nil {
		return nil, err
	}
	return &hrana.CursorReqBody{Baton: m.Baton, Batch: *batch}, nil
}

func streamRequest(r *StreamRequest) (hrana.StreamRequest, error) {
	var out hrana.StreamRequest
	var err error
	switch x := r.GetRequest().(type) {
	case *StreamRequest_Close:
		out.Type = hrana.ReqClose
	case *StreamRequest_Execute:
		out.Type = hrana.ReqExecute
		out.Stmt, err = FromStmt(x.Execute.GetStmt())
	case *StreamRequest_Batch:
		out.Type = hrana.ReqBatch
		out.Batch, err = FromBatch(x.Batch.GetBatch())
	case *StreamRequest_Sequence:
		out.Type, out.SQL, out.SQLID = hrana.ReqSequence, x.Sequence.Sql, x.Sequence.SqlId
	case *StreamRequest_Describe:
		out.Type, out.SQL, out.SQLID = hrana.ReqDescribe, x.Describe.Sql, x.Describe.SqlId
	case *StreamRequest_StoreSql:
		sql, id := x.StoreSql.GetSql(), x.StoreSql.GetSqlId()
		out.Type, out.SQL, out.SQLID = hrana.ReqStoreSQL, &sql, &id
	case *StreamRequest_CloseSql:
		id := x.CloseSql.GetSqlId()
		out.Type, out.SQLID = hrana.ReqCloseSQL, &id
	case *StreamRequest_GetAutocommit:
		out.Type = hrana.ReqGetAutocommit
	default:
		return out, invalid("StreamRequest type not recognized")
	}
	return out, err
}

// FromStmt maps a protobuf statement to the model.
func FromStmt(s *Stmt) (*hrana.Stmt, error) {
	if s == nil {
		return nil, invalid("missing stmt")
	}
	out := &hrana.Stmt{SQL: s.Sql, SQLID: s.SqlId, WantRows: s.WantRows, ReplicationIndex: s.ReplicationIndex}
	for i, a := range s.Args {
		v, err := FromValue(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		out.Args = append(out.Args, v)
	}
	for _, na := range s.NamedArgs {
		v, err := FromValue(na.GetValue())
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", na.GetName(), err)
		}
		out.NamedArgs = append(out.NamedArgs, hrana.NamedArg{Name: na.GetName(), Value: v})
	}
	return out, nil
}

// FromBatch maps a protobuf batch to the model.
func FromBatch(b *Batch) (*hrana.Batch, error) {
	if b == nil {
		return nil, invalid("missing batch")
	}
	out := &hrana.Batch{Steps: make([]hrana.BatchStep, 0, len(b.Steps)), ReplicationIndex: b.ReplicationIndex}
	for i, st := range b.Steps {
		s, err := FromStmt(st.GetStmt())
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", i, err)
		}
		step := hrana.BatchStep{Stmt: *s}
		if st.Condition != nil {
			if step.Condition, err = fromCond(st.Condition, 1); err != nil {
				return nil, fmt.Errorf("step %d: %w", i, err)
			}
		}
		out.Steps = append(out.Steps, step)
	}
	return out, nil
}

func fromCond(c *BatchCond, depth int) (*hrana.BatchCond, error) {
	if depth > hrana.MaxCondDepth {
		return nil, invalid("batch condition nested deeper than %d", hrana.MaxCondDepth)
	}
	list := func(typ string, l *BatchCond_CondList) (*hrana.BatchCond, error) {
		out := &hrana.BatchCond{Type: typ, Conds: make([]hrana.BatchCond, 0, len(l.GetConds()))}
		for _, sub := range l.GetConds() {
			s, err := fromCond(sub, depth+1)
			if err != nil {
				return nil, err
			}
			out.Conds = append(out.Conds, *s)
		}
		return out, nil
	}
	switch x := c.GetCond().(type) {
	case *BatchCond_StepOk:
		return &hrana.BatchCond{Type: hrana.CondOK, Step: x.StepOk}, nil
	case *BatchCond_StepError:
		return &hrana.BatchCond{Type: hrana.CondError, Step: x.StepError}, nil
	case *BatchCond_Not:
		sub, err := fromCond(x.Not, depth+1)
		if err != nil {
			return nil, err
		}
		return &hrana.BatchCond{Type: hrana.CondNot, Cond: sub}, nil
	case *BatchCond_And:
		return list(hrana.CondAnd, x.And)
	case *BatchCond_Or:
		return list(hrana.CondOr, x.Or)
	case *BatchCond_IsAutocommit_:
		return &hrana.BatchCond{Type: hrana.CondIsAutocommit}, nil
	}
	return nil, invalid("BatchCond type not recognized")
}

// FromValue maps a protobuf value to the model.
func FromValue(v *Value) (hrana.Value, error) {
	switch x := v.GetValue().(type) {
	case *Value_Null_:
		return hrana.Null(), nil
	case *Value_Integer:
		return hrana.Integer(x.Integer), nil
	case *Value_Float:
		return hrana.Float(x.Float), nil
	case *Value_Text:
		return hrana.Text(x.Text), nil
	case *Value_Blob:
		if x.Blob == nil {
			return hrana.Blob([]byte{}), nil
		}
		return hrana.Blob(x.Blob), nil
	}
	return hrana.Value{}, invalid("Value type not recognized")
}

// ToValue maps a model value to protobuf.
func ToValue(v hrana.Value) *Value {
	switch x := v.V.(type) {
	case int64:
		return &Value{Value: &Value_Integer{Integer: x}}
	case float64:
		return &Value{Value: &Value_Float{Float: x}}
	case string:
		return &Value{Value: &Value_Text{Text: x}}
	case []byte:
		return &Value{Value: &Value_Blob{Blob: x}}
	}
	return &Value{Value: &Value_Null_{Null: &Value_Null{}}}
}

// ToError maps a model error to protobuf.
func ToError(e *hrana.Error) *Error {
	return &Error{Message: e.Message, Code: e.Code}
}

// ToCols maps result columns to protobuf.
func ToCols(cols []hrana.Col) []*Col {
	out := make([]*Col, len(cols))
	for i, c := range cols {
		out[i] = &Col{Name: c.Name, Decltype: c.Decltype}
	}
	return out
}

// ToRow maps one row to protobuf.
func ToRow(row []hrana.Value) *Row {
	out := &Row{Values: make([]*Value, len(row))}
	for i, v := range row {
		out.Values[i] = ToValue(v)
	}
	return out
}

// ToStmtResult maps a statement's result to protobuf.
func ToStmtResult(r *hrana.StmtResult) *StmtResult {
	out := &StmtResult{
		Cols:             ToCols(r.Cols),
		Rows:             make([]*Row, len(r.Rows)),
		AffectedRowCount: r.AffectedRowCount,
		LastInsertRowid:  r.LastInsertRowid,
		ReplicationIndex: r.ReplicationIndex,
		RowsRead:         r.RowsRead,
		RowsWritten:      r.RowsWritten,
		QueryDurationMs:  r.QueryDurationMS,
	}
	for i, row := range r.Rows {
		out.Rows[i] = ToRow(row)
	}
	return out
}

// ToBatchResult maps a batch's result to protobuf: steps that did not run
// have no entry.
func ToBatchResult(r *hrana.BatchResult) *BatchResult {
	out := &BatchResult{StepResults: map[uint32]*StmtResult{}, StepErrors: map[uint32]*Error{}, ReplicationIndex: r.ReplicationIndex}
	for i, sr := range r.StepResults {
		if sr != nil && i <= math.MaxUint32 {
			out.StepResults[uint32(i)] = ToStmtResult(sr)
		}
	}
	for i, se := range r.StepErrors {
		if se != nil && i <= math.MaxUint32 {
			out.StepErrors[uint32(i)] = ToError(se)
		}
	}
	return out
}

// ToDescribeResult maps a describe result to protobuf.
func ToDescribeResult(r *hrana.DescribeResult) *DescribeResult {
	out := &DescribeResult{IsExplain: r.IsExplain, IsReadonly: r.IsReadonly}
	for _, p := range r.Params {
		out.Params = append(out.Params, &DescribeParam{Name: p.Name})
	}
	for _, c := range r.Cols {
		out.Cols = append(out.Cols, &DescribeCol{Name: c.Name, Decltype: c.Decltype})
	}
	return out
}

// ToStreamResult maps the outcome of one pipeline request to protobuf.
func ToStreamResult(r hrana.StreamResult) *StreamResult {
	if r.Type == hrana.ResultError {
		return &StreamResult{Result: &StreamResult_Error{Error: ToError(r.Error)}}
	}
	resp := &StreamResponse{}
	switch x := r.Response; x.Type {
	case hrana.ReqClose:
		resp.Response = &StreamResponse_Close{Close: &CloseStreamResp{}}
	case hrana.ReqExecute:
		resp.Response = &StreamResponse_Execute{Execute: &ExecuteStreamResp{Result: ToStmtResult(x.StmtResult)}}
	case hrana.ReqBatch:
		resp.Response = &StreamResponse_Batch{Batch: &BatchStreamResp{Result: ToBatchResult(x.BatchResult)}}
	case hrana.ReqSequence:
		resp.Response = &StreamResponse_Sequence{Sequence: &SequenceStreamResp{}}
	case hrana.ReqDescribe:
		resp.Response = &StreamResponse_Describe{Describe: &DescribeStreamResp{Result: ToDescribeResult(x.DescribeResult)}}
	case hrana.ReqStoreSQL:
		resp.Response = &StreamResponse_StoreSql{StoreSql: &StoreSqlStreamResp{}}
	case hrana.ReqCloseSQL:
		resp.Response = &StreamResponse_CloseSql{CloseSql: &CloseSqlStreamResp{}}
	case hrana.ReqGetAutocommit:
		resp.Response = &StreamResponse_GetAutocommit{GetAutocommit: &GetAutocommitStreamResp{IsAutocommit: x.IsAutocommit}}
	}
	return &StreamResult{Result: &StreamResult_Ok{Ok: resp}}
}

// EncodePipelineResp encodes a /v3-protobuf/pipeline response body.
func EncodePipelineResp(r *hrana.PipelineRespBody) ([]byte, error) {
	m := &PipelineRespBody{Baton: r.Baton, BaseUrl: r.BaseURL, Results: make([]*StreamResult, len(r.Results))}
	for i, res := range r.Results {
		m.Results[i] = ToStreamResult(res)
	}
	return proto.Marshal(m)
}

// ToCursorEntry maps one cursor entry to protobuf.
func ToCursorEntry(e *hrana.CursorEntry) *CursorEntry {
	switch e.Type {
	case hrana.EntryStepBegin:
		return &CursorEntry{Entry: &CursorEntry_StepBegin{StepBegin: &StepBeginEntry{Step: e.Step, Cols: ToCols(e.Cols)}}}
	case hrana.EntryStepEnd:
		return &CursorEntry{Entry: &CursorEntry_StepEnd{StepEnd: &StepEndEntry{AffectedRowCount: e.AffectedRowCount, LastInsertRowid: e.LastInsertRowid}}}
	case hrana.EntryRow:
		return &CursorEntry{Entry: &CursorEntry_Row{Row: ToRow(e.Row)}}
	case hrana.EntryStepError:
		return &CursorEntry{Entry: &CursorEntry_StepError{StepError: &StepErrorEntry{Step: e.Step, Error: ToError(e.Error)}}}
	}
	return &CursorEntry{Entry: &CursorEntry_Error{Error: ToError(e.Error)}}
}
