package hranapb

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/syncdb/syncdb/wire/hrana"
	"google.golang.org/protobuf/proto"
)

func ptr[T any](v T) *T { return &v }

// The same pipeline request, in JSON and in protobuf, decodes to the same
// model.
func TestPipelineReqMatchesJSON(t *testing.T) {
	jsonBody := `{"baton":"b1","requests":[
		{"type":"execute","stmt":{"sql":"SELECT ?, :a","args":[{"type":"integer","value":"-9223372036854775808"}],
		  "named_args":[{"name":":a","value":{"type":"blob","base64":"AQI"}}],"want_rows":false}},
		{"type":"batch","batch":{"steps":[
		  {"stmt":{"sql":"BEGIN"}},
		  {"condition":{"type":"ok","step":0},"stmt":{"sql_id":3,"args":[{"type":"float","value":1.5},{"type":"null"},{"type":"text","value":"é"}]}},
		  {"condition":{"type":"and","conds":[{"type":"error","step":1},{"type":"not","cond":{"type":"is_autocommit"}}]},"stmt":{"sql":"ROLLBACK"}},
		  {"condition":{"type":"or","conds":[]},"stmt":{"sql":"COMMIT"}}]}},
		{"type":"sequence","sql":"CREATE TABLE t(a); INSERT INTO t VALUES(1)"},
		{"type":"describe","sql_id":3},
		{"type":"store_sql","sql_id":3,"sql":"SELECT 1"},
		{"type":"close_sql","sql_id":3},
		{"type":"get_autocommit"},
		{"type":"close"}]}`
	want, err := hrana.DecodePipelineReq([]byte(jsonBody))
	if err != nil {
		t.Fatal(err)
	}
	stmt := func(s *Stmt) *StreamRequest {
		return &StreamRequest{Request: &StreamRequest_Execute{Execute: &ExecuteStreamReq{Stmt: s}}}
	}
	m := &PipelineReqBody{Baton: ptr("b1"), Requests: []*StreamRequest{
		stmt(&Stmt{Sql: ptr("SELECT ?, :a"), Args: []*Value{{Value: &Value_Integer{Integer: math.MinInt64}}},
			NamedArgs: []*NamedArg{{Name: ":a", Value: &Value{Value: &Value_Blob{Blob: []byte{1, 2}}}}}, WantRows: ptr(false)}),
		{Request: &StreamRequest_Batch{Batch: &BatchStreamReq{Batch: &Batch{Steps: []*BatchStep{
			{Stmt: &Stmt{Sql: ptr("BEGIN")}},
			{Condition: &BatchCond{Cond: &BatchCond_StepOk{StepOk: 0}}, Stmt: &Stmt{SqlId: ptr(int32(3)), Args: []*Value{
				{Value: &Value_Float{Float: 1.5}}, {Value: &Value_Null_{Null: &Value_Null{}}}, {Value: &Value_Text{Text: "é"}}}}},
			{Condition: &BatchCond{Cond: &BatchCond_And{And: &BatchCond_CondList{Conds: []*BatchCond{
				{Cond: &BatchCond_StepError{StepError: 1}},
				{Cond: &BatchCond_Not{Not: &BatchCond{Cond: &BatchCond_IsAutocommit_{IsAutocommit: &BatchCond_IsAutocommit{}}}}},
			}}}}, Stmt: &Stmt{Sql: ptr("ROLLBACK")}},
			{Condition: &BatchCond{Cond: &BatchCond_Or{Or: &BatchCond_CondList{}}}, Stmt: &Stmt{Sql: ptr("COMMIT")}},
		}}}}},
		{Request: &StreamRequest_Sequence{Sequence: &SequenceStreamReq{Sql: ptr("CREATE TABLE t(a); INSERT INTO t VALUES(1)")}}},
		{Request: &StreamRequest_Describe{Describe: &DescribeStreamReq{SqlId: ptr(int32(3))}}},
		{Request: &StreamRequest_StoreSql{StoreSql: &StoreSqlStreamReq{SqlId: 3, Sql: "SELECT 1"}}},
		{Request: &StreamRequest_CloseSql{CloseSql: &CloseSqlStreamReq{SqlId: 3}}},
		{Request: &StreamRequest_GetAutocommit{GetAutocommit: &GetAutocommitStreamReq{}}},
		{Request: &StreamRequest_Close{Close: &CloseStreamReq{}}},
	}}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePipelineReq(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("protobuf decodes to\n%#v\nJSON to\n%#v", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	bad := []*PipelineReqBody{
		{Requests: []*StreamRequest{{}}}, // no request type
		{Requests: []*StreamRequest{{Request: &StreamRequest_Execute{Execute: &ExecuteStreamReq{}}}}},                                // no stmt
		{Requests: []*StreamRequest{{Request: &StreamRequest_Execute{Execute: &ExecuteStreamReq{Stmt: &Stmt{Args: []*Value{{}}}}}}}}, // no value type
	}
	for i, m := range bad {
		b, _ := proto.Marshal(m)
		if _, err := DecodePipelineReq(b); !errors.Is(err, hrana.ErrInvalid) {
			t.Errorf("case %d: %v, want ErrInvalid", i, err)
		}
	}
	if _, err := DecodePipelineReq([]byte{0xff, 0xff}); !errors.Is(err, hrana.ErrInvalid) {
		t.Errorf("garbage: %v", err)
	}
	deep := &BatchCond{Cond: &BatchCond_IsAutocommit_{IsAutocommit: &BatchCond_IsAutocommit{}}}
	for range hrana.MaxCondDepth + 1 {
		deep = &BatchCond{Cond: &BatchCond_Not{Not: deep}}
	}
	b, _ := proto.Marshal(&CursorReqBody{Batch: &Batch{Steps: []*BatchStep{{Condition: deep, Stmt: &Stmt{Sql: ptr("SELECT 1")}}}}})
	if _, err := DecodeCursorReq(b); !errors.Is(err, hrana.ErrInvalid) {
		t.Errorf("deep condition: %v", err)
	}
}

func TestEncodePipelineResp(t *testing.T) {
	name, rowid := "a", int64(-5)
	resp := &hrana.PipelineRespBody{Baton: ptr("b2"), Results: []hrana.StreamResult{
		{Type: hrana.ResultOK, Response: &hrana.StreamResponse{Type: hrana.ReqExecute, StmtResult: &hrana.StmtResult{
			Cols: []hrana.Col{{Name: &name}}, Rows: [][]hrana.Value{{hrana.Integer(1), hrana.Null(), hrana.Blob([]byte{})}},
			AffectedRowCount: 2, LastInsertRowid: &rowid}}},
		{Type: hrana.ResultOK, Response: &hrana.StreamResponse{Type: hrana.ReqBatch, BatchResult: &hrana.BatchResult{
			StepResults: []*hrana.StmtResult{nil, {}}, StepErrors: []*hrana.Error{{Message: "m", Code: "SQLITE_CONSTRAINT"}, nil}}}},
		{Type: hrana.ResultOK, Response: &hrana.StreamResponse{Type: hrana.ReqGetAutocommit, IsAutocommit: true}},
		{Type: hrana.ResultError, Error: &hrana.Error{Message: "x", Code: "SQLITE_ERROR"}},
	}}
	b, err := EncodePipelineResp(resp)
	if err != nil {
		t.Fatal(err)
	}
	var m PipelineRespBody
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	ex := m.Results[0].GetOk().GetExecute().GetResult()
	if m.GetBaton() != "b2" || ex.GetAffectedRowCount() != 2 || ex.GetLastInsertRowid() != -5 || ex.Cols[0].GetName() != "a" ||
		ex.Rows[0].Values[0].GetInteger() != 1 || ex.Rows[0].Values[1].GetNull() == nil || ex.Rows[0].Values[2].GetValue() == nil {
		t.Errorf("execute result: %v", ex)
	}
	br := m.Results[1].GetOk().GetBatch().GetResult()
	if len(br.StepResults) != 1 || br.StepResults[1] == nil || len(br.StepErrors) != 1 || br.StepErrors[0].GetCode() != "SQLITE_CONSTRAINT" {
		t.Errorf("batch result: %v", br)
	}
	if !m.Results[2].GetOk().GetGetAutocommit().GetIsAutocommit() {
		t.Error("get_autocommit lost")
	}
	if m.Results[3].GetError().GetCode() != "SQLITE_ERROR" {
		t.Errorf("error: %v", m.Results[3])
	}
}
