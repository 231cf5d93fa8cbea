package hrana

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

const clientID = "a-0672ac4f-aa46-411c-9875-55a63a62246a"

// Call 1 of every push, byte for byte as the real client sent it
// (turso-js-client.md §3.2).
const capturedHighWaterReq = `{"baton":null,"requests":[{"type":"batch","batch":{"steps":[{"condition":null,"stmt":{` +
	`"sql":"SELECT pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id = ?",` +
	`"sql_id":null,"args":[{"type":"text","value":"` + clientID + `"}],` +
	`"named_args":[],"want_rows":true,"replication_index":null}}],"replication_index":null}}]}`

func stmt(sql string, wantRows bool, args ...Value) Stmt {
	return Stmt{SQL: &sql, Args: args, WantRows: &wantRows}
}

func TestCapturedHighWaterRequest(t *testing.T) {
	want := &PipelineReqBody{Requests: []StreamRequest{{Type: ReqBatch, Batch: &Batch{Steps: []BatchStep{{
		Stmt: stmt("SELECT pull_gen, change_id FROM turso_sync_last_change_id WHERE client_id = ?", true, Text(clientID)),
	}}}}}}
	got, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != capturedHighWaterReq {
		t.Fatalf("marshal =\n%s\nwant\n%s", got, capturedHighWaterReq)
	}
	dec, err := DecodePipelineReq([]byte(capturedHighWaterReq))
	if err != nil {
		t.Fatal(err)
	}
	want.Requests[0].Batch.Steps[0].Stmt.NamedArgs = []NamedArg{} // decoded from []
	if !reflect.DeepEqual(dec, want) {
		t.Fatalf("decoded %+v", dec)
	}
}

// pushBatch is the shape of push call 2 (turso-js-client.md §3.2): every
// step after BEGIN runs only inside the transaction.
func pushBatch() *PipelineReqBody {
	inTx := &BatchCond{Type: CondNot, Cond: &BatchCond{Type: CondIsAutocommit}}
	steps := []BatchStep{
		{Stmt: stmt("BEGIN IMMEDIATE", false)},
		{Condition: inTx, Stmt: stmt("CREATE TABLE IF NOT EXISTS turso_sync_last_change_id (client_id TEXT PRIMARY KEY, pull_gen INTEGER, change_id INTEGER)", false)},
		{Condition: inTx, Stmt: stmt(`INSERT INTO "t"("id", "name", "n", "b") VALUES (?,?,?,?) ON CONFLICT("id") DO UPDATE SET "id" = excluded."id","name" = excluded."name","n" = excluded."n","b" = excluded."b"`,
			false, Integer(1), Text("alice"), Float(1.5), Blob([]byte{1, 2, 3}))},
		{Condition: inTx, Stmt: stmt(`UPDATE "t" SET "name" = ? WHERE "id" = ?`, false, Text("bobby"), Integer(2))},
		{Condition: inTx, Stmt: stmt(`INSERT INTO "t"("id", "name", "n", "b") VALUES (?,?,?,?)`, false, Integer(2), Text("bob"), Null(), Null())},
		{Condition: inTx, Stmt: stmt("COMMIT", false)},
	}
	return &PipelineReqBody{Requests: []StreamRequest{{Type: ReqBatch, Batch: &Batch{Steps: steps}}}}
}

func TestPushBatchEncoding(t *testing.T) {
	b, err := json.Marshal(pushBatch())
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`{"baton":null,"requests":[{"type":"batch","batch":{"steps":[{"condition":null,"stmt":{"sql":"BEGIN IMMEDIATE","sql_id":null,"args":[],"named_args":[],"want_rows":false,"replication_index":null}},`,
		`{"condition":{"type":"not","cond":{"type":"is_autocommit"}},"stmt":{"sql":"CREATE TABLE`,
		`"args":[{"type":"integer","value":"1"},{"type":"text","value":"alice"},{"type":"float","value":1.5},{"type":"blob","base64":"AQID"}]`,
		`"args":[{"type":"integer","value":"2"},{"type":"text","value":"bob"},{"type":"null"},{"type":"null"}]`,
		`"stmt":{"sql":"COMMIT","sql_id":null,"args":[],"named_args":[],"want_rows":false,"replication_index":null}}],"replication_index":null}}]}`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("encoding lacks %s\nin %s", want, s)
		}
	}
	dec, err := DecodePipelineReq(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(dec)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != s {
		t.Fatalf("decode/encode changed the request:\n%s\n%s", again, s)
	}
}

