package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/wire/syncpb"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testPage(fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, PageSize)
	copy(p, "SQLite format 3\x00")
	return p
}

func header(rev string, dbSize uint64) *syncpb.PullUpdatesRespProtoBody {
	return &syncpb.PullUpdatesRespProtoBody{
		ServerRevision: rev,
		DbSize:         dbSize,
		RawEncoding:    &syncpb.PageSetRawEncodingProto{},
		Protocol:       syncpb.PullUpdatesProtocol_PULL_UPDATES_PROTOCOL_PAGES,
	}
}

// The bootstrap response of an empty one-page database, as the real client
// accepted it: 0d <header> 8320 1280 20 <4096 bytes>, 4115 bytes in all.
func TestBootstrapStream(t *testing.T) {
	page := testPage(0)
	var buf bytes.Buffer
	n, err := WriteDelimited(&buf, header("rev-1", 1))
	if err != nil || n != 14 {
		t.Fatalf("WriteDelimited = %d, %v", n, err)
	}
	buf.Write(AppendPage(nil, 0, page))
	want := append(unhex(t, "0d 0a05 7265762d31 1001 1a00 4001 8320 1280 20"), page...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("stream = %x..., want %x...", buf.Bytes()[:24], want[:24])
	}
	if buf.Len() != 4115 {
		t.Fatalf("stream is %d bytes, want 4115", buf.Len())
	}

	fr := NewFrameReader(&buf, 0)
	var h syncpb.PullUpdatesRespProtoBody
	if err := fr.Next(&h); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&h, header("rev-1", 1)) {
		t.Fatalf("header = %v", &h)
	}
	id, got, err := fr.NextPage()
	if err != nil || id != 0 || !bytes.Equal(got, page) {
		t.Fatalf("NextPage = %d, %d bytes, %v", id, len(got), err)
	}
	if _, _, err := fr.NextPage(); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	if fr.BytesRead() != 4115 {
		t.Fatalf("BytesRead = %d", fr.BytesRead())
	}
}

func TestAppendPageMatchesProto(t *testing.T) {
	for _, tc := range []struct {
		id   uint64
		page []byte
	}{
		{0, testPage(1)},
		{1, testPage(2)},
		{127, testPage(3)},
		{128, nil},
		{1 << 31, []byte("x")},
		{1<<64 - 1, testPage(4)},
		{0, nil},
		{5, make([]byte, 300)},
	} {
		want, err := AppendDelimited(nil, &syncpb.PageData{PageId: tc.id, EncodedPage: tc.page})
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("prefix")
		got := AppendPage(prefix, tc.id, tc.page)
		if !bytes.Equal(got[len(prefix):], want) || string(got[:len(prefix)]) != "prefix" {
			t.Fatalf("AppendPage(%d, %d bytes) = %x, want %x", tc.id, len(tc.page), got, want)
		}
	}
}

func TestAppendPageNoAllocs(t *testing.T) {
	page := testPage(7)
	dst := make([]byte, 0, 2*PageSize)
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendPage(dst[:0], 12345, page)
	})
	if allocs != 0 {
		t.Fatalf("AppendPage allocated %v times", allocs)
	}
}

func TestFrameReaderManyPages(t *testing.T) {
	var stream []byte
	stream, _ = AppendDelimited(stream, header("7", 100))
	for id := range uint64(100) {
		stream = AppendPage(stream, id, testPage(byte(id)))
	}
	// OneByteReader exercises refills at every possible boundary.
	fr := NewFrameReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
	var h syncpb.PullUpdatesRespProtoBody
	if err := fr.Next(&h); err != nil || h.DbSize != 100 {
		t.Fatalf("header %v, %v", &h, err)
	}
	for want := range uint64(100) {
		id, page, err := fr.NextPage()
		if err != nil || id != want || !bytes.Equal(page, testPage(byte(want))) {
			t.Fatalf("page %d: got id %d, %v", want, id, err)
		}
	}
	if _, _, err := fr.NextPage(); err != io.EOF {
		t.Fatalf("want io.EOF, got %v", err)
	}
	if fr.BytesRead() != int64(len(stream)) {
		t.Fatalf("BytesRead = %d, want %d", fr.BytesRead(), len(stream))
	}
}

