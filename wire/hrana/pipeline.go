// Package hrana implements the JSON messages of Hrana: over HTTP (v2 and
// v3: POST /v2/pipeline, which the sync client uses to push its changes as
// one SQL batch, /v3/pipeline and /v3/cursor, see cursor.go) and over
// WebSocket (see ws.go). Package hranapb maps the protobuf encoding of
// Hrana 3 to these types.
//
// A request body is {"baton":…,"requests":[…]}; each request is an object
// tagged by "type" (execute, batch, sequence, close, describe, store_sql,
// close_sql). The response is {"baton":…,"base_url":…,"results":[…]} with
// one {"type":"ok","response":{…}} or {"type":"error","error":{…}} per
// request. 64-bit integers (values, last_insert_rowid, replication_index)
// travel as decimal strings.
//
// The types serve both sides: a server decodes requests and encodes
// responses, a client the reverse. Encoding follows the Rust sync client
// field for field, including explicit nulls and empty arrays, because the
// Rust (serde) peer rejects missing required keys such as
// "last_insert_rowid" and null arrays. Decoding is lenient about optional
// and unknown keys but rejects unknown "type" tags.
package hrana

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInvalid is wrapped by errors for messages that are malformed or
// violate the protocol's shapes, in either direction.
var ErrInvalid = errors.New("hrana: invalid message")

// ErrBadValue is wrapped by Value errors; it also matches ErrInvalid.
var ErrBadValue = fmt.Errorf("%w: bad value", ErrInvalid)

// Stream request types.
const (
	ReqExecute  = "execute"
	ReqBatch    = "batch"
	ReqSequence = "sequence"
	ReqClose    = "close"
	ReqDescribe = "describe"
	ReqStoreSQL = "store_sql"
	ReqCloseSQL = "close_sql"
	// ReqGetAutocommit asks whether the stream is outside a transaction
	// (Hrana 3).
	ReqGetAutocommit = "get_autocommit"
)

// Stream result types.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// PipelineReqBody is the body of POST /v2/pipeline.
type PipelineReqBody struct {
	Baton    *string         `json:"baton"`
	Requests []StreamRequest `json:"requests"`
}

func (p PipelineReqBody) MarshalJSON() ([]byte, error) { return p.appendJSON(nil) }

// DecodePipelineReq decodes a request body; every error wraps ErrInvalid.
// It takes what encoding/json takes as a PipelineReqBody and decodes it to
// the same value (FuzzDecodePipelineReqAgrees), in one pass over the body
// where it can: decoded as PipelineReqBody, encoding/json would hand each
// request's bytes to StreamRequest.UnmarshalJSON, which scans them twice
// more (a push batch is megabytes).
//
// One pass decodes the body as pipelineReqWire, which is what encoding/json
// gives unless a key comes twice: it would decode the second "requests"
// array into the elements of the first, keeping whatever only the first
// set (its statements' arguments, say), where StreamRequest.UnmarshalJSON
// starts each request afresh. So repeatsKeys first walks the top-level
// object (no decoding); a body whose keys may repeat is decoded by
// decodeByKey instead, which walks it again and decodes only the values of
// "baton" and "requests". Every body is decoded once: without a repeated
// key, what the one pass refuses encoding/json refuses too. Only the top
// level is so: a key given twice inside a request or statement is merged,
// on both paths as by encoding/json (a second "stmt" is decoded into the
// first, keeping what only the first set).
func DecodePipelineReq(b []byte) (*PipelineReqBody, error) {
	decode := decodeOnePass
	if repeatsKeys(b) {
		decode = decodeByKey
	}
	p, err := decode(b)
	if err != nil {
		return nil, invalid(err)
	}
	return p, nil
}

// pipelineReqWire is a request body in the shape encoding/json decodes in
// one pass.
type pipelineReqWire struct {
	Baton    *string             `json:"baton"`
	Requests []streamRequestWire `json:"requests"`
}

