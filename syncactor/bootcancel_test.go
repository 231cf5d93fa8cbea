package syncactor_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncdb/syncdb/actors"
	"github.com/syncdb/syncdb/dbactor"
	"github.com/syncdb/syncdb/internal/fsx"
	"github.com/syncdb/syncdb/metaactor"
	"github.com/syncdb/syncdb/netactor"
	"github.com/syncdb/syncdb/syncactor"
	"github.com/syncdb/syncdb/wire"
	"github.com/syncdb/syncdb/wire/syncpb"
)

// A full bootstrap cancelled mid-stream returns the context's error while
// the network actor may still hold pages it read ahead. A late page must
// be refused: before the run writer had a closed flag, the page that
// needed a new 1 MiB run (page 257) sent on the closed channel of the
// attempt's writer, a panic on netactor's goroutine that killed the
// process. Nor may a call of the user's Progress begin after Bootstrap
// returned (the one in flight when ctx ended may finish after).
func TestBootstrapCancelledMidStream(t *testing.T) {
	const pages = 600
	page := make([]byte, wire.PageSize)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/protobuf")
		w.WriteHeader(http.StatusOK)
		wire.WriteDelimited(w, &syncpb.PullUpdatesRespProtoBody{
			ServerRevision: "rev", DbSize: pages,
			RawEncoding: &syncpb.PageSetRawEncodingProto{},
		})
		for i := range pages {
			w.Write(wire.AppendPage(nil, uint64(i), page))
		}
	}))
	t.Cleanup(hs.Close)

	path := filepath.Join(t.TempDir(), "r.db")
	sys := actors.NewSystem(actors.Options{Name: t.Name(), OnPanic: func(p *actors.PanicError) { t.Errorf("actor panic: %v", p) }})
	t.Cleanup(sys.Stop)
	meta, err := metaactor.Spawn(sys, fsx.OS, path+"-info")
	if err != nil {
		t.Fatal(err)
	}
	net, err := netactor.Spawn(sys, netactor.Config{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	db, _, err := dbactor.Spawn(dbactor.Config{Path: path, ClientID: "r", Sys: sys, Meta: meta, Gate: noReaders{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var returned atomic.Bool
	var late, calls atomic.Int64
	cancelled := make(chan struct{}) // the call that cancelled returned
	sa, err := syncactor.Spawn(syncactor.Config{
		Sys: sys, DB: db, Net: net, Meta: meta, Path: path, ClientID: "r",
		Progress: func(phase string, got, total int64) {
			calls.Add(1)
			if returned.Load() {
				late.Add(1)
			}
			if got == 256 {
				defer close(cancelled)
				cancel()
				// Bootstrap returns at once (its Ask ends with ctx); the
				// page in flight goes on, and so did the pages behind it.
				for deadline := time.Now().Add(5 * time.Second); !returned.Load() && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(200 * time.Millisecond)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = sa.Bootstrap(ctx, nil)
	returned.Store(true)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Bootstrap: %v, want context.Canceled", err)
	}
	<-cancelled
	time.Sleep(100 * time.Millisecond) // room for late pages, were there any
	if n := late.Load(); n > 0 {
		t.Errorf("Progress called %d times after Bootstrap returned (%d in all)", n, calls.Load())
	}
}
