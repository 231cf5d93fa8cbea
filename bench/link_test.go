package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The shaper delivers every byte, never faster than its rate and never
// sooner than its round trip, and counts requests and connections. Only
// lower bounds are checked: a busy machine makes it slower, never faster.
func TestShaper(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/big" {
			w.Write(body)
		}
	}))
	defer hs.Close()
	p := linkProfile{mbit: 40, rtt: 60 * time.Millisecond}
	s, err := startShaper(strings.TrimPrefix(hs.URL, "http://"), p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	url := s.URL(hs.URL)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	get := func(path string) time.Duration {
		t.Helper()
		start := time.Now()
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || (path == "/big" && !bytes.Equal(got, body)) {
			t.Fatalf("GET %s: %d bytes, %v", path, len(got), err)
		}
		return time.Since(start)
	}
	// A new connection: handshake round trip, then the request's.
	if d := get("/small"); d < 2*p.rtt {
		t.Fatalf("first request on a new connection took %v, less than two round trips (%v)", d, 2*p.rtt)
	}
	if d := get("/small"); d < p.rtt {
		t.Fatalf("a request took %v, less than a round trip (%v)", d, p.rtt)
	}
	min := time.Duration(float64(len(body)) * 8 / (p.mbit * 1e6) * float64(time.Second))
	if d := get("/big"); d < min {
		t.Fatalf("1 MiB in %v, faster than %v Mbit/s allows (%v)", d, p.mbit, min)
	}
	// A POST whose body goes in several writes is one request.
	resp, err := client.Post(url+"/small", "text/plain", io.MultiReader(strings.NewReader("a"), bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c := s.counts()
	if c.conns != 1 || c.requests != 4 || c.down < int64(len(body)) || c.up < int64(len(body)) {
		t.Fatalf("counts %+v, want 1 connection and 4 requests", c)
	}
	// A second connection is counted as one.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.counts().conns != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c := s.counts(); c.conns != 2 {
		t.Fatalf("counts %+v after a second connection", c)
	}
}

func TestParseProfiles(t *testing.T) {
	ps, err := parseProfiles("50mbit:40ms, 10mbit:100ms")
	if err != nil || len(ps) != 2 || ps[0] != (linkProfile{50, 40 * time.Millisecond}) || ps[1].key() != "wan10" {
		t.Fatalf("%v %v", ps, err)
	}
	for _, bad := range []string{"50mbit", "fast:1ms", "50mbit:soon", "0mbit:1ms"} {
		if _, err := parseProfiles(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}