func TestAllRequestTypes(t *testing.T) {
	for _, tc := range []struct {
		req  StreamRequest
		json string
	}{
		{StreamRequest{Type: ReqExecute, Stmt: &Stmt{SQL: ptr("SELECT 1"), NamedArgs: []NamedArg{{":a", Integer(1)}}, ReplicationIndex: ptr(uint64(7))}},
			`{"type":"execute","stmt":{"sql":"SELECT 1","sql_id":null,"args":[],"named_args":[{"name":":a","value":{"type":"integer","value":"1"}}],"want_rows":null,"replication_index":"7"}}`},
		{StreamRequest{Type: ReqBatch, Batch: &Batch{}}, `{"type":"batch","batch":{"steps":[],"replication_index":null}}`},
		{StreamRequest{Type: ReqSequence, SQL: ptr("BEGIN; COMMIT")}, `{"type":"sequence","sql":"BEGIN; COMMIT","sql_id":null}`},
		{StreamRequest{Type: ReqDescribe, SQLID: ptr(int32(3))}, `{"type":"describe","sql":null,"sql_id":3}`},
		{StreamRequest{Type: ReqStoreSQL, SQL: ptr("SELECT ?"), SQLID: ptr(int32(-1))}, `{"type":"store_sql","sql_id":-1,"sql":"SELECT ?"}`},
		{StreamRequest{Type: ReqCloseSQL, SQLID: ptr(int32(2))}, `{"type":"close_sql","sql_id":2}`},
		{StreamRequest{Type: ReqClose}, `{"type":"close"}`},
	} {
		got, err := json.Marshal(tc.req)
		if err != nil {
			t.Fatalf("marshal %s: %v", tc.req.Type, err)
		}
		if string(got) != tc.json {
			t.Errorf("marshal = %s, want %s", got, tc.json)
		}
		var back StreamRequest
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", got, err)
		}
		if tc.req.Stmt != nil {
			tc.req.Stmt.Args = []Value{}
		}
		if tc.req.Batch != nil {
			tc.req.Batch.Steps = []BatchStep{}
		}
		if !reflect.DeepEqual(back, tc.req) {
			t.Errorf("round trip of %s = %+v", got, back)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	for _, in := range []string{
		`{"baton":null,"requests":[{"type":"frobnicate"}]}`,
		`{"requests":[{"stmt":{"sql":"x"}}]}`,
		`{"requests":[{"type":"execute"}]}`,
		`{"requests":[{"type":"execute","stmt":null}]}`,
		`{"requests":[{"type":"batch"}]}`,
		`{"requests":[{"type":"store_sql","sql":"x"}]}`,
		`{"requests":[{"type":"store_sql","sql_id":1}]}`,
		`{"requests":[{"type":"close_sql"}]}`,
		`{"requests":[{"type":"execute","stmt":{"sql":"x","args":[{"type":"integer","value":"x"}]}}]}`,
		`{"requests":[{"type":"execute","stmt":{"sql":"x","replication_index":5}}]}`,
		`{"requests":[{"type":"execute","stmt":{"sql":"x","sql_id":4294967296}}]}`,
		`{"requests":[{"type":"batch","batch":{"steps":[{"condition":{"type":"maybe"},"stmt":{}}]}}]}`,
		`{"requests":[{"type":"batch","batch":{"steps":[{"condition":{"type":"ok"},"stmt":{}}]}}]}`,
		`{"requests":[{"type":"batch","batch":{"steps":[{"condition":{"type":"ok","step":-1},"stmt":{}}]}}]}`,
		`{"requests":[{"type":"batch","batch":{"steps":[{"condition":{"type":"not"},"stmt":{}}]}}]}`,
		`{"requests":[{"type":"batch","batch":{"steps":[{"condition":{"type":"and"},"stmt":{}}]}}]}`,
		`{"requests":{}}`,
		`{"requests":[}`,
		``,
		`[]`,
	} {
		if p, err := DecodePipelineReq([]byte(in)); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodePipelineReq(%s) = %+v, %v; want ErrInvalid", in, p, err)
		}
	}
	for _, r := range []StreamRequest{
		{Type: "bogus"}, {Type: ReqExecute}, {Type: ReqBatch}, {Type: ReqStoreSQL, SQL: ptr("x")}, {Type: ReqCloseSQL},
		{Type: ReqExecute, Stmt: &Stmt{Args: []Value{{V: uint8(1)}}}},
		{Type: ReqBatch, Batch: &Batch{Steps: []BatchStep{{Condition: &BatchCond{Type: CondNot}}}}},
	} {
		if _, err := json.Marshal(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("marshal %+v: %v, want ErrInvalid", r, err)
		}
	}
}

