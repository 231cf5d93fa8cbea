package hrana

import (
	"encoding/json"
	"math"
	"testing"
)

// The encoders of the response types as they were, with encoding/json's
// reflection over plain mirrors of them, the reference the appending
// encoders must match byte for byte.
type (
	refPipelineResp struct {
		Baton   *string     `json:"baton"`
		BaseURL *string     `json:"base_url"`
		Results []refResult `json:"results"`
	}
	refResult struct {
		Type     string       `json:"type"`
		Response *refResponse `json:"response,omitempty"`
		Error    *Error       `json:"error,omitempty"`
	}
	refResponse struct {
		typ    string
		result any
		auto   *bool
	}
	refStmtResult struct {
		Cols             []Col     `json:"cols"`
		Rows             [][]Value `json:"rows"`
		AffectedRowCount uint64    `json:"affected_row_count"`
		LastInsertRowid  *int64    `json:"last_insert_rowid,string"`
		ReplicationIndex *uint64   `json:"replication_index,string"`
		RowsRead         uint64    `json:"rows_read"`
		RowsWritten      uint64    `json:"rows_written"`
		QueryDurationMS  float64   `json:"query_duration_ms"`
	}
	refBatchResult struct {
		StepResults      []*refStmtResult `json:"step_results"`
		StepErrors       []*Error         `json:"step_errors"`
		ReplicationIndex *uint64          `json:"replication_index,string"`
	}
)

func (r refResponse) MarshalJSON() ([]byte, error) {
	switch {
	case r.auto != nil:
		return json.Marshal(struct {
			Type         string `json:"type"`
			IsAutocommit bool   `json:"is_autocommit"`
		}{r.typ, *r.auto})
	case r.result == nil:
		return json.Marshal(struct {
			Type string `json:"type"`
		}{r.typ})
	}
	return json.Marshal(struct {
		Type   string `json:"type"`
		Result any    `json:"result"`
	}{r.typ, r.result})
}

func refStmt(r *StmtResult) *refStmtResult {
	if r == nil {
		return nil
	}
	out := refStmtResult(*r)
	out.Cols, out.Rows = nonNil(out.Cols), make([][]Value, len(r.Rows))
	for i := range r.Rows {
		out.Rows[i] = nonNil(r.Rows[i])
	}
	return &out
}

func refOf(p *PipelineRespBody) refPipelineResp {
	out := refPipelineResp{Baton: p.Baton, BaseURL: p.BaseURL, Results: []refResult{}}
	for _, r := range p.Results {
		rr := refResult{Type: r.Type, Error: r.Error}
		if resp := r.Response; resp != nil {
			rr.Response = &refResponse{typ: resp.Type}
			switch resp.Type {
			case ReqExecute:
				rr.Response.result = refStmt(resp.StmtResult)
			case ReqBatch:
				br := &refBatchResult{StepErrors: nonNil(resp.BatchResult.StepErrors), StepResults: []*refStmtResult{},
					ReplicationIndex: resp.BatchResult.ReplicationIndex}
				for _, sr := range resp.BatchResult.StepResults {
					br.StepResults = append(br.StepResults, refStmt(sr))
				}
				rr.Response.result = br
			case ReqDescribe:
				rr.Response.result = resp.DescribeResult
			case ReqGetAutocommit:
				rr.Response.auto = &resp.IsAutocommit
			}
		}
		out.Results = append(out.Results, rr)
	}
	return out
}