func decodeOnePass(b []byte) (*PipelineReqBody, error) {
	var w pipelineReqWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	p := &PipelineReqBody{Baton: w.Baton}
	if w.Requests != nil {
		p.Requests = make([]StreamRequest, len(w.Requests))
	}
	for i := range w.Requests {
		if err := p.Requests[i].fromWire(&w.Requests[i]); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// repeatsKeys reports whether the object b may have a key of
// PipelineReqBody twice: two keys that fold to the same field name
// (encoding/json matches keys case-insensitively, bytes.EqualFold), or a
// key with an escape, which may spell one. It skips the values without
// decoding them. On a body that is not valid JSON its answer does not
// matter (both decoders refuse it), as long as it returns.
func repeatsKeys(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false // null: no keys (anything else failed to decode)
	}
	baton, requests := 0, 0
	for i++; ; {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		if i >= len(b) || b[i] != '"' {
			return i >= len(b) || b[i] != '}'
		}
		end := stringEnd(b, i)
		if end > len(b) {
			return true
		}
		key := b[i+1 : end-1]
		switch {
		case bytes.IndexByte(key, '\\') >= 0:
			return true
		case bytes.EqualFold(key, []byte("baton")):
			baton++
		case bytes.EqualFold(key, []byte("requests")):
			requests++
		}
		if baton > 1 || requests > 1 {
			return true
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return true
		}
		if i = skipValue(b, skipSpace(b, i+1)); i > len(b) {
			return true
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the JSON string starting at b[i],
// len(b)+1 if it does not end.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return j + 1
		case '\\':
			j++ // the escaped byte (of \uXXXX, the rest are hex digits)
		}
	}
	return len(b) + 1
}

// skipValue returns the index after the JSON value starting at b[i],
// len(b)+1 if it does not end.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b) + 1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b) + 1
	}
	for i < len(b) && !(b[i] == ',' || b[i] == '}' || b[i] == ']' || b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++ // a number, true, false or null
	}
	return i
}

// decodeByKey decodes the body's keys one by one, as encoding/json would
// (the last of a key counts, and every "requests" array must hold valid
// requests). Keys match the fields as encoding/json matches them: exactly,
// else case-folded; any other key's value is skipped, not decoded. After
// json.Valid, it walks the body with the scanner repeatsKeys uses
// (stringEnd, skipValue), unescapes a key only if it has an escape, and
// hands only the values of "baton" and "requests" to encoding/json.
func decodeByKey(b []byte) (*PipelineReqBody, error) {
	if !json.Valid(b) {
		var v struct{}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err // the syntax error, found before any decoding
		}
		return nil, errors.New("malformed JSON")
	}
	// b is one JSON value, with nothing but spaces around it: the walk
	// below need not check its syntax.
	p := &PipelineReqBody{}
	i := skipSpace(b, 0)
	switch b[i] {
	case 'n': // null: encoding/json leaves the body as it is
		return p, nil
	case '{':
	default:
		return nil, fmt.Errorf("a request body is an object, not %.20s", b[i:])
	}
	var buf [maxFieldKey]byte
	for i = skipSpace(b, i+1); b[i] != '}'; {
		end := stringEnd(b, i)
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			key = unescapeKey(buf[:0], key)
		}
		i = skipSpace(b, end)      // at the colon
		start := skipSpace(b, i+1) // the value
		i = skipValue(b, start)    // after it
		var err error
		switch {
		case bytes.EqualFold(key, []byte("baton")):
			var baton *string
			err = json.Unmarshal(b[start:i], &baton)
			p.Baton = baton
		case bytes.EqualFold(key, []byte("requests")):
			p.Requests, err = decodeRequests(b[start:i])
		}
		if err != nil {
			return nil, err
		}
		if i = skipSpace(b, i); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return p, nil
}

// maxFieldKey bounds the length of a key, escapes and all, that may spell
// "baton" or "requests": 8 characters, each at most a 6-byte \uXXXX (the
// characters that fold to theirs are in the BMP).
const maxFieldKey = 6 * len("requests")

