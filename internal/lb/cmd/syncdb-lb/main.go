// Command syncdb-lb is the round-robin load balancer of package lb, for
// trying a local cluster (scripts/cluster.sh):
//
//	go run ./internal/lb/cmd/syncdb-lb --addr 127.0.0.1:8080 http://127.0.0.1:8081 http://127.0.0.1:8082 ...
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/syncdb/syncdb/internal/lb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	var nodes []*url.URL
	for _, a := range flag.Args() {
		u, err := url.Parse(a)
		if err != nil || u.Host == "" {
			fmt.Fprintf(os.Stderr, "syncdb-lb: bad node URL %q\n", a)
			os.Exit(2)
		}
		nodes = append(nodes, u)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(os.Stderr, "usage: syncdb-lb [--addr HOST:PORT] NODE_URL...")
		os.Exit(2)
	}
	fmt.Printf("load balancer on http://%s over %d nodes\n", *addr, len(nodes))
	srv := &http.Server{Addr: *addr, Handler: lb.New(nodes), ReadHeaderTimeout: 30 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "syncdb-lb:", err)
		os.Exit(1)
	}
}
