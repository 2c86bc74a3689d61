#!/usr/bin/env bash
# The rerankd benchmark (issue: "Benchmark"): raw-model baseline vs the served path, same model,
# same threads, same SciFact workload (../shared/data/bench/scifact_20docs.jsonl).
#   WORKERS, THREADS  execution.workers / execution.intra_op_threads (default 1 x 2)
#   PRECISION         bf16 (default) | fp32
#   REPEATS           repeats of each measurement; the median is reported (default 3)
#   REQUESTS          requests per measurement (default 300 = the whole workload once)
# Prints one JSON line per measurement and a summary with the two target ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
WORKERS="${WORKERS:-1}"
THREADS="${THREADS:-2}"
PRECISION="${PRECISION:-bf16}"
REPEATS="${REPEATS:-3}"
REQUESTS="${REQUESTS:-300}"
MODEL_DIR="${MODEL_DIR:-models/demo-minilm-l6}"
WORKLOAD="${WORKLOAD:-${RERANK_SHARED_DIR:-../shared}/data/bench/scifact_20docs.jsonl}"
BENCH="$BUILD/bench/rerank-bench"
export OPENBLAS_NUM_THREADS=1
[ -f "$WORKLOAD" ] || { echo "run_bench: workload $WORKLOAD not found" >&2; exit 2; }
BUILD="$BUILD" bash deploy/make_demo_model.sh

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

echo "== raw model (in-process, ${WORKERS} worker(s) x ${THREADS} thread(s), $PRECISION) =="
raw_tp=(); raw_fwd=()
for i in $(seq "$REPEATS"); do
  out=$("$BENCH" --mode raw --workload "$WORKLOAD" --model-dir "$MODEL_DIR" --precision "$PRECISION" \
        --workers "$WORKERS" --threads "$THREADS" --requests "$REQUESTS")
  echo "$out" | tail -1
  raw_tp+=("$(echo "$out" | field pairs_per_s)")
done
# The lone-request baseline: one request's batches on one replica with all its threads.
for i in $(seq "$REPEATS"); do
  out=$("$BENCH" --mode raw --workload "$WORKLOAD" --model-dir "$MODEL_DIR" --precision "$PRECISION" \
        --workers 1 --threads "$THREADS" --requests 100)
  echo "$out" | tail -1
  raw_fwd+=("$(echo "$out" | field forward_ms_p50)")
done

port=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
RERANKER_MODEL_DIR="$MODEL_DIR" RERANKER_PRECISION="$PRECISION" RERANKER_WORKERS="$WORKERS" \
RERANKER_INTRA_OP_THREADS="$THREADS" RERANKER_GRPC_LISTEN="127.0.0.1:$port" \
RERANKER_HTTP_LISTEN="" RERANKER_API_HTTP_LISTEN="" RERANKER_ADMIN_GRPC_LISTEN="" RERANKER_RATE_LIMIT_ENABLED=false \
RERANKER_FLAGS_FILE="$tmp/flags.yaml" RERANKER_AUDIT_LOG="$tmp/audit.jsonl" RERANKER_LOG_LEVEL=warn \
  "$BUILD/app/rerankd" > "$tmp/rerankd.log" 2>&1 &
pid=$!

echo "== served: lone requests (closed loop, 1 client) =="
lone=()
for i in $(seq "$REPEATS"); do
  out=$("$BENCH" --mode serve --workload "$WORKLOAD" --target "127.0.0.1:$port" --concurrency 1 --requests 100)
  echo "$out" | tail -1
  lone+=("$(echo "$out" | field latency_ms_p50)")
done
echo "== served: saturation (closed loop, 4 clients) =="
sat=()
for i in $(seq "$REPEATS"); do
  out=$("$BENCH" --mode serve --workload "$WORKLOAD" --target "127.0.0.1:$port" --concurrency 4 --requests "$REQUESTS")
  echo "$out" | tail -1
  sat+=("$(echo "$out" | field pairs_per_s)")
done

raw_tp_m=$(printf '%s\n' "${raw_tp[@]}" | median)
raw_fwd_m=$(printf '%s\n' "${raw_fwd[@]}" | median)
lone_m=$(printf '%s\n' "${lone[@]}" | median)
sat_m=$(printf '%s\n' "${sat[@]}" | median)
/usr/bin/python3 - "$raw_tp_m" "$raw_fwd_m" "$lone_m" "$sat_m" "$WORKERS" "$THREADS" "$PRECISION" <<'PY'
import json, sys
raw_tp, raw_fwd, lone, sat = map(float, sys.argv[1:5])
s = {"workers": int(sys.argv[5]), "threads": int(sys.argv[6]), "precision": sys.argv[7],
     "raw_pairs_per_s": round(raw_tp, 1), "served_pairs_per_s_at_saturation": round(sat, 1),
     "served_over_raw": round(sat / raw_tp, 3), "target_served_over_raw": 0.95,
     "raw_forward_ms_p50": round(raw_fwd, 1), "lone_request_ms_p50": round(lone, 1),
     "lone_over_raw_forward": round(lone / raw_fwd, 3), "target_lone_over_raw_forward": 1.2}
print("== summary (medians) ==")
print(json.dumps(s))
PY