func TestBatchConds(t *testing.T) {
	c := BatchCond{Type: CondAnd, Conds: []BatchCond{
		{Type: CondOK, Step: 0},
		{Type: CondOr, Conds: []BatchCond{{Type: CondError, Step: 4294967295}, {Type: CondIsAutocommit}}},
		{Type: CondNot, Cond: &BatchCond{Type: CondOr, Conds: []BatchCond{}}},
	}}
	want := `{"type":"and","conds":[{"type":"ok","step":0},{"type":"or","conds":[{"type":"error","step":4294967295},{"type":"is_autocommit"}]},{"type":"not","cond":{"type":"or","conds":[]}}]}`
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("marshal = %s\nwant %s", b, want)
	}
	var back BatchCond
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip = %+v", back)
	}
}

func nestedNot(depth int) string {
	return strings.Repeat(`{"type":"not","cond":`, depth-1) + `{"type":"is_autocommit"}` + strings.Repeat("}", depth-1)
}

func nestedAnd(depth int) string {
	return strings.Repeat(`{"type":"and","conds":[`, depth-1) + `{"type":"is_autocommit"}` + strings.Repeat("]}", depth-1)
}

func TestBatchCondDepth(t *testing.T) {
	for _, nest := range []func(int) string{nestedNot, nestedAnd} {
		var c BatchCond
		if err := json.Unmarshal([]byte(nest(MaxCondDepth)), &c); err != nil {
			t.Fatalf("depth %d rejected: %v", MaxCondDepth, err)
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("depth %d not encodable: %v", MaxCondDepth, err)
		}
		deeper := BatchCond{Type: CondNot, Cond: &c}
		if _, err := json.Marshal(deeper); !errors.Is(err, ErrInvalid) {
			t.Fatalf("encoding depth %d: %v, want ErrInvalid", MaxCondDepth+1, err)
		}
		for _, depth := range []int{MaxCondDepth + 1, 5000, 200000} {
			err := json.Unmarshal([]byte(nest(depth)), &c)
			if err == nil {
				t.Fatalf("depth %d accepted", depth)
			}
		}
	}
}

