#!/usr/bin/env bash
# Idle connections (issue 8 section 5): rerankd (its own process) holds CONNECTIONS (default
# 10000) idle gRPC connections from rerank-bench (each channel its own subchannel pool: its own
# TCP connection) while a lone request's latency is measured, against the same without them
# (LONE sequential requests each, default 20), with the server's VmRSS before and after.
# Both processes need a descriptor per connection: the soft RLIMIT_NOFILE is raised to the hard
# one here (rerankd also raises its own at startup).
#   plus WORKERS, THREADS, PRECISION, MODEL_DIR, WORKLOAD (bench/load_lib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-10000}"
LONE="${LONE:-20}"
ulimit -n "$(ulimit -Hn)"
echo "RLIMIT_NOFILE: $(ulimit -n)"
source bench/load_lib.sh
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
start_server "$tmp"
"$BENCH" --mode idle --workload "$WORKLOAD" --target "127.0.0.1:$port" \
  --connections "$CONNECTIONS" --lone "$LONE" --pid "$pid"