// unescapeKey appends to dst the JSON string body key (between the
// quotes, valid JSON) unescaped, as far as matching it with "baton" or
// "requests" goes: a key longer than maxFieldKey gives "" and a UTF-16
// surrogate gives U+FFFD (a pair stands for a rune outside the BMP, which
// matches neither; encoding/json gives U+FFFD for a lone one).
func unescapeKey(dst, key []byte) []byte {
	if len(key) > maxFieldKey {
		return dst
	}
	for j := 0; j < len(key); j++ {
		c := key[j]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		j++
		switch key[j] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			var r rune
			for _, h := range key[j+1 : j+5] {
				r <<= 4
				switch {
				case h <= '9':
					r |= rune(h - '0')
				case h >= 'a':
					r |= rune(h - 'a' + 10)
				default:
					r |= rune(h - 'A' + 10)
				}
			}
			j += 4
			if utf16.IsSurrogate(r) {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // " \ /
			dst = append(dst, key[j])
		}
	}
	return dst
}

// decodeRequests decodes a requests array, b.
func decodeRequests(b []byte) ([]StreamRequest, error) {
	var w []streamRequestWire
	if err := json.Unmarshal(b, &w); err != nil || w == nil {
		return nil, err
	}
	reqs := make([]StreamRequest, len(w))
	for i := range w {
		if err := reqs[i].fromWire(&w[i]); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

// StreamRequest is one request of a pipeline. Type selects which other
// fields are used:
//
//	execute              Stmt
//	batch                Batch
//	sequence, describe   SQL or SQLID
//	store_sql            SQLID and SQL
//	close_sql            SQLID
//	close, get_autocommit (none)
type StreamRequest struct {
	Type  string
	Stmt  *Stmt
	Batch *Batch
	SQL   *string
	SQLID *int32
}

type streamRequestWire struct {
	Type  string  `json:"type"`
	Stmt  *Stmt   `json:"stmt"`
	Batch *Batch  `json:"batch"`
	SQL   *string `json:"sql"`
	SQLID *int32  `json:"sql_id"`
}

func (r StreamRequest) MarshalJSON() ([]byte, error) { return r.appendJSON(nil) }

// marshalOther encodes the requests appendJSON does not itself, and
// refuses the malformed ones.
func (r *StreamRequest) marshalOther() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	// One struct per shape keeps key order and presence identical to the
	// Rust client's output.
	switch r.Type {
	case ReqExecute:
		return json.Marshal(struct {
			Type string `json:"type"`
			Stmt *Stmt  `json:"stmt"`
		}{r.Type, r.Stmt})
	case ReqBatch:
		return json.Marshal(struct {
			Type  string `json:"type"`
			Batch *Batch `json:"batch"`
		}{r.Type, r.Batch})
	case ReqSequence, ReqDescribe:
		return json.Marshal(struct {
			Type  string  `json:"type"`
			SQL   *string `json:"sql"`
			SQLID *int32  `json:"sql_id"`
		}{r.Type, r.SQL, r.SQLID})
	case ReqStoreSQL:
		return json.Marshal(struct {
			Type  string `json:"type"`
			SQLID int32  `json:"sql_id"`
			SQL   string `json:"sql"`
		}{r.Type, *r.SQLID, *r.SQL})
	case ReqCloseSQL:
		return json.Marshal(struct {
			Type  string `json:"type"`
			SQLID int32  `json:"sql_id"`
		}{r.Type, *r.SQLID})
	default: // ReqClose, ReqGetAutocommit
		return json.Marshal(struct {
			Type string `json:"type"`
		}{r.Type})
	}
}

func (r *StreamRequest) UnmarshalJSON(b []byte) error {
	var w streamRequestWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return r.fromWire(&w)
}

// fromWire sets r from its decoded shape and checks it.
func (r *StreamRequest) fromWire(w *streamRequestWire) error {
	*r = StreamRequest{Type: w.Type}
	switch w.Type {
	case ReqExecute:
		r.Stmt = w.Stmt
	case ReqBatch:
		r.Batch = w.Batch
	case ReqSequence, ReqDescribe, ReqStoreSQL:
		r.SQL, r.SQLID = w.SQL, w.SQLID
	case ReqCloseSQL:
		r.SQLID = w.SQLID
	}
	return r.check()
}

func (r *StreamRequest) check() error {
	missing := ""
	switch r.Type {
	case ReqExecute:
		if r.Stmt == nil {
			missing = "stmt"
		}
	case ReqBatch:
		if r.Batch == nil {
			missing = "batch"
		}
	case ReqStoreSQL:
		if r.SQL == nil {
			missing = "sql"
		}
		fallthrough
	case ReqCloseSQL:
		if r.SQLID == nil {
			missing = "sql_id"
		}
	case ReqSequence, ReqDescribe, ReqClose, ReqGetAutocommit:
	default:
		return fmt.Errorf("%w: unknown request type %q", ErrInvalid, r.Type)
	}
	if missing != "" {
		return fmt.Errorf("%w: %s request without %s", ErrInvalid, r.Type, missing)
	}
	return nil
}

// Stmt is one SQL statement, given as text (SQL) or as an id stored with
// store_sql (SQLID), with positional and named arguments. A nil WantRows
// means true, as servers default it.
type Stmt struct {
	SQL              *string    `json:"sql"`
	SQLID            *int32     `json:"sql_id"`
	Args             []Value    `json:"args"`
	NamedArgs        []NamedArg `json:"named_args"`
	WantRows         *bool      `json:"want_rows"`
	ReplicationIndex *uint64    `json:"replication_index,string"`
}

func (s Stmt) MarshalJSON() ([]byte, error) { return s.appendJSON(nil) }

// NamedArg binds a value to a named parameter (":name", "@name", "$name").
type NamedArg struct {
	Name  string `json:"name"`
	Value Value  `json:"value"`
}

// Batch is a list of statements, each run only if its condition holds.
type Batch struct {
	Steps            []BatchStep `json:"steps"`
	ReplicationIndex *uint64     `json:"replication_index,string"`
}

func (b Batch) MarshalJSON() ([]byte, error) { return b.appendJSON(nil) }

// BatchStep is one statement of a batch; a nil Condition always holds.
type BatchStep struct {
	Condition *BatchCond `json:"condition"`
	Stmt      Stmt       `json:"stmt"`
}

// PipelineRespBody is the response body of POST /v2/pipeline.
type PipelineRespBody struct {
	Baton   *string        `json:"baton"`
	BaseURL *string        `json:"base_url"`
	Results []StreamResult `json:"results"`
}

func (p PipelineRespBody) MarshalJSON() ([]byte, error) { return p.appendJSON(nil) }

// DecodePipelineResp decodes a response body; every error wraps ErrInvalid.
func DecodePipelineResp(b []byte) (*PipelineRespBody, error) {
	var p PipelineRespBody
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, invalid(err)
	}
	return &p, nil
}

