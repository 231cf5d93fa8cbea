// Package rawclient sends the two sync requests at the protocol level, with
// no replica: one SQL statement as a Hrana pipeline, and a pull. For tests
// and benchmarks of the server.
package rawclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// Exec runs one statement on the database at base (http://HOST:PORT or
// .../db/NAME) and returns the response body; an HTTP status other than 200
// or a statement error is an error (*StatusError for the former).
func Exec(base, sql string) ([]byte, error) {
	body := fmt.Sprintf(`{"baton":null,"requests":[{"type":"execute","stmt":{"sql":%q}}]}`, sql)
	resp, err := http.Post(base+"/v2/pipeline", "application/json", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, &StatusError{Code: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: string(out)}
	}
	if !bytes.Contains(out, []byte(`"type":"ok"`)) {
		return out, fmt.Errorf("%s: %s", sql, out)
	}
	return out, nil
}

// StatusError is an answer other than 200.
type StatusError struct {
	Code       int
	RetryAfter string
	Body       string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Pulled is a pull's answer.
type Pulled struct {
	Header *syncpb.PullUpdatesRespProtoBody
	Pages  map[uint64][]byte // by 0-based page id, as sent
}

// Pull sends req to the database at base and reads the whole answer.
func Pull(base string, req *syncpb.PullUpdatesReqProtoBody) (*Pulled, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := http.Post(base+"/pull-updates", "application/protobuf", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return nil, &StatusError{Code: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: string(msg)}
	}
	fr := wire.NewFrameReader(resp.Body, 0)
	p := &Pulled{Header: &syncpb.PullUpdatesRespProtoBody{}, Pages: map[uint64][]byte{}}
	if err := fr.Next(p.Header); err != nil {
		return nil, err
	}
	for {
		id, data, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			return p, nil
		}
		if err != nil {
			return nil, err
		}
		p.Pages[id] = append([]byte(nil), data...)
	}
}