func TestEncodeAsBefore(t *testing.T) {
	var (
		rowid   = int64(-42)
		repl    = uint64(math.MaxUint64)
		weird   = "a<b>&c\"d\\e\u2028f\x01g\xffh é 🌍"
		ascii   = "json(x) AS guard"
		decl    = "TEXT"
		baton   = "b<1>"
		baseURL = "http://h/x?a=1&b=2"
	)
	floats := []float64{0, math.Copysign(0, -1), 1, 0.001, 0.012, 123.456, 1e-6, 9.99e-7, 1e-7, 1.5e-10, 1e20, 1e21, 1.5e300,
		5e-324, math.MaxFloat64, -2.5e-8}
	var steps []*StmtResult
	for i, f := range floats {
		steps = append(steps, &StmtResult{QueryDurationMS: f, AffectedRowCount: uint64(i), RowsRead: 3, RowsWritten: 4})
	}
	steps = append(steps, nil, &StmtResult{
		Cols:            []Col{{Name: &ascii}, {Name: &weird, Decltype: &decl}, {}},
		Rows:            [][]Value{{{V: nil}, {V: int64(math.MinInt64)}, {V: 1.5}, {V: weird}, {V: []byte{0, 1, 2}}, {V: []byte{}}}, nil, {}},
		LastInsertRowid: &rowid, ReplicationIndex: &repl,
	})
	errs := make([]*Error, len(steps))
	errs[len(errs)-2] = &Error{Message: weird, Code: "SQLITE_CONSTRAINT"}
	bodies := []*PipelineRespBody{
		{},
		{Baton: &baton, BaseURL: &baseURL, Results: []StreamResult{
			{Type: ResultOK, Response: &StreamResponse{Type: ReqBatch, BatchResult: &BatchResult{StepResults: steps, StepErrors: errs, ReplicationIndex: &repl}}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqBatch, BatchResult: &BatchResult{}}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute, StmtResult: &StmtResult{}}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute, StmtResult: steps[len(steps)-1]}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqDescribe, DescribeResult: &DescribeResult{Cols: []DescribeCol{{Name: weird}}, IsReadonly: true}}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqGetAutocommit, IsAutocommit: true}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqGetAutocommit}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqSequence}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqClose}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqStoreSQL}},
			{Type: ResultOK, Response: &StreamResponse{Type: ReqCloseSQL}},
			{Type: ResultError, Error: &Error{Message: "m", Code: ""}},
		}},
	}
	for i, p := range bodies {
		got, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		want, err := json.Marshal(refOf(p))
		if err != nil {
			t.Fatalf("body %d, reference: %v", i, err)
		}
		if string(got) != string(want) {
			t.Errorf("body %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// What the old encoders refused, these refuse.
	for _, bad := range []StreamResult{
		{Type: ResultOK},
		{Type: "bogus", Response: &StreamResponse{Type: ReqClose}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqBatch}},
		{Type: ResultOK, Response: &StreamResponse{Type: "bogus"}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute, StmtResult: &StmtResult{QueryDurationMS: math.NaN()}}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute, StmtResult: &StmtResult{Rows: [][]Value{{{V: math.Inf(1)}}}}}},
	} {
		if b, err := json.Marshal(PipelineRespBody{Results: []StreamResult{bad}}); err == nil {
			t.Errorf("%+v encoded: %s", bad, b)
		}
	}
}

// Mirrors of the request types, encoded as before.
type (
	refReqBody struct {
		Baton    *string `json:"baton"`
		Requests []any   `json:"requests"`
	}
	refStmtJSON struct {
		SQL              *string    `json:"sql"`
		SQLID            *int32     `json:"sql_id"`
		Args             []Value    `json:"args"`
		NamedArgs        []NamedArg `json:"named_args"`
		WantRows         *bool      `json:"want_rows"`
		ReplicationIndex *uint64    `json:"replication_index,string"`
	}
	refStep struct {
		Condition *BatchCond  `json:"condition"`
		Stmt      refStmtJSON `json:"stmt"`
	}
	refBatch struct {
		Steps            []refStep `json:"steps"`
		ReplicationIndex *uint64   `json:"replication_index,string"`
	}
)

func refStmtOf(s *Stmt) *refStmtJSON {
	r := refStmtJSON(*s)
	r.Args, r.NamedArgs = nonNil(r.Args), nonNil(r.NamedArgs)
	return &r
}