// StreamResult is the outcome of one request: Type "ok" with Response, or
// "error" with Error.
type StreamResult struct {
	Type     string
	Response *StreamResponse
	Error    *Error
}

type streamResultWire struct {
	Type     string          `json:"type"`
	Response *StreamResponse `json:"response,omitempty"`
	Error    *Error          `json:"error,omitempty"`
}

func (r StreamResult) MarshalJSON() ([]byte, error) { return r.appendJSON(nil) }

func (r *StreamResult) UnmarshalJSON(b []byte) error {
	var w streamResultWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = StreamResult(w)
	return r.check()
}

func (r *StreamResult) check() error {
	switch r.Type {
	case ResultOK:
		if r.Response == nil {
			return fmt.Errorf("%w: ok result without response", ErrInvalid)
		}
		r.Error = nil
	case ResultError:
		if r.Error == nil {
			return fmt.Errorf("%w: error result without error", ErrInvalid)
		}
		r.Response = nil
	default:
		return fmt.Errorf("%w: unknown result type %q", ErrInvalid, r.Type)
	}
	return nil
}

// StreamResponse is the response to a successful request; Type matches the
// request's. StmtResult is set for execute, BatchResult for batch,
// DescribeResult for describe and IsAutocommit for get_autocommit; the
// others carry no data.
type StreamResponse struct {
	Type           string
	StmtResult     *StmtResult
	BatchResult    *BatchResult
	DescribeResult *DescribeResult
	IsAutocommit   bool
}

