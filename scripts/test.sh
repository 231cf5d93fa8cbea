#!/usr/bin/env bash
# The whole test run, from a fresh machine: installs what the tests need
# (Go modules, the pinned npm client for the interop tests), runs every test
# with the race detector, then the simulator's full budget without it (the
# race detector slows the transpiled SQLite about tenfold; under -race the
# simulator runs a smaller budget).
set -euo pipefail
cd "$(dirname "$0")/.."

# Some steps print nothing for minutes (staticcheck, go test prints a
# package's result only when it ends): say every 30 s that it is going.
( while sleep 30; do echo "   ... still running ($(date +%T))"; done ) &
ticker=$!
pgdir=
cleanup() {
	kill "$ticker" 2>/dev/null || true
	# Stops the shared PostgreSQL and any private one a test left behind.
	[ -z "$pgdir" ] || scripts/pg.sh stop "$pgdir"
}
trap cleanup EXIT

echo "== installing the npm clients for interop tests (pinned in interop/package.json)"
# npm ci would refuse the lock file: the clients' optional packages for other
# platforms are not in this registry, so they cannot be locked. npm install
# with the exact version pinned installs the same thing.
npm install --prefix interop --no-audit --no-fund --loglevel=error

echo "== sqlite3 (the shell's output modes are compared with it)"
if ! command -v sqlite3 >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null ||
			echo "could not install sqlite3: the comparison tests will skip"
	else
		echo "sqlite3 is missing and cannot be installed here (needs root and apt-get): the comparison tests will skip"
	fi
fi

echo "== downloading Go modules"
go mod download

echo "== go mod tidy -diff (go.mod and go.sum must be tidy)"
go mod tidy -diff

echo "== go vet"
go vet -unsafeptr=false ./...
go vet -tags failpoints ./internal/failpoint ./cmd/syncdb # the failpoint build the scale-out tests run

echo "== staticcheck (pinned)"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== starting a throw-away PostgreSQL on 127.0.0.1 (scale-out tests; as root installs Debian's postgresql if missing)"
pgdir=$(mktemp -d /tmp/syncdb-pg.XXXXXX)
pgenv=$(scripts/pg.sh start "$pgdir") # fails the run if it cannot start: CI runs the scale-out tests
eval "$pgenv"

echo "== go test -race ./..."
go test -race -timeout 45m "$@" ./...

echo "== simulator: 80 seeds x 300 operations (a soak: see README, The simulator)"
go test -count=1 -timeout 30m ./sim -run 'TestSim$'
