package syncpb

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Response headers captured from traffic the real client accepted
// (turso-js-client.md §3.1), without their length prefix.
func TestHeaderMarshal(t *testing.T) {
	pages := PullUpdatesProtocol_PULL_UPDATES_PROTOCOL_PAGES
	raw := &PageSetRawEncodingProto{}
	for _, tc := range []struct {
		name string
		msg  *PullUpdatesRespProtoBody
		want string
	}{
		{"bootstrap", &PullUpdatesRespProtoBody{ServerRevision: "rev-1", DbSize: 1, RawEncoding: raw, Protocol: pages},
			"0a05 7265762d31 1001 1a00 4001"},
		{"empty remote", &PullUpdatesRespProtoBody{ServerRevision: "rev-0", RawEncoding: raw, Protocol: pages},
			"0a05 7265762d30 1a00 4001"},
		{"no changes", &PullUpdatesRespProtoBody{ServerRevision: "rev-3", DbSize: 5, RawEncoding: raw, Protocol: pages},
			"0a05 7265762d33 1005 1a00 4001"},
		{"cloud fixture", &PullUpdatesRespProtoBody{ServerRevision: `{"generation":999999999999999999,"wal_fragment_no":2}`, DbSize: 2, RawEncoding: raw},
			"0a35" + hex.EncodeToString([]byte(`{"generation":999999999999999999,"wal_fragment_no":2}`)) + "1002 1a00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := proto.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			want := unhex(t, tc.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("marshal = %x, want %x", got, want)
			}
			if !bytes.Contains(got, []byte{0x1a, 0x00}) {
				t.Fatal("raw_encoding presence marker 1a 00 missing")
			}
			var back PullUpdatesRespProtoBody
			if err := proto.Unmarshal(want, &back); err != nil {
				t.Fatal(err)
			}
			if back.RawEncoding == nil || back.ZstdEncoding != nil {
				t.Fatal("raw_encoding presence lost in decoding")
			}
			if !proto.Equal(&back, tc.msg) {
				t.Fatalf("decoded %v, want %v", &back, tc.msg)
			}
		})
	}
}

func TestHeaderWithoutEncodingOmitsField3(t *testing.T) {
	got, err := proto.Marshal(&PullUpdatesRespProtoBody{ServerRevision: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "0a01 72"); !bytes.Equal(got, want) {
		t.Fatalf("marshal = %x, want %x", got, want)
	}
}

// capturedRequests are request bodies the real client sent
// (turso-js-client.md §3.1), plus a synthetic MVCC pull (field 8).
var capturedRequests = []struct {
	name string
	hex  string
	want *PullUpdatesReqProtoBody
}{
	{"bootstrap", "", &PullUpdatesReqProtoBody{}},
	{"pull", "1a057265762d31", &PullUpdatesReqProtoBody{ClientRevision: "rev-1"}},
	{"long poll", "1a057265762d31 20d00f", &PullUpdatesReqProtoBody{ClientRevision: "rev-1", LongPollTimeoutMs: 2000}},
	{"prefix 8192", "2a14 3a300000 01000000 0000 0100 10000000 0000 0100", &PullUpdatesReqProtoBody{
		ServerPagesSelector: []byte{0x3a, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 1, 0}}},
	{"prefix 4096", "2a12 3a3000000100000000000000100000000000", &PullUpdatesReqProtoBody{
		ServerPagesSelector: []byte{0x3a, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0}}},
	{"query", "3a1f" + hex.EncodeToString([]byte("SELECT * FROM big WHERE id < 10")), &PullUpdatesReqProtoBody{
		ServerQuerySelector: "SELECT * FROM big WHERE id < 10"}},
	{"lazy load", "12057265762d31 2a12 3a300000 01000000 0000 0000 10000000 0200", &PullUpdatesReqProtoBody{
		ServerRevision:      "rev-1",
		ServerPagesSelector: []byte{0x3a, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 2, 0}}},
	{"mvcc", "1a03673a31 4001", &PullUpdatesReqProtoBody{ClientRevision: "g:1",
		StreamKind: PullUpdatesStreamKind_PULL_UPDATES_STREAM_KIND_MVCC_LOGICAL_LOG}},
}

func TestCapturedRequests(t *testing.T) {
	for _, tc := range capturedRequests {
		t.Run(tc.name, func(t *testing.T) {
			body := unhex(t, tc.hex)
			var got PullUpdatesReqProtoBody
			if err := proto.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, tc.want) {
				t.Fatalf("decoded %v, want %v", &got, tc.want)
			}
			// The client omits defaults just as protobuf-go does, so
			// re-encoding reproduces the captured bytes.
			again, err := proto.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, body) {
				t.Fatalf("marshal = %x, want %x", again, body)
			}
		})
	}
}

func FuzzPullUpdatesReq(f *testing.F) {
	for _, tc := range capturedRequests {
		f.Add(unhex(f, tc.hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req PullUpdatesReqProtoBody
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		again, err := proto.Marshal(&req)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		var back PullUpdatesReqProtoBody
		if err := proto.Unmarshal(again, &back); err != nil {
			t.Fatalf("re-unmarshal: %v", err)
		}
		if !proto.Equal(&req, &back) {
			t.Fatalf("round trip changed %v to %v", &req, &back)
		}
	})
}
