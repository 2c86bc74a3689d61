#!/usr/bin/env bash
# HTTP data plane vs gRPC (issue 9, "Speed"): the same rerankd process, the same SciFact workload
# (../shared/data/bench/scifact_20docs.jsonl), the same requests (top_n 5, client id "bench"),
# sent over gRPC (rerank.v1.Reranker/Rerank) and over HTTP (POST /v2/rerank, JSON). The phases
# alternate (gRPC, HTTP, gRPC, HTTP, ...) so that noise on a shared machine hits both alike, and
# medians of the repeats are compared:
#   saturated throughput (closed loop, CONCURRENCY clients): HTTP / gRPC, target >= 0.95
#   a lone request's p50 (closed loop, 1 client):            HTTP - gRPC, target <= 2 ms
#   WORKERS, THREADS  execution.workers / execution.intra_op_threads (default 1 x 2)
#   PRECISION         bf16 (default) | fp32
#   REPEATS           repeats of each measurement (default 3)
#   REQUESTS          requests per saturation measurement (default 300 = the workload once)
#   LONE_REQUESTS     requests per lone-request measurement (default 100)
#   CONCURRENCY       saturation clients (default 4)
#   PASSTHROUGH=1     the reranker flag off (ENABLE_RERANKER=false): no model work, so what is
#                     measured is the transports alone (parsing, validation, rendering, sockets);
#                     the lone p50 difference is then the HTTP path's added cost per request
# Prints one JSON line per measurement and a summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
WORKERS="${WORKERS:-1}"
THREADS="${THREADS:-2}"
PRECISION="${PRECISION:-bf16}"
REPEATS="${REPEATS:-3}"
REQUESTS="${REQUESTS:-300}"
LONE_REQUESTS="${LONE_REQUESTS:-100}"
CONCURRENCY="${CONCURRENCY:-4}"
PASSTHROUGH="${PASSTHROUGH:-0}"
MODEL_DIR="${MODEL_DIR:-models/demo-minilm-l6}"
WORKLOAD="${WORKLOAD:-${RERANK_SHARED_DIR:-../shared}/data/bench/scifact_20docs.jsonl}"
BENCH="$BUILD/bench/rerank-bench"
export OPENBLAS_NUM_THREADS=1
[ -f "$WORKLOAD" ] || { echo "run_http_bench: workload $WORKLOAD not found" >&2; exit 2; }
bash deploy/make_demo_model.sh

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
free_port() { /usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

grpc_port=$(free_port)
http_port=$(free_port)
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
RERANKER_MODEL_DIR="$MODEL_DIR" RERANKER_PRECISION="$PRECISION" RERANKER_WORKERS="$WORKERS" \
RERANKER_INTRA_OP_THREADS="$THREADS" RERANKER_GRPC_LISTEN="127.0.0.1:$grpc_port" \
RERANKER_API_HTTP_LISTEN="127.0.0.1:$http_port" \
RERANKER_HTTP_LISTEN="" RERANKER_ADMIN_GRPC_LISTEN="" RERANKER_RATE_LIMIT_ENABLED=false \
RERANKER_FLAGS_FILE="$tmp/flags.yaml" RERANKER_AUDIT_LOG="$tmp/audit.jsonl" RERANKER_LOG_LEVEL=warn \
ENABLE_RERANKER=$([ "$PASSTHROUGH" = 1 ] && echo false || echo true) \
  "$BUILD/app/rerankd" > "$tmp/rerankd.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/rerankd.log" >&2; exit 1; }
  sleep 0.1
done

run() {  # run MODE CONCURRENCY REQUESTS -> the summary JSON line
  local mode=$1 conc=$2 n=$3 port=$grpc_port
  [ "$mode" = serve-http ] && port=$http_port
  "$BENCH" --mode "$mode" --workload "$WORKLOAD" --target "127.0.0.1:$port" \
    --concurrency "$conc" --requests "$n" | tail -1
}

# Warm-up (first connections, allocator, caches of the model): not measured.
run serve 1 20 > /dev/null
run serve-http 1 20 > /dev/null

grpc_lone=(); http_lone=(); grpc_sat=(); http_sat=()
for i in $(seq "$REPEATS"); do
  echo "== repeat $i: lone requests (1 client, $LONE_REQUESTS requests) =="
  out=$(run serve 1 "$LONE_REQUESTS"); echo "$out"; grpc_lone+=("$(echo "$out" | field latency_ms_p50)")
  out=$(run serve-http 1 "$LONE_REQUESTS"); echo "$out"; http_lone+=("$(echo "$out" | field latency_ms_p50)")
  echo "== repeat $i: saturation ($CONCURRENCY clients, $REQUESTS requests) =="
  out=$(run serve "$CONCURRENCY" "$REQUESTS"); echo "$out"; grpc_sat+=("$(echo "$out" | field pairs_per_s)")
  out=$(run serve-http "$CONCURRENCY" "$REQUESTS"); echo "$out"; http_sat+=("$(echo "$out" | field pairs_per_s)")
done

/usr/bin/python3 - "$(printf '%s\n' "${grpc_sat[@]}" | median)" "$(printf '%s\n' "${http_sat[@]}" | median)" \
  "$(printf '%s\n' "${grpc_lone[@]}" | median)" "$(printf '%s\n' "${http_lone[@]}" | median)" \
  "$WORKERS" "$THREADS" "$PRECISION" "$REPEATS" "$PASSTHROUGH" <<'PY'
import json, sys
grpc_sat, http_sat, grpc_lone, http_lone = map(float, sys.argv[1:5])
s = {"workers": int(sys.argv[5]), "threads": int(sys.argv[6]), "precision": sys.argv[7],
     "repeats": int(sys.argv[8]), "passthrough": sys.argv[9] == "1",
     "grpc_pairs_per_s": round(grpc_sat, 1), "http_pairs_per_s": round(http_sat, 1),
     "http_over_grpc": round(http_sat / grpc_sat, 3), "target_http_over_grpc": 0.95,
     "grpc_lone_ms_p50": round(grpc_lone, 2), "http_lone_ms_p50": round(http_lone, 2),
     "http_added_lone_ms_p50": round(http_lone - grpc_lone, 2), "target_added_ms": 2.0}
print("== summary (medians) ==")
print(json.dumps(s))
PY