func refReqOf(t *testing.T, p *PipelineReqBody) refReqBody {
	out := refReqBody{Baton: p.Baton, Requests: []any{}}
	for _, r := range p.Requests {
		switch r.Type {
		case ReqExecute:
			out.Requests = append(out.Requests, struct {
				Type string       `json:"type"`
				Stmt *refStmtJSON `json:"stmt"`
			}{r.Type, refStmtOf(r.Stmt)})
		case ReqBatch:
			b := &refBatch{Steps: []refStep{}, ReplicationIndex: r.Batch.ReplicationIndex}
			for _, st := range r.Batch.Steps {
				b.Steps = append(b.Steps, refStep{Condition: st.Condition, Stmt: *refStmtOf(&st.Stmt)})
			}
			out.Requests = append(out.Requests, struct {
				Type  string    `json:"type"`
				Batch *refBatch `json:"batch"`
			}{r.Type, b})
		default:
			o, err := r.marshalOther()
			if err != nil {
				t.Fatal(err)
			}
			out.Requests = append(out.Requests, json.RawMessage(o))
		}
	}
	return out
}

func TestEncodeRequestAsBefore(t *testing.T) {
	var (
		weird = "a<b>&c\"d\\e\u2028f\x01g\xffh é 🌍"
		sql   = "SELECT json(CASE WHEN ? THEN '0' ELSE 'x' END) AS guard"
		id    = int32(-7)
		yes   = true
		no    = false
		repl  = uint64(12)
	)
	vals := []Value{{V: nil}, {V: int64(math.MinInt64)}, {V: -0.5}, {V: 1e-7}, {V: weird}, {V: "plain"}, {V: ""}, {V: []byte{9, 8}}, {V: []byte{}}}
	stmts := []Stmt{
		{},
		{SQL: &sql, Args: vals, WantRows: &no},
		{SQLID: &id, NamedArgs: []NamedArg{{Name: ":a", Value: Value{V: weird}}, {Name: weird, Value: Value{V: int64(1)}}}, WantRows: &yes, ReplicationIndex: &repl},
	}
	cond := &BatchCond{Type: CondAnd, Conds: []BatchCond{{Type: CondNot, Cond: &BatchCond{Type: CondIsAutocommit}}, {Type: CondOK, Step: 3}}}
	bodies := []*PipelineReqBody{
		{},
		{Baton: &weird, Requests: []StreamRequest{
			{Type: ReqBatch, Batch: &Batch{Steps: []BatchStep{{Stmt: stmts[0]}, {Condition: cond, Stmt: stmts[1]}, {Condition: cond, Stmt: stmts[2]}}, ReplicationIndex: &repl}},
			{Type: ReqBatch, Batch: &Batch{}},
			{Type: ReqExecute, Stmt: &stmts[1]},
			{Type: ReqExecute, Stmt: &stmts[2]},
			{Type: ReqSequence, SQL: &sql},
			{Type: ReqDescribe, SQLID: &id},
			{Type: ReqStoreSQL, SQLID: &id, SQL: &weird},
			{Type: ReqCloseSQL, SQLID: &id},
			{Type: ReqClose},
			{Type: ReqGetAutocommit},
		}},
	}
	for i, p := range bodies {
		got, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		want, err := json.Marshal(refReqOf(t, p))
		if err != nil {
			t.Fatalf("body %d, reference: %v", i, err)
		}
		if string(got) != string(want) {
			t.Errorf("body %d:\n got %s\nwant %s", i, got, want)
		}
	}
	for _, bad := range []StreamRequest{
		{Type: ReqExecute}, {Type: ReqBatch}, {Type: "bogus"}, {Type: ReqStoreSQL, SQLID: &id},
		{Type: ReqExecute, Stmt: &Stmt{Args: []Value{{V: math.NaN()}}}},
		{Type: ReqExecute, Stmt: &Stmt{Args: []Value{{V: 5}}}},
		{Type: ReqBatch, Batch: &Batch{Steps: []BatchStep{{Condition: &BatchCond{Type: "bogus"}}}}},
	} {
		if b, err := json.Marshal(PipelineReqBody{Requests: []StreamRequest{bad}}); err == nil {
			t.Errorf("%+v encoded: %s", bad, b)
		}
	}
}
