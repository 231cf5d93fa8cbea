// Package lb is a small round-robin HTTP load balancer for trying and
// testing a syncdb cluster on one machine. It sends each request to the next
// node, skips a node that refuses connections (as a real load balancer's
// health check would, and safe: such a request never reached it), streams
// responses, and answers GET /metrics with the sum of every node's metrics
// so that a client sees the cluster as one server.
package lb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// LB balances over nodes.
type LB struct {
	nodes  []*url.URL
	next   atomic.Uint64
	counts []atomic.Int64
	tr     *http.Transport

	mu   sync.Mutex
	down map[int]bool
}

// New returns a balancer over the nodes' base URLs.
func New(nodes []*url.URL) *LB {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &LB{nodes: nodes, counts: make([]atomic.Int64, len(nodes)), tr: tr, down: map[int]bool{}}
}

// Count returns how many requests node i answered.
func (b *LB) Count(i int) int64 { return b.counts[i].Load() }

// SetNodeURL points node i at another URL (a restarted node).
func (b *LB) SetNodeURL(i int, u string) {
	nu, err := url.Parse(u)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nodes[i] = nu
}

func (b *LB) node(i int) *url.URL {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nodes[i]
}

// SetDown takes node i out of rotation (or puts it back).
func (b *LB) SetDown(i int, down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = down
}

func (b *LB) isDown(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down[i]
}

func (b *LB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/metrics" {
		b.metrics(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "load balancer: "+err.Error(), http.StatusBadRequest)
		return
	}
	for range 2 * len(b.nodes) {
		i := int(b.next.Add(1) % uint64(len(b.nodes)))
		if b.isDown(i) {
			continue
		}
		var perr error
		target := b.node(i)
		p := &httputil.ReverseProxy{
			Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
			Transport:     b.tr,
			FlushInterval: -1,
			ErrorHandler:  func(_ http.ResponseWriter, _ *http.Request, err error) { perr = err },
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		p.ServeHTTP(w, r)
		if perr == nil {
			b.counts[i].Add(1)
			return
		}
		var op *net.OpError
		if !errors.As(perr, &op) || op.Op != "dial" {
			http.Error(w, "load balancer: "+perr.Error(), http.StatusBadGateway)
			return
		}
	}
	http.Error(w, "load balancer: no node reachable", http.StatusBadGateway)
}

// metrics sums the nodes' samples series by series. A node that is down is
// left out; a node refusing the request (401, 403) decides the answer.
func (b *LB) metrics(w http.ResponseWriter, r *http.Request) {
	sums := map[string]float64{}
	var order []string
	answered := false
	for i := range b.nodes {
		if b.isDown(i) {
			continue
		}
		n := b.node(i)
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, n.JoinPath("/metrics").String(), nil)
		req.Header = r.Header.Clone()
		req.Header.Del("Accept-Encoding") // plain text, to add up
		resp, err := b.tr.RoundTrip(req)
		if err != nil {
			continue
		}
		if resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
			return
		}
		answered = true
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[k+1:], 64)
			if k < 0 || err != nil {
				continue
			}
			if _, ok := sums[line[:k]]; !ok {
				order = append(order, line[:k])
			}
			sums[line[:k]] += v
		}
		resp.Body.Close()
	}
	if !answered {
		http.Error(w, "load balancer: no node reachable", http.StatusBadGateway)
		return
	}
	sort.Strings(order)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	for _, k := range order {
		fmt.Fprintf(w, "%s %s\n", k, strconv.FormatFloat(sums[k], 'g', -1, 64))
	}
}
