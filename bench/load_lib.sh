# Shared by bench/run_overload_bench.sh and bench/run_soak.sh (sourced, not run): starts rerankd on a
# free port with the score cache and rate limiting off (a repeated workload must not be served from
# the cache, and the queue, not the rate limiter, must do the shedding), and measures saturation.
#   WORKERS, THREADS, PRECISION, MODEL_DIR, WORKLOAD, BUILD   as bench/run_bench.sh
#   EXTRA_YAML   more config (YAML text) for the server, e.g. "execution:\n  max_client_queue_pairs: 200"
BUILD="${BUILD:-build}"
WORKERS="${WORKERS:-1}"
THREADS="${THREADS:-2}"
PRECISION="${PRECISION:-bf16}"
MODEL_DIR="${MODEL_DIR:-models/demo-minilm-l6}"
WORKLOAD="${WORKLOAD:-${RERANK_SHARED_DIR:-../shared}/data/bench/scifact_20docs.jsonl}"
BENCH="$BUILD/bench/rerank-bench"
export OPENBLAS_NUM_THREADS=1
[ -f "$WORKLOAD" ] || { echo "$0: workload $WORKLOAD not found" >&2; exit 2; }

# start_server TMPDIR: sets $port and $pid.
start_server() {
  local tmp="$1"
  bash deploy/make_demo_model.sh
  port=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  printf '%b\n' "${EXTRA_YAML:-}" > "$tmp/rerankd.yaml"
  RERANKER_MODEL_DIR="$MODEL_DIR" RERANKER_PRECISION="$PRECISION" RERANKER_WORKERS="$WORKERS" \
  RERANKER_INTRA_OP_THREADS="$THREADS" RERANKER_GRPC_LISTEN="127.0.0.1:$port" \
  RERANKER_HTTP_LISTEN="" RERANKER_ADMIN_GRPC_LISTEN="" RERANKER_RATE_LIMIT_ENABLED=false \
  RERANKER_CACHE_ENABLED=false RERANKER_FLAGS_FILE="$tmp/flags.yaml" \
  RERANKER_AUDIT_LOG="$tmp/audit.jsonl" RERANKER_LOG_LEVEL=warn \
    "$BUILD/app/rerankd" --config "$tmp/rerankd.yaml" > "$tmp/rerankd.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$tmp/rerankd.log" >&2; echo "$0: rerankd exited" >&2; exit 1; fi
    /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "$0: rerankd did not listen" >&2
  exit 1
}

json_field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

# saturation N: closed loop, SAT_CONCURRENCY (default 4) clients, N requests; sets $sat_rps (req/s)
# and $sat_pairs (pairs/s).
saturation() {
  local out
  out=$("$BENCH" --mode serve --workload "$WORKLOAD" --target "127.0.0.1:$port" \
        --concurrency "${SAT_CONCURRENCY:-4}" --requests "$1")
  echo "$out" | tail -1
  sat_pairs=$(echo "$out" | json_field pairs_per_s)
  sat_rps=$(echo "$out" | /usr/bin/python3 -c "import json,sys; j=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(j['ok']/j['seconds'])")
}
