#!/usr/bin/env bash
# A/B of two exported modules of the same weights in one run (issue 10 section 3): OLD (default
# the plain-op export, `export_model.py --plain`) vs NEW (the default export: fused ops, packed
# rows), alternating OLD/NEW (order flipped every repeat) so that a shared, noisy machine affects
# both alike.
#   OLD, NEW   model directories (default models/ab-plain, models/ab-packed; made from the demo
#              model's config and seed if missing)
#   PRECISION  bf16 (default) | fp32;  THREADS intra-op threads (default 2)
#   REPEATS    repeats (default 3; medians reported);  REQUESTS requests per raw run (default 100)
#   ROOF_REQUESTS requests of each roofline run (default 30)
# Per repeat and model: rerank-bench --mode raw (throughput, per-request forward p50 = a lone
# 20-passage request's forward) and --mode roofline --json (roofline ratio). Prints one line per
# run and a JSON summary with the NEW/OLD ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
OLD="${OLD:-models/ab-plain}"
NEW="${NEW:-models/ab-packed}"
PRECISION="${PRECISION:-bf16}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
REQUESTS="${REQUESTS:-100}"
ROOF_REQUESTS="${ROOF_REQUESTS:-30}"
WORKLOAD="${WORKLOAD:-${RERANK_SHARED_DIR:-../shared}/data/bench/scifact_20docs.jsonl}"
BENCH="$BUILD/bench/rerank-bench"
export OPENBLAS_NUM_THREADS=1
[ -f "$WORKLOAD" ] || { echo "run_ab_bench: workload $WORKLOAD not found" >&2; exit 2; }
SRC=third_party/ms-marco-MiniLM-L-6-v2
for pair in "$OLD:--plain" "$NEW:--fused-ops-lib=$BUILD/server/fused_ops/librerank_fused_ops.so"; do
  dir="${pair%%:*}" opt="${pair#*:}"
  if [ ! -f "$dir/model.yaml" ]; then
    /usr/bin/python3 tools/export_model.py --random-init --out "$dir" --name demo-minilm-l6 \
      --seed 0 --config "$SRC/config.json" --vocab "$SRC/vocab.txt" "$opt" >&2
  fi
done

field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for i in $(seq "$REPEATS"); do
  order="old new"
  [ $((i % 2)) -eq 0 ] && order="new old"
  for which in $order; do
    dir="$OLD"
    [ "$which" = new ] && dir="$NEW"
    raw=$("$BENCH" --mode raw --workload "$WORKLOAD" --model-dir "$dir" --precision "$PRECISION" \
          --workers 1 --threads "$THREADS" --requests "$REQUESTS" --warmup 3 | tail -1)
    roof=$("$BENCH" --mode roofline --json --workload "$WORKLOAD" --model-dir "$dir" \
           --precision "$PRECISION" --threads "$THREADS" --requests "$ROOF_REQUESTS" \
           --profile-requests 0 | tail -1)
    line="{\"repeat\": $i, \"module\": \"$which\", \"pairs_per_s\": $(echo "$raw" | field pairs_per_s), \"forward_ms_p50\": $(echo "$raw" | field forward_ms_p50), \"roofline\": $roof}"
    echo "$line"
    echo "$line" >> "$results"
  done
done
/usr/bin/python3 - "$results" "$PRECISION" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(module, key, sub=None):
    v = [(r[key][sub] if sub else r[key]) for r in rows if r["module"] == module]
    return statistics.median(v)
s = {"precision": sys.argv[2], "repeats": len(rows) // 2}
for m in ("old", "new"):
    s[m] = {"raw_pairs_per_s": round(med(m, "pairs_per_s"), 2),
            "lone_request_forward_ms_p50": round(med(m, "forward_ms_p50"), 1),
            "roofline_ratio": round(med(m, "roofline", "roofline_ratio"), 3),
            "forward_gflops": round(med(m, "roofline", "forward_gflops"), 1),
            "gemm_gflops_bf16": round(med(m, "roofline", "gemm_gflops_bf16"), 1)}
# Ratios per repeat (same moment of the shared machine), then their median.
def ratio(key, sub=None):
    out = []
    for rep in sorted({r["repeat"] for r in rows}):
        o = [r for r in rows if r["repeat"] == rep and r["module"] == "old"][0]
        n = [r for r in rows if r["repeat"] == rep and r["module"] == "new"][0]
        a, b = (n[key][sub], o[key][sub]) if sub else (n[key], o[key])
        out.append(a / b)
    return round(statistics.median(out), 3)
s["throughput_new_over_old"] = ratio("pairs_per_s")
s["target_throughput_new_over_old"] = 1.3
s["lone_p50_new_over_old"] = ratio("forward_ms_p50")
s["target_lone_p50_new_over_old"] = 0.75
s["target_roofline_ratio"] = 0.85
print("== summary (medians; ratios per repeat, then median) ==")
print(json.dumps(s))
PY