// Responses the real client accepted (turso-js-client.md §3.2).
func TestCapturedResponses(t *testing.T) {
	noTable := `{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"batch","result":{` +
		`"step_results":[null],"step_errors":[{"message":"no such table: turso_sync_last_change_id","code":"SQLITE_ERROR"}]}}}]}`
	row := `{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"batch","result":{` +
		`"step_results":[{"cols":[{"name":"pull_gen","decltype":"INTEGER"},{"name":"change_id","decltype":null}],` +
		`"rows":[[{"type":"integer","value":"0"},{"type":"integer","value":"7"}]],"affected_row_count":0,"last_insert_rowid":null}],` +
		`"step_errors":[null]}}}]}`
	minimal := `{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"batch","result":{` +
		`"step_results":[{"cols":[],"rows":[],"affected_row_count":0,"last_insert_rowid":null}],"step_errors":[null]}}}]}`

	p, err := DecodePipelineResp([]byte(noTable))
	if err != nil {
		t.Fatal(err)
	}
	br := p.Results[0].Response.BatchResult
	if br.StepResults[0] != nil || br.StepErrors[0].Code != "SQLITE_ERROR" || !strings.Contains(br.StepErrors[0].Error(), "no such table") {
		t.Fatalf("decoded %+v", br)
	}

	p, err = DecodePipelineResp([]byte(row))
	if err != nil {
		t.Fatal(err)
	}
	sr := p.Results[0].Response.BatchResult.StepResults[0]
	if len(sr.Rows) != 1 || sr.Rows[0][0] != Integer(0) || sr.Rows[0][1] != Integer(7) ||
		*sr.Cols[0].Name != "pull_gen" || sr.Cols[1].Decltype != nil || sr.LastInsertRowid != nil {
		t.Fatalf("decoded %+v", sr)
	}

	if _, err := DecodePipelineResp([]byte(minimal)); err != nil {
		t.Fatal(err)
	}
}

func TestResponseEncoding(t *testing.T) {
	resp := PipelineRespBody{Results: []StreamResult{
		{Type: ResultOK, Response: &StreamResponse{Type: ReqBatch, BatchResult: &BatchResult{
			StepResults: []*StmtResult{{}, nil, {
				Cols:             []Col{{Name: ptr("id"), Decltype: ptr("INTEGER")}},
				Rows:             [][]Value{{Integer(-1)}, nil},
				AffectedRowCount: 1, LastInsertRowid: ptr(int64(-9223372036854775808)),
				ReplicationIndex: ptr(uint64(18446744073709551615)),
				RowsRead:         2, RowsWritten: 3, QueryDurationMS: 0.25,
			}},
			StepErrors: []*Error{nil, {Message: "boom", Code: "SQLITE_CONSTRAINT"}, nil},
		}}},
		{Type: ResultError, Error: &Error{Message: "stream expired", Code: "STREAM_EXPIRED"}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute, StmtResult: &StmtResult{}}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqClose}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqDescribe, DescribeResult: &DescribeResult{
			Params: []DescribeParam{{}, {Name: ptr(":x")}}, IsReadonly: true}}},
	}}
	want := `{"baton":null,"base_url":null,"results":[` +
		`{"type":"ok","response":{"type":"batch","result":{"step_results":[` +
		`{"cols":[],"rows":[],"affected_row_count":0,"last_insert_rowid":null,"replication_index":null,"rows_read":0,"rows_written":0,"query_duration_ms":0},` +
		`null,` +
		`{"cols":[{"name":"id","decltype":"INTEGER"}],"rows":[[{"type":"integer","value":"-1"}],[]],"affected_row_count":1,` +
		`"last_insert_rowid":"-9223372036854775808","replication_index":"18446744073709551615","rows_read":2,"rows_written":3,"query_duration_ms":0.25}],` +
		`"step_errors":[null,{"message":"boom","code":"SQLITE_CONSTRAINT"},null],"replication_index":null}}},` +
		`{"type":"error","error":{"message":"stream expired","code":"STREAM_EXPIRED"}},` +
		`{"type":"ok","response":{"type":"execute","result":{"cols":[],"rows":[],"affected_row_count":0,"last_insert_rowid":null,"replication_index":null,"rows_read":0,"rows_written":0,"query_duration_ms":0}}},` +
		`{"type":"ok","response":{"type":"close"}},` +
		`{"type":"ok","response":{"type":"describe","result":{"params":[{"name":null},{"name":":x"}],"cols":[],"is_explain":false,"is_readonly":true}}}]}`
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("marshal =\n%s\nwant\n%s", b, want)
	}
	if resp.Results[0].Response.BatchResult.StepResults[2].Rows[1] != nil {
		t.Fatal("MarshalJSON modified the caller's rows")
	}
	dec, err := DecodePipelineResp(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(dec)
	if err != nil || string(again) != want {
		t.Fatalf("re-encoding: %v\n%s", err, again)
	}
	if e := dec.Results[1].Error; e.Error() != "stream expired (STREAM_EXPIRED)" {
		t.Fatalf("Error() = %q", e.Error())
	}
}