func TestFrameReaderErrors(t *testing.T) {
	page := AppendPage(nil, 3, testPage(9))
	for _, tc := range []struct {
		name  string
		input []byte
		max   int
		want  error
	}{
		{"empty", nil, 0, io.EOF},
		{"truncated prefix", []byte{0x83}, 0, io.ErrUnexpectedEOF},
		{"truncated body", page[:100], 0, io.ErrUnexpectedEOF},
		{"prefix only", page[:2], 0, io.ErrUnexpectedEOF},
		{"too large", page, 4096, ErrFrameTooLarge},
		{"huge length", unhex(t, "ffffffffffffffff7f"), 0, ErrFrameTooLarge},
		{"prefix overflow", unhex(t, "ffffffffffffffffff02"), 0, ErrBadFrame},
		{"bad field", unhex(t, "02 0f00"), 0, ErrBadFrame},           // wire type 7
		{"field zero", unhex(t, "02 0001"), 0, ErrBadFrame},          // field number 0
		{"short bytes", unhex(t, "03 1205 00"), 0, ErrBadFrame},      // page longer than message
		{"end group", unhex(t, "01 0c"), 0, ErrBadFrame},             // stray end-group
		{"bad varint", unhex(t, "02 08ff"), 0, ErrBadFrame},          // page_id cut short
		{"huge field", unhex(t, "06 8080808010 00"), 0, ErrBadFrame}, // field number above 2^29-1
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewFrameReader(bytes.NewReader(tc.input), tc.max).NextPage()
			if !errors.Is(err, tc.want) {
				t.Fatalf("NextPage error = %v, want %v", err, tc.want)
			}
			var pd syncpb.PageData
			err = NewFrameReader(bytes.NewReader(tc.input), tc.max).Next(&pd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Next error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNextPageSkipsUnknownFields(t *testing.T) {
	var msg []byte
	msg = protowire.AppendTag(msg, 9, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte("future"))
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte("page"))
	msg = protowire.AppendTag(msg, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 42)
	msg = protowire.AppendTag(msg, 1, protowire.Fixed32Type) // wrong wire type: unknown
	msg = protowire.AppendFixed32(msg, 7)
	msg = protowire.AppendTag(msg, 10, protowire.StartGroupType)
	msg = protowire.AppendTag(msg, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 1)
	msg = protowire.AppendTag(msg, 10, protowire.EndGroupType)
	stream := protowire.AppendBytes(nil, msg)
	id, page, err := NewFrameReader(bytes.NewReader(stream), 0).NextPage()
	if err != nil || id != 42 || string(page) != "page" {
		t.Fatalf("NextPage = %d, %q, %v", id, page, err)
	}
}

func TestEmptyFrame(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader([]byte{0, 0}), 0)
	var h syncpb.PullUpdatesRespProtoBody
	if err := fr.Next(&h); err != nil || h.RawEncoding != nil {
		t.Fatalf("Next = %v, %v", &h, err)
	}
	if id, page, err := fr.NextPage(); err != nil || id != 0 || page != nil {
		t.Fatalf("NextPage = %d, %q, %v", id, page, err)
	}
}

func BenchmarkAppendPage(b *testing.B) {
	page := testPage(1)
	dst := make([]byte, 0, 2*PageSize)
	b.SetBytes(PageSize)
	for i := 0; b.Loop(); i++ {
		dst = AppendPage(dst[:0], uint64(i), page)
	}
}

func BenchmarkNextPage(b *testing.B) {
	var stream []byte
	for id := range uint64(256) {
		stream = AppendPage(stream, id, testPage(byte(id)))
	}
	r := bytes.NewReader(stream)
	fr := NewFrameReader(r, 0)
	b.SetBytes(PageSize)
	for b.Loop() {
		if _, _, err := fr.NextPage(); err == io.EOF {
			r.Reset(stream)
			fr = NewFrameReader(r, 0)
		} else if err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzFrameReader reads a response stream twice in lockstep: a header with
// Next, then each frame as PageData with Next on one reader and with the
// hand decoder NextPage on the other. The two must agree.
func FuzzFrameReader(f *testing.F) {
	page := testPage(0)
	boot, _ := AppendDelimited(nil, header("rev-1", 1))
	boot = AppendPage(boot, 0, page)
	f.Add(boot)
	f.Add(unhex(f, "0b 0a05 7265762d30 1a00 4001"))
	f.Add(unhex(f, "0d 0a05 7265762d33 1005 1a00 4001"))
	multi, _ := AppendDelimited(nil, header("rev-2", 4))
	multi = AppendPage(multi, 1, []byte("short page"))
	multi = AppendPage(multi, 3, nil)
	f.Add(multi)
	f.Add(boot[:100])
	f.Add(unhex(f, "00 06 8080808010 00"))
	f.Add(unhex(f, "00 05 5208 0c 0801"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1 << 16
		byMsg := NewFrameReader(bytes.NewReader(b), limit)
		byHand := NewFrameReader(iotest.HalfReader(bytes.NewReader(b)), limit)
		var h1, h2 syncpb.PullUpdatesRespProtoBody
		err1, err2 := byMsg.Next(&h1), byHand.Next(&h2)
		if (err1 == nil) != (err2 == nil) || err1 != nil && !proto.Equal(&h1, &h2) {
			t.Fatalf("header reads differ: %v vs %v", err1, err2)
		}
		for err1 == nil {
			var pd syncpb.PageData
			err1 = byMsg.Next(&pd)
			id, page, err2 := byHand.NextPage()
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("Next: %v, NextPage: %v", err1, err2)
			}
			if err1 == nil && (id != pd.PageId || !bytes.Equal(page, pd.EncodedPage)) {
				t.Fatalf("NextPage = %d, %x; proto says %d, %x", id, page, pd.PageId, pd.EncodedPage)
			}
			if err1 == io.EOF && err2 != io.EOF {
				t.Fatalf("clean end seen as %v", err2)
			}
			if byMsg.BytesRead() != byHand.BytesRead() || byMsg.BytesRead() > int64(len(b)) {
				t.Fatalf("BytesRead %d vs %d of %d", byMsg.BytesRead(), byHand.BytesRead(), len(b))
			}
		}
	})
}
