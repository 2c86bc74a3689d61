#!/usr/bin/env bash
# Overload (issue 8 section 5): measure rerankd's saturation (closed loop), then offer
# OVERLOAD x (default 2) that rate open loop (Poisson) for DURATION seconds (default 60). Shows
# that the server sheds with RESOURCE_EXHAUSTED (its per-client queue cap, then the overall queue
# bound), never crashes, keeps its RSS bounded (VmRSS sampled every second) and the p99 of the
# admitted requests bounded (by about the queue cap over the throughput), and that a lone request
# is served normally right after the load stops (a new client: it does not wait for the backlog)
# and once the backlog has drained. Prints one JSON line per WINDOW seconds and a summary.
#   MAX_CLIENT_QUEUE_PAIRS  execution.max_client_queue_pairs (default 100 = 5 SciFact requests;
#                           the shipped default 1024 queues ~50 requests per client, i.e. minutes
#                           of backlog at the few pairs/s of a shared 2-core machine)
#   MAX_QUEUE_PAIRS         execution.max_queue_pairs (default 4096, the shipped default)
#   SAT_REQUESTS            requests of the saturation measurement (default 40)
#   RATE                    skip the measurement and offer this many req/s
#   DEADLINE_MS             per-request deadline of the load (default 60000)
#   plus WORKERS, THREADS, PRECISION, MODEL_DIR, WORKLOAD (bench/load_lib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
OVERLOAD="${OVERLOAD:-2}"
DURATION="${DURATION:-60}"
WINDOW="${WINDOW:-5}"
SAT_REQUESTS="${SAT_REQUESTS:-40}"
DEADLINE_MS="${DEADLINE_MS:-60000}"
MAX_CLIENT_QUEUE_PAIRS="${MAX_CLIENT_QUEUE_PAIRS:-100}"
MAX_QUEUE_PAIRS="${MAX_QUEUE_PAIRS:-4096}"
EXTRA_YAML="execution:\n  max_client_queue_pairs: $MAX_CLIENT_QUEUE_PAIRS\n  max_queue_pairs: $MAX_QUEUE_PAIRS"
source bench/load_lib.sh
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
start_server "$tmp"
if [ -z "${RATE:-}" ]; then
  echo "== saturation (closed loop, ${SAT_CONCURRENCY:-4} clients, $SAT_REQUESTS requests) =="
  saturation "$SAT_REQUESTS"
  RATE=$(/usr/bin/python3 -c "print(round($sat_rps * $OVERLOAD, 3))")
  echo "saturation: $sat_rps req/s ($sat_pairs pairs/s); offering $OVERLOAD x = $RATE req/s"
fi
echo "== overload: $RATE req/s open loop for $DURATION s =="
set +e
"$BENCH" --mode load --workload "$WORKLOAD" --target "127.0.0.1:$port" --rate "$RATE" \
  --duration "$DURATION" --window "$WINDOW" --pid "$pid" --deadline-ms "$DEADLINE_MS" \
  | tee "$tmp/load.jsonl"
set -e
if kill -0 "$pid" 2>/dev/null; then alive=true; else alive=false; fi
/usr/bin/python3 - "$tmp/load.jsonl" "$alive" "${sat_rps:-}" "$MAX_CLIENT_QUEUE_PAIRS" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
r = [l for l in lines if l.get("mode") == "load"][-1]
med = lambda v: round(statistics.median(v), 1) if v else None
s = {"server_alive_after": sys.argv[2] == "true",
     "saturation_rps": round(float(sys.argv[3]), 3) if sys.argv[3] else None,
     "max_client_queue_pairs": int(sys.argv[4]),
     "offered_rps": round(r["offered_rps"], 3), "admitted_rps": round(r["admitted_rps"], 3),
     "shed_rps": round(r["shed_rps"], 3), "other_errors": r["errors"],
     "admitted_ms_p50": round(r["ok_ms_p50"]), "admitted_ms_p99": round(r["ok_ms_p99"]),
     "admitted_ms_max": round(r["ok_ms_max"]), "rss_mb_max": round(r["rss_mb_max"], 1),
     "rss_mb_end": round(r["rss_mb_end"], 1),
     "lone_ms_p50_before": med(r["lone_before_ms"]),
     "lone_ms_p50_right_after_load": med(r["lone_right_after_ms"]),
     "lone_ms_p50_after_drain": med(r["lone_after_drain_ms"]),
     "backlog_drained_after_load_s": round(r["backlog_drained_s"] - r["load_stopped_s"], 1)}
print("== summary ==")
print(json.dumps(s))
PY