func TestResponseErrors(t *testing.T) {
	for _, in := range []string{
		`{"results":[{"type":"none"}]}`,
		`{"results":[{"type":"ok"}]}`,
		`{"results":[{"type":"ok","response":null}]}`,
		`{"results":[{"type":"error"}]}`,
		`{"results":[{"type":"ok","response":{"type":"execute"}}]}`,
		`{"results":[{"type":"ok","response":{"type":"batch","result":null}}]}`,
		`{"results":[{"type":"ok","response":{"type":"cursor"}}]}`,
		`{"results":[{"type":"ok","response":{"type":"execute","result":{"last_insert_rowid":5}}}]}`,
		`{"results":[{"type":"ok","response":{"type":"execute","result":{"last_insert_rowid":"x"}}}]}`,
		`{"results":[{"type":"ok","response":{"type":"execute","result":{"rows":[[1]]}}}]}`,
		`{"results":[{"type":"ok","response":{"type":"execute","result":{"affected_row_count":-1}}}]}`,
		`{"results":"x"}`,
		`not json`,
	} {
		if p, err := DecodePipelineResp([]byte(in)); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodePipelineResp(%s) = %+v, %v; want ErrInvalid", in, p, err)
		}
	}
	for _, r := range []StreamResult{
		{Type: ResultOK}, {Type: ResultError}, {Type: "none"},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute}},
		{Type: ResultOK, Response: &StreamResponse{Type: "cursor"}},
		{Type: ResultOK, Response: &StreamResponse{Type: ReqExecute, StmtResult: &StmtResult{Rows: [][]Value{{Float(math.NaN())}}}}},
	} {
		if _, err := json.Marshal(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("marshal %+v: %v, want ErrInvalid", r, err)
		}
	}
}

var quickCondSeeds = []string{
	`{"type":"ok","step":0}`, `{"type":"error","step":4294967295}`, `{"type":"ok","step":4294967296}`,
	`{"type":"ok","step":01}`, `{"type":"ok","step":-1}`, `{"type":"ok","step":1.0}`, `{"type":"ok"}`,
	`{"type":"is_autocommit"}`, `{"type":"not","cond":{"type":"is_autocommit"}}`, `{"type":"not","cond":null}`,
	`{"type":"and","conds":[{"type":"not","cond":{"type":"is_autocommit"}},{"type":"ok","step":2}]}`,
	`{"type":"or","conds":[{"type":"ok","step":1},{"type":"error","step":1}]}`, `{"type":"and","conds":[]}`,
	`{"type":"and","conds":[{"type":"ok","step":1},]}`, `{"type":"and","conds":[{"type":"ok","step":1}`,
	`{"type":"and","conds":[{"type":"ok","step":1}]`, `{"type":"ok","step":1,"step":2}`, `{"type":"ok", "step":1}`,
	`{"type":"bogus"}`, `{"type":"ok","step":1}x`, nestedNot(MaxCondDepth), nestedNot(MaxCondDepth + 1),
	nestedAnd(MaxCondDepth), nestedAnd(MaxCondDepth + 1),
}

// quickCond agrees with decoding through encoding/json wherever it
// decodes a whole input.
func TestQuickCondAgrees(t *testing.T) {
	for _, s := range quickCondSeeds {
		checkQuickCond(t, []byte(s))
	}
	// What clients send takes the quick path.
	for _, s := range []string{quickCondSeeds[0], quickCondSeeds[1], quickCondSeeds[10], quickCondSeeds[11], quickCondSeeds[12],
		nestedNot(MaxCondDepth), nestedAnd(MaxCondDepth)} {
		if _, rest, ok := quickCond([]byte(s), 1); !ok || len(rest) != 0 {
			t.Errorf("%.80s: not decoded by quickCond", s)
		}
	}
}

