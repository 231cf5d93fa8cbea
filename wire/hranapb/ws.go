package hranapb

import (
	"fmt"

	"github.com/syncdb/syncdb/wire/hrana"
	"google.golang.org/protobuf/proto"
)

// DecodeClientMsg decodes a message of the "hrana3-protobuf" WebSocket
// subprotocol (a binary frame) into the model.
func DecodeClientMsg(b []byte) (*hrana.ClientMsg, error) {
	var m ClientMsg
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, invalid("%v", err)
	}
	switch x := m.GetMsg().(type) {
	case *ClientMsg_Hello:
		return &hrana.ClientMsg{Type: hrana.MsgHello, JWT: x.Hello.Jwt}, nil
	case *ClientMsg_Request:
		rq, err := wsRequest(x.Request)
		if err != nil {
			return nil, err
		}
		return &hrana.ClientMsg{Type: hrana.MsgRequest, RequestID: x.Request.GetRequestId(), Request: rq}, nil
	}
	return nil, invalid("ClientMsg type not recognized")
}

func wsRequest(r *RequestMsg) (*hrana.WsRequest, error) {
	out := &hrana.WsRequest{}
	var err error
	switch x := r.GetRequest().(type) {
	case *RequestMsg_OpenStream:
		out.Type, out.StreamID = hrana.ReqOpenStream, x.OpenStream.GetStreamId()
	case *RequestMsg_CloseStream:
		out.Type, out.StreamID = hrana.ReqCloseStream, x.CloseStream.GetStreamId()
	case *RequestMsg_Execute:
		out.Type, out.StreamID = hrana.ReqExecute, x.Execute.GetStreamId()
		out.Stmt, err = FromStmt(x.Execute.GetStmt())
	case *RequestMsg_Batch:
		out.Type, out.StreamID = hrana.ReqBatch, x.Batch.GetStreamId()
		out.Batch, err = FromBatch(x.Batch.GetBatch())
	case *RequestMsg_OpenCursor:
		out.Type, out.StreamID, out.CursorID = hrana.ReqOpenCursor, x.OpenCursor.GetStreamId(), x.OpenCursor.GetCursorId()
		out.Batch, err = FromBatch(x.OpenCursor.GetBatch())
	case *RequestMsg_CloseCursor:
		out.Type, out.CursorID = hrana.ReqCloseCursor, x.CloseCursor.GetCursorId()
	case *RequestMsg_FetchCursor:
		out.Type, out.CursorID, out.MaxCount = hrana.ReqFetchCursor, x.FetchCursor.GetCursorId(), x.FetchCursor.GetMaxCount()
	case *RequestMsg_Sequence:
		out.Type, out.StreamID, out.SQL, out.SQLID = hrana.ReqSequence, x.Sequence.GetStreamId(), x.Sequence.Sql, x.Sequence.SqlId
	case *RequestMsg_Describe:
		out.Type, out.StreamID, out.SQL, out.SQLID = hrana.ReqDescribe, x.Describe.GetStreamId(), x.Describe.Sql, x.Describe.SqlId
	case *RequestMsg_StoreSql:
		sql, id := x.StoreSql.GetSql(), x.StoreSql.GetSqlId()
		out.Type, out.SQL, out.SQLID = hrana.ReqStoreSQL, &sql, &id
	case *RequestMsg_CloseSql:
		id := x.CloseSql.GetSqlId()
		out.Type, out.SQLID = hrana.ReqCloseSQL, &id
	case *RequestMsg_GetAutocommit:
		out.Type, out.StreamID = hrana.ReqGetAutocommit, x.GetAutocommit.GetStreamId()
	default:
		return nil, invalid("Request type not recognized")
	}
	return out, err
}

// EncodeServerMsg encodes a server message for the "hrana3-protobuf"
// subprotocol.
func EncodeServerMsg(m *hrana.ServerMsg) ([]byte, error) {
	var out ServerMsg
	switch m.Type {
	case hrana.MsgHelloOK:
		out.Msg = &ServerMsg_HelloOk{HelloOk: &HelloOkMsg{}}
	case hrana.MsgHelloError:
		out.Msg = &ServerMsg_HelloError{HelloError: &HelloErrorMsg{Error: ToError(m.Error)}}
	case hrana.MsgResponseError:
		out.Msg = &ServerMsg_ResponseError{ResponseError: &ResponseErrorMsg{RequestId: *m.RequestID, Error: ToError(m.Error)}}
	case hrana.MsgResponseOK:
		ok, err := responseOK(*m.RequestID, m.Response)
		if err != nil {
			return nil, err
		}
		out.Msg = &ServerMsg_ResponseOk{ResponseOk: ok}
	default:
		return nil, fmt.Errorf("%w: unknown server message type %q", hrana.ErrInvalid, m.Type)
	}
	return proto.Marshal(&out)
}

func responseOK(id int32, r *hrana.WsResponse) (*ResponseOkMsg, error) {
	out := &ResponseOkMsg{RequestId: id}
	empty := &WsEmptyResp{}
	switch r.Type {
	case hrana.ReqOpenStream:
		out.Response = &ResponseOkMsg_OpenStream{OpenStream: empty}
	case hrana.ReqCloseStream:
		out.Response = &ResponseOkMsg_CloseStream{CloseStream: empty}
	case hrana.ReqOpenCursor:
		out.Response = &ResponseOkMsg_OpenCursor{OpenCursor: empty}
	case hrana.ReqCloseCursor:
		out.Response = &ResponseOkMsg_CloseCursor{CloseCursor: empty}
	case hrana.ReqSequence:
		out.Response = &ResponseOkMsg_Sequence{Sequence: empty}
	case hrana.ReqStoreSQL:
		out.Response = &ResponseOkMsg_StoreSql{StoreSql: empty}
	case hrana.ReqCloseSQL:
		out.Response = &ResponseOkMsg_CloseSql{CloseSql: empty}
	case hrana.ReqGetAutocommit:
		out.Response = &ResponseOkMsg_GetAutocommit{GetAutocommit: &GetAutocommitStreamResp{IsAutocommit: r.IsAutocommit}}
	case hrana.ReqExecute:
		res, ok := r.Result.(*hrana.StmtResult)
		if !ok {
			return nil, fmt.Errorf("%w: execute response without a result", hrana.ErrInvalid)
		}
		out.Response = &ResponseOkMsg_Execute{Execute: &ExecuteStreamResp{Result: ToStmtResult(res)}}
	case hrana.ReqBatch:
		res, ok := r.Result.(*hrana.BatchResult)
		if !ok {
			return nil, fmt.Errorf("%w: batch response without a result", hrana.ErrInvalid)
		}
		out.Response = &ResponseOkMsg_Batch{Batch: &BatchStreamResp{Result: ToBatchResult(res)}}
	case hrana.ReqDescribe:
		res, ok := r.Result.(*hrana.DescribeResult)
		if !ok {
			return nil, fmt.Errorf("%w: describe response without a result", hrana.ErrInvalid)
		}
		out.Response = &ResponseOkMsg_Describe{Describe: &DescribeStreamResp{Result: ToDescribeResult(res)}}
	case hrana.ReqFetchCursor:
		f := &WsFetchCursorResp{Done: r.Done}
		for i := range r.Entries {
			f.Entries = append(f.Entries, ToCursorEntry(&r.Entries[i]))
		}
		out.Response = &ResponseOkMsg_FetchCursor{FetchCursor: f}
	default:
		return nil, fmt.Errorf("%w: unknown response type %q", hrana.ErrInvalid, r.Type)
	}
	return out, nil
}
