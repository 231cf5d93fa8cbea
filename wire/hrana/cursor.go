package hrana

import (
	"encoding/json"
	"fmt"
)

// CursorReqBody is the body of POST /v3/cursor: one batch whose results
// are streamed back as cursor entries.
type CursorReqBody struct {
	Baton *string `json:"baton"`
	Batch Batch   `json:"batch"`
}

// DecodeCursorReq decodes a cursor request body; errors wrap ErrInvalid.
func DecodeCursorReq(b []byte) (*CursorReqBody, error) {
	var c CursorReqBody
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, invalid(err)
	}
	return &c, nil
}

// CursorRespBody is the first line of a /v3/cursor response; the cursor
// entries follow, one JSON object per line.
type CursorRespBody struct {
	Baton   *string `json:"baton"`
	BaseURL *string `json:"base_url"`
}

// Cursor entry types.
const (
	EntryStepBegin = "step_begin"
	EntryStepEnd   = "step_end"
	EntryStepError = "step_error"
	EntryRow       = "row"
	EntryError     = "error"
)

// CursorEntry is one piece of a batch's result, streamed: step_begin
// (Step, Cols), then one row entry per row (Row), then step_end
// (AffectedRowCount, LastInsertRowid) or step_error (Step, Error); an error
// entry (Error) ends the cursor.
type CursorEntry struct {
	Type             string
	Step             uint32
	Cols             []Col
	Row              []Value
	AffectedRowCount uint64
	LastInsertRowid  *int64
	Error            *Error
}

func (e CursorEntry) MarshalJSON() ([]byte, error) {
	switch e.Type {
	case EntryStepBegin:
		return json.Marshal(struct {
			Type string `json:"type"`
			Step uint32 `json:"step"`
			Cols []Col  `json:"cols"`
		}{e.Type, e.Step, nonNil(e.Cols)})
	case EntryStepEnd:
		return json.Marshal(struct {
			Type             string `json:"type"`
			AffectedRowCount uint64 `json:"affected_row_count"`
			LastInsertRowid  *int64 `json:"last_insert_rowid,string"`
		}{e.Type, e.AffectedRowCount, e.LastInsertRowid})
	case EntryRow:
		return json.Marshal(struct {
			Type string  `json:"type"`
			Row  []Value `json:"row"`
		}{e.Type, nonNil(e.Row)})
	case EntryStepError:
		if e.Error == nil {
			return nil, fmt.Errorf("%w: step_error entry without error", ErrInvalid)
		}
		return json.Marshal(struct {
			Type  string `json:"type"`
			Step  uint32 `json:"step"`
			Error *Error `json:"error"`
		}{e.Type, e.Step, e.Error})
	case EntryError:
		if e.Error == nil {
			return nil, fmt.Errorf("%w: error entry without error", ErrInvalid)
		}
		return json.Marshal(struct {
			Type  string `json:"type"`
			Error *Error `json:"error"`
		}{e.Type, e.Error})
	}
	return nil, fmt.Errorf("%w: unknown cursor entry type %q", ErrInvalid, e.Type)
}

func (e *CursorEntry) UnmarshalJSON(b []byte) error {
	var w struct {
		Type             string  `json:"type"`
		Step             uint32  `json:"step"`
		Cols             []Col   `json:"cols"`
		Row              []Value `json:"row"`
		AffectedRowCount uint64  `json:"affected_row_count"`
		LastInsertRowid  *int64  `json:"last_insert_rowid,string"`
		Error            *Error  `json:"error"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = CursorEntry(w)
	switch e.Type {
	case EntryStepBegin, EntryStepEnd, EntryRow:
	case EntryStepError, EntryError:
		if e.Error == nil {
			return fmt.Errorf("%w: %s entry without error", ErrInvalid, e.Type)
		}
	default:
		return fmt.Errorf("%w: unknown cursor entry type %q", ErrInvalid, e.Type)
	}
	return nil
}