func FuzzQuickCond(f *testing.F) {
	for _, s := range quickCondSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkQuickCond)
}

func checkQuickCond(t *testing.T, b []byte) {
	quick, rest, ok := quickCond(b, 1)
	if !ok || len(rest) != 0 {
		return
	}
	var slow BatchCond
	if err := slow.decode(b); err != nil {
		t.Fatalf("%q: quick decodes %+v, encoding/json refuses: %v", b, quick, err)
	}
	if !reflect.DeepEqual(quick, slow) {
		t.Fatalf("%q: quick decodes %+v, encoding/json %+v", b, quick, slow)
	}
}

// Request bodies with keys given twice, in another case or escaped: of a
// top-level key the last one counts, as encoding/json has it, and nothing
// of an earlier value stays behind in it; a key repeated inside a request
// is merged, by encoding/json and by DecodePipelineReq alike (the seeds
// with "stmt" and "type" twice).
var dupKeySeeds = []string{
	`{"requests":[{"type":"execute","stmt":{"sql":"DELETE FROM t WHERE a = ?","args":[{"type":"integer","value":"1"}]}}],` +
		`"requests":[{"type":"execute","stmt":{"sql":"DELETE FROM t"}}]}`,
	`{"requests":[{"type":"store_sql","sql_id":1,"sql":"SELECT 1"}],"requests":[{"sql_id":2}]}`,
	`{"requests":[{"type":"batch","batch":{"steps":[{"condition":{"type":"ok","step":0},"stmt":{"sql":"a"}}]}}],` +
		`"requests":[{"type":"batch","batch":{"steps":[{"stmt":{"sql":"b"}}]}}]}`,
	`{"requests":[{"type":"execute","stmt":{"sql":"a","want_rows":false}},{"type":"close"}],"REQUESTS":[{"type":"execute","stmt":{"sql":"b"}}]}`,
	`{"Requests":[{"type":"sequence","sql":"x"}],"requeſtſ":[{"type":"sequence","sql_id":3}]}`,
	`{"\u0072equests":[{"type":"describe","sql":"x"}],"requests":[{"type":"describe","sql_id":4}]}`,
	`{"requests":[{"type":"execute","stmt":{"sql":"x"}}],"requests":null}`,
	`{"requests":[{"type":"execute","stmt":{"sql":"x"}}],"requests":[]}`,
	`{"baton":"a","requests":[],"baton":null}`, `{"baton":"a","Baton":"b","requests":[]}`,
	`{"requests":[{"type":"execute","stmt":{"sql":"a","args":[{"type":"integer","value":"1"}]},"stmt":{"sql":"b"}}]}`,
	`{"requests":[{"type":"close","type":"execute","stmt":{"sql":"a"}}]}`,
	`{"requests":[],"other":{"requests":[{"type":"bogus"}]},"x":[1,{"a":null}]}`,
	` {"requests":[]} `, `{"requests":[]} x`, `{"requests":[]}{}`, `null`, `[]`, `"x"`, `{"requests":[]`, `{"requests":[],}`,
	`{"requests":{}}`, `{"baton":5,"requests":[]}`, `{}`, ``,
	// Escaped keys (unescapeKey): spelling a field or not.
	`{"\u0062aton":"x","requests":[{"type":"close"}],"ba\u0054on":"y"}`,
	`{"requests":[{"type":"close"}],"re\u0071ues\u0074s":[],"\u0052EQUEST\u0053":null}`,
	`{"requests":[{"type":"close"}],"re\u0071ue\u017Ft\u017f":[{"type":"get_autocommit"}]}`,
	`{"requests":[{"type":"close"}],"\u0072\u0065\u0071\u0075\u0065\u0073\u0074\u0073":[{"type":"sequence","sql":"y"}]}`,
	`{"requests":[{"type":"close"}],"\u0072\u0065\u0071\u0075\u0065\u0073\u0074\u0073\u0073":[]}`,
	`{"requests":[{"type":"close"}],"\ud83d\ude00":[],"\ud800requests":[],"requests\ud800":[],"\/\"\\\b\f\n\r\t":[]}`,
	`{"requests":[{"type":"close"}],"\u0000requests":[],"re\u0000quests":[],"requests\u0000":[],"x\u0000":1}`,
	`{"requests":[{"type":"close"}],"re\u0071uests":[{"type":"bogus"}],"requests":[]}`,
	`{"requests":[{"type":"close"}],"re\u0071uests":[{"type":"close"}],"baton":"a","x":{"requests":5,"a":[1,"]}"]},"y":"}","z":-1.5e3 }`,
	`{"\u0062aton":"x","requests":[]} x`, `{"\u0062aton":"x","requests":[]`, `{"\u0062aton":"x","requests":[],}`, `{"\u0062aton":"x" "requests":[]}`,
	`{"\u0062aton":"x","requests":[]}{}`, `{"\u0062aton":"x","requests":[{"type":"close",}]}`, `{"\u0062aton:"x"}`, `{"\u00":1}`,
}

