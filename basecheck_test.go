package syncdb_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// checkSyncedBase fails the test unless the synced base of the closed full
// replica at path (what it would write back under its local changes at the
// next pull) is, page for page, the server's database at the replica's
// synced revision: a base with a wrong page would corrupt the next pull
// silently. It returns the number of pages compared.
func checkSyncedBase(t *testing.T, path, url string) int {
	t.Helper()
	meta, err := metaactor.Load(fsx.OS, path+"-info")
	if err != nil {
		t.Fatal(err)
	}
	if meta.SyncedRevision == nil {
		t.Fatal("no synced revision")
	}
	local := map[uint32][]byte{}
	if err := dbactor.BaseImage(fsx.OS, path, meta, nil, func(pg uint32, data []byte) error {
		local[pg] = bytes.Clone(data)
		return nil
	}); err != nil {
		t.Fatalf("read the synced base: %v", err)
	}
	sel, err := wire.EncodeSelector(wire.SelectorRange(0, meta.SyncDB.Base.DBSize))
	if err != nil {
		t.Fatal(err)
	}
	body, err := proto.Marshal(&syncpb.PullUpdatesReqProtoBody{ServerRevision: meta.SyncedRevision.Revision, ServerPagesSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/pull-updates", "application/protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the server's revision %s: %s", meta.SyncedRevision.Revision, resp.Status)
	}
	fr := wire.NewFrameReader(resp.Body, 0)
	hdr := &syncpb.PullUpdatesRespProtoBody{}
	if err := fr.Next(hdr); err != nil {
		t.Fatal(err)
	}
	if uint32(hdr.DbSize) != meta.SyncDB.Base.DBSize {
		t.Fatalf("the base has %d pages, the server's revision %d", meta.SyncDB.Base.DBSize, hdr.DbSize)
	}
	n := 0
	for {
		id, page, err := fr.NextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(local[uint32(id+1)], page) {
			t.Fatalf("page %d of the synced base differs from the server's at revision %s", id+1, meta.SyncedRevision.Revision)
		}
		n++
	}
	if n != int(meta.SyncDB.Base.DBSize) {
		t.Fatalf("compared %d pages of %d", n, meta.SyncDB.Base.DBSize)
	}
	return n
}
