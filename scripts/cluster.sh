#!/usr/bin/env bash
# A local 3-node syncdb cluster to try the scale-out: a throw-away
# PostgreSQL (scripts/pg.sh), three `syncdb serve --store` nodes on
# 127.0.0.1:8081-8083 and a round-robin load balancer on 127.0.0.1:8080.
# Clients use http://127.0.0.1:8080 (or a node directly). Ctrl-C stops
# everything and deletes the data.
#
#   scripts/cluster.sh [DIR]     # DIR holds PostgreSQL and the nodes' caches (default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d /tmp/syncdb-cluster.XXXXXX)}
mkdir -p "$dir"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	scripts/pg.sh stop "$dir/pg"
	echo "cluster stopped"
}
trap cleanup EXIT
eval "$(scripts/pg.sh start "$dir/pg")"
store=$SYNCDB_TEST_PG
go build -o "$dir/syncdb" ./cmd/syncdb
go build -o "$dir/syncdb-lb" ./internal/lb/cmd/syncdb-lb
nodes=()
for i in 1 2 3; do
	port=808$i
	"$dir/syncdb" serve --addr "127.0.0.1:$port" --advertise "http://127.0.0.1:$port" \
		--data "$dir/node$i" --store "$store" >"$dir/node$i.log" 2>&1 &
	pids+=($!)
	nodes+=("http://127.0.0.1:$port")
done
"$dir/syncdb-lb" --addr 127.0.0.1:8080 "${nodes[@]}" &
pids+=($!)
sleep 1
echo
echo "store:         $store"
echo "nodes:         ${nodes[*]} (logs in $dir/node*.log)"
echo "load balancer: http://127.0.0.1:8080   (e.g. go run ./cmd/syncdb shell --url http://127.0.0.1:8080 app.db)"
echo "Ctrl-C stops the cluster."
wait