func TestDecodePipelineReqDuplicateKeys(t *testing.T) {
	for _, s := range dupKeySeeds {
		checkDecodeAgrees(t, []byte(s))
	}
	// What clients send takes the one pass; a repeated key does not.
	push, err := json.Marshal(pushBatch())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(push), capturedHighWaterReq, ` { "baton" : "x" , "requests" : [ ] , "x" : { "requests" : 1 } } `, `null`} {
		if repeatsKeys([]byte(s)) {
			t.Errorf("%.80s: repeatsKeys", s)
		}
	}
	for _, s := range dupKeySeeds[:10] {
		if !repeatsKeys([]byte(s)) {
			t.Errorf("%s: not repeatsKeys", s)
		}
	}
}

func FuzzDecodePipelineReqAgrees(f *testing.F) {
	for _, s := range append(dupKeySeeds, reqSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDecodeAgrees)
}

// checkDecodeAgrees compares DecodePipelineReq with encoding/json
// decoding the body as PipelineReqBody (StreamRequest.UnmarshalJSON
// decoding each request into a value of its own): both refuse b, or both
// decode it to the same requests.
func checkDecodeAgrees(t *testing.T, b []byte) {
	t.Helper()
	var want PipelineReqBody
	werr := json.Unmarshal(b, &want)
	got, err := DecodePipelineReq(b)
	agree(t, "DecodePipelineReq", b, got, err, &want, werr)
	got, err = decodeByKey(b) // the exact path alone
	agree(t, "decodeByKey", b, got, err, &want, werr)
}

func agree(t *testing.T, name string, b []byte, got *PipelineReqBody, err error, want *PipelineReqBody, werr error) {
	t.Helper()
	switch {
	case err != nil && werr != nil:
	case err != nil:
		t.Fatalf("%s: %s refuses it (%v), encoding/json gives %s", b, name, err, dump(want))
	case werr != nil:
		t.Fatalf("%s: %s gives %s, encoding/json refuses it (%v)", b, name, dump(got), werr)
	case !reflect.DeepEqual(got, want):
		t.Fatalf("%s: %s gives %s, encoding/json %s", b, name, dump(got), dump(want))
	}
}

func dump(p *PipelineReqBody) string {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Sprintf("%+v (%v)", *p, err)
	}
	return string(b)
}

// junkKeysBody is a request body with one request and then n keys that are
// no field's, half of them "a" and half escaped (so repeatsKeys holds);
// its "requests" key is escaped too if escaped.
func junkKeysBody(n int, escaped bool) []byte {
	var b strings.Builder
	if escaped {
		b.WriteString(`{"r\u0065quests":[{"type":"close"}]`)
	} else {
		b.WriteString(`{"requests":[{"type":"close"}]`)
	}
	for i := range n {
		if i%2 == 0 {
			b.WriteString(`,"a":0`)
		} else {
			b.WriteString(`, "\u0061\n" : {"requests":[1,"x"]}`)
		}
	}
	b.WriteString("}")
	return []byte(b.String())
}

