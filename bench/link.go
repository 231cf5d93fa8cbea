package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// linkProfile is a network link: a rate in each direction and a round-trip
// time.
type linkProfile struct {
	mbit float64 // per direction, shared by every connection of the client
	rtt  time.Duration
}

// key names the profile in the report's keys: wan50 for 50 Mbit/s.
func (p linkProfile) key() string { return "wan" + strconv.FormatFloat(p.mbit, 'f', -1, 64) }

func (p linkProfile) String() string {
	return fmt.Sprintf("%s Mbit/s, %s RTT", strconv.FormatFloat(p.mbit, 'f', -1, 64), p.rtt)
}

// parseProfiles parses "50mbit:40ms,10mbit:100ms".
func parseProfiles(s string) ([]linkProfile, error) {
	var out []linkProfile
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, d, ok := strings.Cut(item, ":")
		mbit, err := strconv.ParseFloat(strings.TrimSuffix(strings.ToLower(r), "mbit"), 64)
		if !ok || err != nil || mbit <= 0 {
			return nil, fmt.Errorf("link profile %q: want RATEmbit:RTT, as 50mbit:40ms", item)
		}
		rtt, err := time.ParseDuration(d)
		if err != nil || rtt < 0 {
			return nil, fmt.Errorf("link profile %q: %v", item, err)
		}
		out = append(out, linkProfile{mbit: mbit, rtt: rtt})
	}
	return out, nil
}

// linkCounts is what crossed a link.
type linkCounts struct {
	conns    int64 // TCP connections opened
	requests int64 // bursts of client data after the server spoke (or first on a connection): requests, for HTTP/1.1
	up, down int64 // bytes client to server, server to client
}

func (a linkCounts) sub(b linkCounts) linkCounts {
	return linkCounts{a.conns - b.conns, a.requests - b.requests, a.up - b.up, a.down - b.down}
}

// shaper is a TCP proxy in front of the server that behaves like a slow
// link: every byte waits for its turn at the link's rate (a token bucket
// per direction, shared by all connections, with a burst of one read) and
// then for half the round-trip time. A new connection's first bytes wait a
// round trip more, for the TCP handshake that loopback does not take. It
// models rate and delay, not loss, TCP slow start or TLS.
type shaper struct {
	p        linkProfile
	target   string
	ln       net.Listener
	up, down *rate.Limiter

	conns, requests, upBytes, downBytes atomic.Int64

	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// chunkSize is how much the shaper reads and forwards at once: also the
// token bucket's burst, so that an idle link sends no faster than its rate.
const chunkSize = 16 << 10

// startShaper listens on loopback and forwards to target (host:port).
func startShaper(target string, p linkProfile) (*shaper, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	bps := rate.Limit(p.mbit * 1e6 / 8)
	s := &shaper{p: p, target: target, ln: ln, open: map[net.Conn]struct{}{},
		up: rate.NewLimiter(bps, chunkSize), down: rate.NewLimiter(bps, chunkSize)}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// URL is the shaped address of the server: base with its host replaced.
func (s *shaper) URL(base string) string {
	return strings.Replace(base, s.target, s.ln.Addr().String(), 1)
}

func (s *shaper) counts() linkCounts {
	return linkCounts{s.conns.Load(), s.requests.Load(), s.upBytes.Load(), s.downBytes.Load()}
}

func (s *shaper) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

func (s *shaper) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.open[c] = struct{}{}
	} else {
		delete(s.open, c)
	}
	return true
}

func (s *shaper) serve(client net.Conn) {
	server, err := net.Dial("tcp", s.target)
	if err != nil {
		client.Close()
		return
	}
	if !s.track(client, true) || !s.track(server, true) {
		client.Close()
		server.Close()
		return
	}
	defer func() {
		client.Close()
		server.Close()
		s.track(client, false)
		s.track(server, false)
	}()
	var serverSpoke atomic.Bool
	serverSpoke.Store(true)
	done := make(chan struct{}, 2)
	go func() {
		s.forward(server, client, s.up, s.p.rtt, func(n int) {
			s.upBytes.Add(int64(n))
			if serverSpoke.Swap(false) {
				s.requests.Add(1)
			}
		})
		done <- struct{}{}
	}()
	go func() {
		s.forward(client, server, s.down, 0, func(n int) {
			s.downBytes.Add(int64(n))
			serverSpoke.Store(true)
		})
		done <- struct{}{}
	}()
	<-done
	<-done
}

// forward copies src to dst through the link: each chunk waits for the
// limiter, then is delivered half a round trip later (plus extra for the
// first one). It ends when src ends, then ends dst's write side.
func (s *shaper) forward(dst, src net.Conn, lim *rate.Limiter, extra time.Duration, seen func(int)) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		failed := false
		for c := range q {
			if failed {
				continue
			}
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				failed = true
				src.Close() // stop the reader
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok && !failed {
			tc.CloseWrite()
		}
	}()
	defer func() {
		close(q)
		<-delivered
	}()
	for {
		b := make([]byte, chunkSize)
		n, err := src.Read(b)
		if n > 0 {
			seen(n)
			if werr := lim.WaitN(context.Background(), n); werr != nil {
				return
			}
			q <- chunk{b[:n], time.Now().Add(s.p.rtt/2 + extra)}
			extra = 0
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
			return
		}
	}
}

// close stops the shaper and cuts every connection.
func (s *shaper) close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
