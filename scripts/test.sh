#!/usr/bin/env bash
# The whole test run, from a fresh machine: installs what the tests need
# (Go modules, the pinned npm client for the interop tests) and runs every
# test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing the npm client for interop tests (interop/package-lock.json)"
npm ci --prefix interop --no-audit --no-fund --loglevel=error

echo "== downloading Go modules"
go mod download

echo "== go vet"
go vet -unsafeptr=false ./...

echo "== go test -race"
go test -race -timeout 45m "$@" ./...
