#!/usr/bin/env bash
# The whole test run, from a fresh machine: installs what the tests need
# (Go modules, the pinned npm client for the interop tests), runs every test
# with the race detector and, beside it at a lower priority, the simulator's
# full budget without it (the race detector slows the transpiled SQLite
# about tenfold; under -race the simulator runs a smaller budget).
set -euo pipefail
cd "$(dirname "$0")/.."

# -race turns on checkptr (a check of every unsafe.Pointer conversion and
# step) in every package; in modernc.org's transpiled C (SQLite, libc) that
# was a quarter to a third of the race pass's CPU, checking their code,
# not ours. It stays on for this module's packages, the race detector
# everywhere. In GOFLAGS for every build of the run: the tests' own builds
# (interop's race-built server) get it, and the non-race builds, where it
# changes nothing, share one compiled copy of modernc.org/... with them.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-gcflags=modernc.org/...=-d=checkptr=0"

# Some steps print nothing for minutes (staticcheck, go test prints a
# package's result only when it ends): say every 30 s that it is going.
( while sleep 30; do echo "   ... still running ($(date +%T))"; done ) &
ticker=$!
pgdir=
simdir=
sima=
simb=
cleanup() {
	kill "$ticker" 2>/dev/null || true
	# The simulator's processes, if the run stops before they end.
	for p in $sima $simb; do kill "$p" 2>/dev/null || true; done
	[ -z "$simdir" ] || rm -rf "$simdir"
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

# The simulator without the race detector: every test of ./sim (TestSim's
# 80 seeds x 300 operations, the regression seeds, the replay check; a soak
# is wider: see README, The simulator). Its failpoints are global to a
# process, so the seeds run in two processes. They run beside the race pass,
# at a lower priority (nice): the race pass leaves a core idle for minutes
# (tests waiting on timeouts, sockets, child processes), which the
# simulator fills without slowing the race pass's busy stretches.
echo "== simulator: 80 seeds x 300 operations, the regression seeds, the replay check (two processes at low priority, beside the race pass)"
simdir=$(mktemp -d /tmp/syncdb-sim.XXXXXX)
go test -c -o "$simdir/sim.test" ./sim
(cd sim && exec nice -n 10 "$simdir/sim.test" -test.timeout 30m -test.run 'TestSim$' -first=1 -seeds=44 >"$simdir/a.log" 2>&1) &
sima=$!
(cd sim && exec nice -n 10 "$simdir/sim.test" -test.timeout 30m -first=45 -seeds=36 >"$simdir/b.log" 2>&1) &
simb=$!

# go test runs two packages at a time (-p is the number of cores) and
# starts them in the order given: the longest first, so that the short ones
# fill the cores at the end instead of one long package running alone.
mod=$(go list -m)
first=("$mod/server" "$mod" "$mod/interop" "$mod/sim")
mapfile -t rest < <(go list ./... | grep -vxF "$(printf '%s\n' "${first[@]}")")
echo "== go test -race ./... (the longest packages first; checkptr off in modernc.org/..., see above)"
status=0
go test -race -timeout 45m "$@" "${first[@]}" "${rest[@]}" || status=1
go test -tags invariants ./actors/ ./syncactor/ ./pageactor/ || status=1 # the call order checked: an Ask up the order panics (actors.Level, ARCHITECTURE §2)

echo "== simulator (started before the race pass): its results"
wait "$sima" || status=1
sima=
wait "$simb" || status=1
simb=
echo "-- TestSim seeds 1-44:"; cat "$simdir/a.log"
echo "-- TestSim seeds 45-80, TestSimRegressions, TestReplayIsDeterministic:"; cat "$simdir/b.log"
exit $status
