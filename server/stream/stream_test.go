package stream

import (
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"
)

func newReg(t *testing.T, idle time.Duration, expired chan<- int) *Registry[int] {
	t.Helper()
	r := NewRegistry(Config[int]{Idle: idle, Remember: time.Minute, Max: 3, Expire: func(s int) { expired <- s }})
	t.Cleanup(r.Close)
	return r
}

func TestBatonChangesAndIsSingleUse(t *testing.T) {
	r := newReg(t, time.Minute, make(chan int, 10))
	h, err := r.New(7)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := h.Release()
	if err != nil {
		t.Fatal(err)
	}
	h, err = r.Acquire(b1)
	if err != nil || h.State() != 7 {
		t.Fatalf("acquire: %v %v", h, err)
	}
	// While held, the same baton is refused: requests on a stream are serial.
	if _, err := r.Acquire(b1); !errors.Is(err, ErrBatonReused) {
		t.Fatalf("concurrent use: %v", err)
	}
	b2, err := h.Release()
	if err != nil {
		t.Fatal(err)
	}
	if b2 == b1 {
		t.Fatal("the baton did not change")
	}
	if _, err := r.Acquire(b1); !errors.Is(err, ErrBatonReused) {
		t.Fatalf("old baton: %v", err)
	}
	if h, err = r.Acquire(b2); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := r.Acquire(b2); !errors.Is(err, ErrBatonInvalid) {
		t.Fatalf("closed stream: %v", err)
	}
}

func TestInvalidBatons(t *testing.T) {
	r := newReg(t, time.Minute, make(chan int, 10))
	h, _ := r.New(1)
	b, _ := h.Release()
	raw, _ := base64.RawURLEncoding.DecodeString(b)
	raw[idLen+3] ^= 1 // another nonce for the same stream
	forged := base64.RawURLEncoding.EncodeToString(raw)
	other := []byte(b)
	other[0] ^= 1 // another stream
	for _, bad := range []string{"", "x", "not base64!", b + "AA", string(other)} {
		if _, err := r.Acquire(bad); !errors.Is(err, ErrBatonInvalid) {
			t.Errorf("Acquire(%q) = %v, want ErrBatonInvalid", bad, err)
		}
	}
	if _, err := r.Acquire(forged); !errors.Is(err, ErrBatonReused) {
		t.Errorf("forged nonce: %v", err)
	}
	if _, err := r.Acquire(b); err != nil {
		t.Fatalf("the real baton stopped working after bad ones: %v", err)
	}
}

func TestIdleStreamExpires(t *testing.T) {
	expired := make(chan int, 10)
	r := newReg(t, 50*time.Millisecond, expired)
	h, _ := r.New(42)
	b, _ := h.Release()
	select {
	case s := <-expired:
		if s != 42 {
			t.Fatalf("expired state %d", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle stream did not expire")
	}
	if _, err := r.Acquire(b); !errors.Is(err, ErrStreamExpired) {
		t.Fatalf("after expiry: %v, want ErrStreamExpired", err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d streams left", r.Len())
	}
}

func TestHeldStreamDoesNotExpire(t *testing.T) {
	expired := make(chan int, 10)
	r := newReg(t, 20*time.Millisecond, expired)
	h, _ := r.New(1)
	b, _ := h.Release()
	h, err := r.Acquire(b)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a long request
	select {
	case <-expired:
		t.Fatal("a stream expired while a request held it")
	default:
	}
	if _, err := h.Release(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-expired:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not expire once idle again")
	}
}

// Activity restarts the idle timer: a stream used more often than Idle
// lives on.
func TestActivityKeepsStreamAlive(t *testing.T) {
	expired := make(chan int, 10)
	r := newReg(t, 200*time.Millisecond, expired)
	h, _ := r.New(1)
	b, _ := h.Release()
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		h, err := r.Acquire(b)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = h.Release(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-expired:
		t.Fatal("an active stream expired")
	default:
	}
}

func TestMaxStreams(t *testing.T) {
	r := newReg(t, time.Minute, make(chan int, 10))
	var hs []*Handle[int]
	for i := range 3 {
		h, err := r.New(i)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if _, err := r.New(9); !errors.Is(err, ErrTooMany) {
		t.Fatalf("4th stream: %v", err)
	}
	hs[0].Close()
	if _, err := r.New(9); err != nil {
		t.Fatalf("after a close: %v", err)
	}
}

func TestCloseExpiresIdleStreams(t *testing.T) {
	expired := make(chan int, 10)
	r := NewRegistry(Config[int]{Idle: time.Hour, Expire: func(s int) { expired <- s }})
	h1, _ := r.New(1)
	h1.Release()
	h2, _ := r.New(2) // held by a request during Close
	r.Close()
	if got := <-expired; got != 1 {
		t.Fatalf("expired %d", got)
	}
	if _, err := h2.Release(); !errors.Is(err, ErrClosed) {
		t.Fatalf("release after Close: %v", err)
	}
	if got := <-expired; got != 2 {
		t.Fatalf("expired %d", got)
	}
	if _, err := r.New(3); !errors.Is(err, ErrClosed) {
		t.Fatalf("New after Close: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	r := NewRegistry(Config[int]{Idle: time.Minute})
	defer r.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			h, err := r.New(0)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := h.Release()
			for range 200 {
				h, err := r.Acquire(b)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ = h.Release()
			}
		})
	}
	wg.Wait()
}

func TestExpireIdle(t *testing.T) {
	expired := make(chan int, 10)
	r := newReg(t, time.Hour, expired)
	h, _ := r.New(5)
	ref := h.Ref()
	if r.ExpireIdle(ref) {
		t.Fatal("expired a stream a request holds")
	}
	b, _ := h.Release()
	if !r.ExpireIdle(ref) {
		t.Fatal("did not expire an idle stream")
	}
	if got := <-expired; got != 5 {
		t.Fatalf("expired %d", got)
	}
	if _, err := r.Acquire(b); !errors.Is(err, ErrStreamExpired) {
		t.Fatalf("after ExpireIdle: %v", err)
	}
	if r.ExpireIdle(ref) {
		t.Fatal("expired twice")
	}
}

// A stream a request still holds when the registry closes is handed to
// Expire when the request lets it go, before Release returns (so that
// what the request's caller does next, such as closing a database, comes
// after the stream's cleanup).
func TestReleaseAfterCloseExpiresAtOnce(t *testing.T) {
	var mu sync.Mutex
	var expired []int
	r := NewRegistry(Config[int]{Expire: func(s int) {
		time.Sleep(20 * time.Millisecond) // a rollback takes a while
		mu.Lock()
		expired = append(expired, s)
		mu.Unlock()
	}})
	busy, err := r.New(1)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := busy.Release(); !errors.Is(err, ErrClosed) {
		t.Errorf("release after close: %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(expired) != 1 || expired[0] != 1 {
		t.Errorf("expired when Release returned: %v, want [1]", expired)
	}
}
