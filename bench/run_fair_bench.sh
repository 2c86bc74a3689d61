#!/usr/bin/env bash
# The fair-scheduling benchmark (issue 8 section 1): one heavy client saturating rerankd (closed
# loop, HEAVY_CONCURRENCY whole SciFact requests of 20 passages in flight) plus LIGHT_CLIENTS light
# clients at LIGHT_RATE req/s each (Poisson; the first LIGHT_DOCS passages of a request). Each
# repeat runs three back-to-back phases of DURATION seconds on the same server (light alone,
# heavy alone, both) and reports the light clients' p99 with the heavy client over their p99 alone
# (target <= 2) and the heavy client's pairs/s with the light clients over the capacity they
# leave (heavy alone minus the light clients' pairs/s; target >= 0.8). Medians over REPEATS.
#   WORKERS, THREADS, PRECISION, MODEL_DIR, WORKLOAD   as bench/run_bench.sh
#   MAX_BATCH_TOKENS   execution.max_batch_tokens (default 8192, the shipped default)
#   FAIR_QUANTUM       execution.fair_quantum_tokens (default 512)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
WORKERS="${WORKERS:-1}"
THREADS="${THREADS:-2}"
PRECISION="${PRECISION:-bf16}"
REPEATS="${REPEATS:-3}"
DURATION="${DURATION:-20}"
HEAVY_CONCURRENCY="${HEAVY_CONCURRENCY:-4}"
LIGHT_CLIENTS="${LIGHT_CLIENTS:-4}"
LIGHT_RATE="${LIGHT_RATE:-1}"
LIGHT_DOCS="${LIGHT_DOCS:-5}"
MAX_BATCH_TOKENS="${MAX_BATCH_TOKENS:-8192}"
FAIR_QUANTUM="${FAIR_QUANTUM:-512}"
MODEL_DIR="${MODEL_DIR:-models/demo-minilm-l6}"
WORKLOAD="${WORKLOAD:-${RERANK_SHARED_DIR:-../shared}/data/bench/scifact_20docs.jsonl}"
BENCH="$BUILD/bench/rerank-bench"
export OPENBLAS_NUM_THREADS=1
[ -f "$WORKLOAD" ] || { echo "run_fair_bench: workload $WORKLOAD not found" >&2; exit 2; }
BUILD="$BUILD" bash deploy/make_demo_model.sh

port=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/rerankd.yaml" <<YAML
execution:
  max_batch_tokens: $MAX_BATCH_TOKENS
  fair_quantum_tokens: $FAIR_QUANTUM
YAML
RERANKER_MODEL_DIR="$MODEL_DIR" RERANKER_PRECISION="$PRECISION" RERANKER_WORKERS="$WORKERS" \
RERANKER_INTRA_OP_THREADS="$THREADS" RERANKER_GRPC_LISTEN="127.0.0.1:$port" \
RERANKER_HTTP_LISTEN="" RERANKER_API_HTTP_LISTEN="" RERANKER_ADMIN_GRPC_LISTEN="" RERANKER_RATE_LIMIT_ENABLED=false \
RERANKER_FLAGS_FILE="$tmp/flags.yaml" RERANKER_AUDIT_LOG="$tmp/audit.jsonl" RERANKER_LOG_LEVEL=warn \
  "$BUILD/app/rerankd" --config "$tmp/rerankd.yaml" > "$tmp/rerankd.log" 2>&1 &
pid=$!

out_all=()
for i in $(seq "$REPEATS"); do
  out=$("$BENCH" --mode fair --workload "$WORKLOAD" --target "127.0.0.1:$port" \
        --concurrency "$HEAVY_CONCURRENCY" --duration "$DURATION" --light-clients "$LIGHT_CLIENTS" \
        --light-rate "$LIGHT_RATE" --light-docs "$LIGHT_DOCS")
  echo "$out"
  out_all+=("$(echo "$out" | tail -1)")
done
printf '%s\n' "${out_all[@]}" | /usr/bin/python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
keys = ["light_alone_ms_p99", "light_mixed_ms_p99", "light_p99_ratio", "heavy_alone_pairs_per_s",
        "heavy_mixed_pairs_per_s", "light_mixed_pairs_per_s", "heavy_share_of_remaining"]
s = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
s.update({"repeats": len(runs), "target_light_p99_ratio": 2.0,
          "target_heavy_share_of_remaining": 0.8,
          "per_repeat": {k: [round(r[k], 3) for r in runs] for k in ("light_p99_ratio", "heavy_share_of_remaining")}})
print("== summary (medians) ==")
print(json.dumps(s))
'
