package netactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/internal/zstdchunks"
	"github.com/syncdb/syncdb/messages"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// ErrBadStream is wrapped by errors about a /pull-updates response that
// violates the protocol (as opposed to one that was cut short).
var ErrBadStream = errors.New("malformed pull-updates stream")

var (
	pullHeader = http.Header{
		// Sic: Turso's engine sends the media type in accept-encoding, which
		// also keeps net/http from asking for gzip.
		"Accept-Encoding": {contentTypeProtobuf},
	}
	// With ZstdPages the client also takes a zstd stream: syncdb serve
	// sends a bootstrap that way, compressed on all its cores, which this
	// side decodes on all of its own (zstdchunks).
	zstdPullHeader = http.Header{"Accept-Encoding": {contentTypeProtobuf + ", zstd"}}
)

// pull serves one PullUpdates: POST /pull-updates, then the header and the
// pages to the callbacks. It retries only before OnHeader was called.
func (a *netActor) pull(ctx context.Context, m *messages.PullUpdates) (messages.PullInfo, error) {
	req := m.Req
	if req == nil {
		req = &syncpb.PullUpdatesReqProtoBody{}
	}
	if a.cfg.ZstdPages && req.Encoding != syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD {
		req = proto.Clone(req).(*syncpb.PullUpdatesReqProtoBody)
		req.Encoding = syncpb.PageUpdatesEncodingReq_PAGE_UPDATES_ENCODING_REQ_ZSTD
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return messages.PullInfo{}, fmt.Errorf("encode pull-updates request: %w", err)
	}
	var info messages.PullInfo
	err = a.retry(ctx, EndpointPull, true, m.RetryUntil, func() error {
		var err error
		info, err = a.pullOnce(ctx, m, body)
		return err
	})
	return info, err
}

// pullOnce makes one attempt. Its errors are permanent (backoff.Permanent)
// once OnHeader has been called.
func (a *netActor) pullOnce(ctx context.Context, m *messages.PullUpdates, body []byte) (messages.PullInfo, error) {
	var info messages.PullInfo
	header := pullHeader
	if a.cfg.ZstdPages {
		header = zstdPullHeader
	}
	resp, err := a.post(ctx, EndpointPull, contentTypeProtobuf, body, header)
	if err != nil {
		return info, err
	}
	defer resp.Close()
	if resp.StatusCode != http.StatusOK {
		return info, a.statusError(resp, EndpointPull)
	}

	var stream io.Reader = resp.body
	switch enc := resp.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "zstd":
		if !a.cfg.ZstdPages {
			return info, backoff.Permanent(fmt.Errorf("%w: Content-Encoding zstd, which was not asked for", ErrBadStream))
		}
		// Closing zr closes the body, which stops a read under way.
		zr := zstdchunks.NewReader(struct {
			io.Reader
			io.Closer
		}{resp.body, resp.Response.Body})
		defer zr.Close()
		stream = zr
	default:
		return info, backoff.Permanent(fmt.Errorf("%w: unsupported Content-Encoding %q", ErrBadStream, enc))
	}
	fr := wire.NewFrameReader(stream, a.cfg.MaxMessage)
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if err := fr.Next(hdr); err != nil {
		switch {
		case ctx.Err() != nil:
			return info, backoff.Permanent(ctx.Err())
		case errors.Is(err, wire.ErrBadFrame), errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, zstdchunks.ErrMalformed):
			return info, backoff.Permanent(fmt.Errorf("%w: header: %w", ErrBadStream, err))
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
		// Cut off before the header: nothing was handed out, try again.
		return info, lost(fmt.Errorf("pull-updates response ended before the header: %w", err))
	}
	zstdPages, err := a.checkHeader(hdr)
	if err != nil {
		return info, backoff.Permanent(err)
	}
	info.Header = hdr
	info.Database = resp.Header.Get(databaseHeader)
	// The caller's Ask returns when ctx ends: a callback after that is
	// late (the callers refuse one, but need not see it at all).
	if err := ctx.Err(); err != nil {
		return info, backoff.Permanent(err)
	}
	if m.OnHeader != nil {
		if err := m.OnHeader(hdr); err != nil {
			return info, backoff.Permanent(err)
		}
	}

	// From here on every error is returned to the caller.
	var page []byte
	for {
		// Pages read ahead (the frame reader's buffer, zstdchunks' decoded
		// chunks) would otherwise still go out after a cancel: only the
		// callback in flight may outlive the caller's Ask.
		if err := ctx.Err(); err != nil {
			return info, backoff.Permanent(err)
		}
		id, data, err := fr.NextPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				err = cerr
			} else if errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, zstdchunks.ErrMalformed) {
				err = fmt.Errorf("%w: %w", ErrBadStream, err)
			} else {
				// Not sent again (the caller holds what it got), but a new
				// pull from the caller's revision may get it whole.
				err = lost(fmt.Errorf("pull-updates stream cut after %d pages: %w", info.Pages, err))
			}
			return info, backoff.Permanent(err)
		}
		if id >= math.MaxUint32 {
			return info, backoff.Permanent(fmt.Errorf("%w: page id %d out of range", ErrBadStream, id))
		}
		if zstdPages {
			dec, err := a.decoder()
			if err != nil {
				return info, backoff.Permanent(fmt.Errorf("zstd decoder: %w", err))
			}
			page, err = dec.DecodeAll(data, page[:0])
			if err != nil {
				return info, backoff.Permanent(fmt.Errorf("%w: page id %d: zstd: %w", ErrBadStream, id, err))
			}
			data = page
		}
		if len(data) != wire.PageSize {
			return info, backoff.Permanent(fmt.Errorf("%w: page id %d has %d bytes, want %d", ErrBadStream, id, len(data), wire.PageSize))
		}
		if m.OnPage != nil {
			if err := m.OnPage(uint32(id)+1, data); err != nil {
				return info, backoff.Permanent(err)
			}
		}
		if m.Keep != nil {
			switch {
			case m.Keep.Contains(uint32(id)):
				if info.Kept == nil {
					info.Kept = map[uint32][]byte{}
				}
				info.Kept[uint32(id)+1] = bytes.Clone(data)
			case info.Unasked == 0:
				info.Unasked = uint32(id) + 1
			}
		}
		info.Pages++
	}
	info.Bytes = resp.body.n
	return info, nil
}

// checkHeader validates a response header and reports whether its pages are
// zstd-compressed.
func (a *netActor) checkHeader(hdr *syncpb.PullUpdatesRespProtoBody) (zstdPages bool, err error) {
	raw, z := hdr.RawEncoding != nil, hdr.ZstdEncoding != nil
	switch {
	case raw && z:
		return false, fmt.Errorf("%w: header has both raw_encoding and zstd_encoding", ErrBadStream)
	case !raw && !z:
		return false, fmt.Errorf("%w: header has neither raw_encoding nor zstd_encoding", ErrBadStream)
	case z && len(hdr.ZstdEncoding.PagesDict) > 0:
		return false, fmt.Errorf("%w: zstd page dictionaries are not supported", ErrBadStream)
	}
	if hdr.StreamKind != syncpb.PullUpdatesStreamKind_PULL_UPDATES_STREAM_KIND_PAGES {
		return false, fmt.Errorf("%w: stream kind %v is not supported (page protocol only)", ErrBadStream, hdr.StreamKind)
	}
	return z, nil
}