func (r StreamResponse) MarshalJSON() ([]byte, error) { return r.appendJSON(nil) }

func (r *StreamResponse) UnmarshalJSON(b []byte) error {
	var w struct {
		Type         string          `json:"type"`
		Result       json.RawMessage `json:"result"`
		IsAutocommit bool            `json:"is_autocommit"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = StreamResponse{Type: w.Type}
	var dst any
	switch w.Type {
	case ReqExecute:
		r.StmtResult = new(StmtResult)
		dst = r.StmtResult
	case ReqBatch:
		r.BatchResult = new(BatchResult)
		dst = r.BatchResult
	case ReqDescribe:
		r.DescribeResult = new(DescribeResult)
		dst = r.DescribeResult
	case ReqSequence, ReqClose, ReqStoreSQL, ReqCloseSQL:
		return nil
	case ReqGetAutocommit:
		r.IsAutocommit = w.IsAutocommit
		return nil
	default:
		return fmt.Errorf("%w: unknown response type %q", ErrInvalid, w.Type)
	}
	if len(w.Result) == 0 || string(w.Result) == "null" {
		return fmt.Errorf("%w: %s response without result", ErrInvalid, w.Type)
	}
	return json.Unmarshal(w.Result, dst)
}

// StmtResult is the result of one statement. LastInsertRowid is always
// encoded (as a decimal string or null) because the Rust client requires
// the key; the remaining counters are optional on input.
type StmtResult struct {
	Cols             []Col     `json:"cols"`
	Rows             [][]Value `json:"rows"`
	AffectedRowCount uint64    `json:"affected_row_count"`
	LastInsertRowid  *int64    `json:"last_insert_rowid,string"`
	ReplicationIndex *uint64   `json:"replication_index,string"`
	RowsRead         uint64    `json:"rows_read"`
	RowsWritten      uint64    `json:"rows_written"`
	QueryDurationMS  float64   `json:"query_duration_ms"`
}

func (r StmtResult) MarshalJSON() ([]byte, error) { return r.appendJSON(nil) }

// Col describes a result column.
type Col struct {
	Name     *string `json:"name"`
	Decltype *string `json:"decltype"`
}

// BatchResult has one entry per step in both slices: a result for steps
// that ran successfully, an error for steps that failed, and null in both
// for steps skipped by their condition.
type BatchResult struct {
	StepResults      []*StmtResult `json:"step_results"`
	StepErrors       []*Error      `json:"step_errors"`
	ReplicationIndex *uint64       `json:"replication_index,string"`
}

func (r BatchResult) MarshalJSON() ([]byte, error) { return r.appendJSON(nil) }

// DescribeResult describes a statement without running it.
type DescribeResult struct {
	Params     []DescribeParam `json:"params"`
	Cols       []DescribeCol   `json:"cols"`
	IsExplain  bool            `json:"is_explain"`
	IsReadonly bool            `json:"is_readonly"`
}

func (r DescribeResult) MarshalJSON() ([]byte, error) {
	type plain DescribeResult
	r.Params, r.Cols = nonNil(r.Params), nonNil(r.Cols)
	return json.Marshal(plain(r))
}

// DescribeParam is a statement parameter; Name is nil for "?" parameters.
type DescribeParam struct {
	Name *string `json:"name"`
}

// DescribeCol is a column a statement would return.
type DescribeCol struct {
	Name     string  `json:"name"`
	Decltype *string `json:"decltype"`
}

// Error is an SQL or protocol error reported by the server. Code is a
// SQLite-style code such as "SQLITE_ERROR"; it may be empty on input.
type Error struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Message + " (" + e.Code + ")"
}

// nonNil turns a nil slice into an empty one, which encodes as [] rather
// than null; serde rejects null for a Vec.
func nonNil[S ~[]E, E any](s S) S {
	if s == nil {
		return S{}
	}
	return s
}

func invalid(err error) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}
