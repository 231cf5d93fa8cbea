package hrana

import (
	"encoding/json"
	"fmt"
)

// Hrana over WebSocket (subprotocols hrana1, hrana2 and hrana3, JSON in
// text frames): the client says hello, then sends requests that name a
// stream (or a cursor) by a number it chose; the server answers each
// request by its request_id, in any order.

// Client message types.
const (
	MsgHello   = "hello"
	MsgRequest = "request"
)

// Server message types.
const (
	MsgHelloOK       = "hello_ok"
	MsgHelloError    = "hello_error"
	MsgResponseOK    = "response_ok"
	MsgResponseError = "response_error"
)

// WebSocket request types, besides execute, batch, sequence, describe,
// store_sql, close_sql and get_autocommit, which mean what they mean on a
// stream over HTTP.
const (
	ReqOpenStream  = "open_stream"
	ReqCloseStream = "close_stream"
	ReqOpenCursor  = "open_cursor"
	ReqCloseCursor = "close_cursor"
	ReqFetchCursor = "fetch_cursor"
)

// ClientMsg is a message from the client: hello (JWT) or request
// (RequestID, Request).
type ClientMsg struct {
	Type      string     `json:"type"`
	JWT       *string    `json:"jwt"`
	RequestID int32      `json:"request_id"`
	Request   *WsRequest `json:"request"`
}

// WsRequest is one request over a WebSocket. Type selects the fields:
// StreamID for open_stream, close_stream, execute (Stmt), batch (Batch),
// sequence and describe (SQL or SQLID) and get_autocommit; CursorID for
// open_cursor (with StreamID and Batch), close_cursor and fetch_cursor
// (MaxCount); SQLID for store_sql (SQL) and close_sql.
type WsRequest struct {
	Type     string  `json:"type"`
	StreamID int32   `json:"stream_id"`
	CursorID int32   `json:"cursor_id"`
	Stmt     *Stmt   `json:"stmt"`
	Batch    *Batch  `json:"batch"`
	SQL      *string `json:"sql"`
	SQLID    *int32  `json:"sql_id"`
	MaxCount uint32  `json:"max_count"`
}

// DecodeClientMsg decodes one client message; errors wrap ErrInvalid.
func DecodeClientMsg(b []byte) (*ClientMsg, error) {
	var m ClientMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, invalid(err)
	}
	switch m.Type {
	case MsgHello:
	case MsgRequest:
		if m.Request == nil {
			return nil, fmt.Errorf("%w: request message without request", ErrInvalid)
		}
	default:
		return nil, fmt.Errorf("%w: unknown client message type %q", ErrInvalid, m.Type)
	}
	return &m, nil
}

// ServerMsg is a message to the client: hello_ok, hello_error (Error),
// response_ok (RequestID, Response) or response_error (RequestID, Error).
type ServerMsg struct {
	Type      string      `json:"type"`
	RequestID *int32      `json:"request_id,omitempty"`
	Response  *WsResponse `json:"response,omitempty"`
	Error     *Error      `json:"error,omitempty"`
}

// WsResponse answers a WsRequest; Type is the request's. Result is the
// StmtResult, BatchResult or DescribeResult of execute, batch and describe;
// Entries and Done answer fetch_cursor, IsAutocommit get_autocommit.
type WsResponse struct {
	Type         string
	Result       any
	Entries      []CursorEntry
	Done         bool
	IsAutocommit bool
}

func (r WsResponse) MarshalJSON() ([]byte, error) {
	switch r.Type {
	case ReqExecute, ReqBatch, ReqDescribe:
		return json.Marshal(struct {
			Type   string `json:"type"`
			Result any    `json:"result"`
		}{r.Type, r.Result})
	case ReqFetchCursor:
		return json.Marshal(struct {
			Type    string        `json:"type"`
			Entries []CursorEntry `json:"entries"`
			Done    bool          `json:"done"`
		}{r.Type, nonNil(r.Entries), r.Done})
	case ReqGetAutocommit:
		return json.Marshal(struct {
			Type         string `json:"type"`
			IsAutocommit bool   `json:"is_autocommit"`
		}{r.Type, r.IsAutocommit})
	}
	return json.Marshal(struct {
		Type string `json:"type"`
	}{r.Type})
}
