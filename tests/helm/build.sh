#!/usr/bin/env bash
# Builds the offline Helm renderer (tests/helm/render) into $1 with Debian's Go 1.19 and the Go
# libraries Debian installs under /usr/share/gocode (GOPATH mode: no module proxy is needed or
# reachable). The ctest fixture `helm_renderer` runs this (tests/deploy.cmake).
set -euo pipefail
out="${1:?usage: build.sh OUTPUT_BINARY}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
command -v go >/dev/null || { echo "build.sh: go not installed: run deploy/install_test_tools.sh" >&2; exit 1; }
cd "$(dirname "$0")/render"
export GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS=
export GOCACHE="${GOCACHE:-$(dirname "$out")/go-cache}"
go vet .
go build -o "$out" .
