package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Compressed Hrana request bodies. A push batch repeats the same SQL texts
// and conditions for every change, so zstd takes it to a few percent of its
// size; sqld accepts no compressed request, so the client compresses only
// for a server that said it takes them: every Hrana HTTP answer of ours
// carries RequestEncodingHeader (netactor reads it; a server without it,
// sqld, gets plain requests).

// RequestEncodingHeader, in a response, lists the content codings the
// server accepts in Hrana request bodies (Content-Encoding).
const RequestEncodingHeader = "X-Syncdb-Request-Encoding"

// maxRequestWindow bounds the window of a compressed request's zstd
// frames: the decoder's history buffer, reserved from the in-flight budget
// while it decodes. Our client writes 1 MiB windows.
const maxRequestWindow = 4 << 20

var (
	errDecodedTooBig = errors.New("decoded request body too large")
	errBadEncoding   = errors.New("unsupported request content encoding")
)

// decodeBody undoes body's Content-Encoding (none, identity or zstd). The
// decoded bytes are bounded by limit, the same as a plain body's, so that a
// small compressed body cannot expand beyond what the server would read
// plain (a zip bomb gets 413 when the limit is reached, not an allocation of
// what it claims), and are reserved from the in-flight budget as they grow,
// as readBody reserves a plain body. A stream that does not decode is 400,
// an unknown coding 415. It answers the error itself (false).
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, body []byte, limit int64) ([]byte, bool) {
	coding := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch coding {
	case "", "identity":
		return body, true
	case "zstd":
	default:
		httpError(w, http.StatusUnsupportedMediaType, "%v %q: this server takes zstd or none", errBadEncoding, coding)
		return nil, false
	}
	out, err := s.decodeZstd(r, body, limit)
	var tooBig bool
	switch {
	case err == nil:
		return out, true
	case errors.Is(err, errBudget):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, errNoMemory)
	case errors.Is(err, errDecodedTooBig), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		tooBig = true
	default:
		httpError(w, http.StatusBadRequest, "malformed zstd request body: %v", err)
	}
	if tooBig {
		httpError(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes once decoded", limit)
	}
	return nil, false
}

// decodeZstd decodes a zstd body, at most limit bytes, reserving the
// largest window it takes and then each chunk of output from the in-flight budget (given
// back when the request ends).
func (s *Server) decodeZstd(r *http.Request, body []byte, limit int64) ([]byte, error) {
	if !s.mem.reserve(maxRequestWindow) {
		return nil, errBudget
	}
	defer s.mem.release(maxRequestWindow)
	// The decoder's own cap is the window's (it would clamp the window to
	// it): the output's is the LimitReader's below, so that a limit below
	// the client's window still takes small compressed bodies.
	dec, err := zstd.NewReader(bytes.NewReader(body),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxRequestWindow), zstd.WithDecoderMaxMemory(uint64(max(limit, maxRequestWindow))))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	var buf bytes.Buffer
	var reserved int64
	out, err := func() ([]byte, error) {
		in := io.LimitReader(dec, limit+1)
		for {
			if !s.mem.reserve(bodyChunk) {
				return nil, errBudget
			}
			reserved += bodyChunk
			n, err := io.CopyN(&buf, in, bodyChunk)
			switch {
			case err != nil && !errors.Is(err, io.EOF):
				return nil, err
			case n == bodyChunk:
				continue
			case int64(buf.Len()) > limit:
				return nil, errDecodedTooBig
			}
			return buf.Bytes(), nil
		}
	}()
	if err != nil {
		s.mem.release(reserved)
		return nil, err
	}
	// Keep what the output uses until the request ends.
	s.mem.release(reserved - int64(len(out)))
	n := int64(len(out))
	context.AfterFunc(r.Context(), func() { s.mem.release(n) })
	return out, nil
}
