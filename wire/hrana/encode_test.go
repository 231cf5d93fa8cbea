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