// refusedBody is a request body the decoders refuse, after n requests.
func refusedBody(n int) []byte {
	return []byte(`{"requests":[` + strings.Repeat(`{"type":"close"},`, n) + `{"type":"bogus"}]}`)
}

// TestDecodePipelineReqCost bounds the decoders' work by their
// allocations (which the machine's load does not change; the time is in
// BenchmarkDecodePipelineReq): decodeByKey allocates no more for the keys
// it skips, and DecodePipelineReq decodes a body once, by one decoder: no
// more allocations than that decoder alone, plus its error's.
func TestDecodePipelineReqCost(t *testing.T) {
	allocs := func(f func([]byte) (*PipelineReqBody, error), b []byte) float64 {
		return testing.AllocsPerRun(10, func() { _, _ = f(b) })
	}
	// slack: allocations a run may count outside the decoder
	// (testing.AllocsPerRun reads the process's malloc count, so other
	// goroutines' show, most under go test -race: a CI run saw 12 against
	// 11). What the checks catch is in the thousands: 10,023 for 20,000
	// skipped keys, 2,048 against 1,025 for a body decoded twice.
	const slack = 100
	for _, escaped := range []bool{false, true} {
		few, many := allocs(decodeByKey, junkKeysBody(2, escaped)), allocs(decodeByKey, junkKeysBody(20000, escaped))
		if many > few+slack {
			t.Errorf("decodeByKey, escaped %v: %v allocations for 20000 keys it skips, %v for 2", escaped, many, few)
		}
		if many := allocs(DecodePipelineReq, junkKeysBody(20000, escaped)); many > few+slack {
			t.Errorf("DecodePipelineReq, escaped %v: %v allocations for 20000 keys it skips, decodeByKey %v for 2", escaped, many, few)
		}
	}
	const errAllocs = slack // invalid's wrapping (3), and the slack above
	for _, c := range []struct {
		name   string
		b      []byte
		decode func([]byte) (*PipelineReqBody, error)
	}{
		{"a body the one pass refuses, no key repeated", refusedBody(1000), decodeOnePass},
		{"a body decodeByKey refuses", append([]byte(`{"\u0062aton":null,`), refusedBody(1000)[1:]...), decodeByKey},
		{"a body with a key repeated", []byte(`{"requests":[],"requests":[` + strings.Repeat(`{"type":"close"},`, 1000) + `{"type":"close"}]}`), decodeByKey},
	} {
		if got, want := allocs(DecodePipelineReq, c.b), allocs(c.decode, c.b); got > want+errAllocs {
			t.Errorf("%s: DecodePipelineReq %v allocations, the decoder alone %v", c.name, got, want)
		}
	}
}

// BenchmarkDecodePipelineReq compares the one pass with decodeByKey, on a
// push body and on a body of 4 MiB of keys the decoders skip (which
// decodeByKey, taking a json.Decoder, used to take 6 to 13 times as long
// as the one pass over).
func BenchmarkDecodePipelineReq(b *testing.B) {
	push, err := json.Marshal(pushBatch())
	if err != nil {
		b.Fatal(err)
	}
	junk := junkKeysBody(4<<20/20, false)
	for _, c := range []struct {
		name   string
		body   []byte
		decode func([]byte) (*PipelineReqBody, error)
	}{
		{"push/one-pass", push, decodeOnePass},
		{"push/by-key", push, decodeByKey},
		{"push/DecodePipelineReq", push, DecodePipelineReq},
		{"junk/one-pass", junk, decodeOnePass},
		{"junk/by-key", junk, decodeByKey},
		{"junk/DecodePipelineReq", junkKeysBody(4<<20/20, true), DecodePipelineReq},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, err := c.decode(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
