#!/usr/bin/env bash
# Soak (issue 8 section 5): rerankd for DURATION seconds (default 1800) at LOAD_FRACTION (default
# 0.7) of its measured saturation, open loop (Poisson), reporting every WINDOW seconds (default 30)
# the server's VmRSS (sampled each second) and the p99 of the requests that finished in the window.
# RSS is "flat" when, after WARMUP seconds (default 300), its spread (max - min) / min over the
# window-end samples is within 5%. Writes OUT_DIR/soak.jsonl (one line per window, the summary
# last) and plots RSS and p99 over time into PLOT (default bench/soak.png; gnuplot, installed from
# Debian if missing).
#   SAT_REQUESTS  requests of the closed-loop saturation measurement (default 40)
#   RATE          skip the measurement and offer this many req/s
#   SOAK_JSONL    skip the run: summarize and plot this earlier OUT_DIR/soak.jsonl
#   plus WORKERS, THREADS, PRECISION, MODEL_DIR, WORKLOAD, EXTRA_YAML (bench/load_lib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-1800}"
WINDOW="${WINDOW:-30}"
WARMUP="${WARMUP:-300}"
LOAD_FRACTION="${LOAD_FRACTION:-0.7}"
SAT_REQUESTS="${SAT_REQUESTS:-40}"
OUT_DIR="${OUT_DIR:-bench/results}"
PLOT="${PLOT:-bench/soak.png}"
source bench/load_lib.sh
command -v gnuplot >/dev/null || apt-get install -y gnuplot-nox >/dev/null
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; }; rm -rf "$tmp"' EXIT
if [ -z "${SOAK_JSONL:-}" ]; then
  start_server "$tmp"
  if [ -z "${RATE:-}" ]; then
    echo "== saturation (closed loop, ${SAT_CONCURRENCY:-4} clients, $SAT_REQUESTS requests) =="
    saturation "$SAT_REQUESTS"
    RATE=$(/usr/bin/python3 -c "print(round($sat_rps * $LOAD_FRACTION, 3))")
    echo "saturation: $sat_rps req/s ($sat_pairs pairs/s); soak at $LOAD_FRACTION x = $RATE req/s"
  fi
  echo "== soak: $RATE req/s for $DURATION s, windows of $WINDOW s =="
  # Not fatal: failed requests are part of the report.
  "$BENCH" --mode load --workload "$WORKLOAD" --target "127.0.0.1:$port" --rate "$RATE" \
    --duration "$DURATION" --window "$WINDOW" --pid "$pid" | tee "$OUT_DIR/soak.jsonl" || true
  SOAK_JSONL="$OUT_DIR/soak.jsonl"
else
  RATE=$(/usr/bin/python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if '\"mode\"' in l][-1]['rate'])" "$SOAK_JSONL")
  DURATION=$(/usr/bin/python3 -c "import json,sys; print(int([json.loads(l) for l in open(sys.argv[1]) if '\"mode\"' in l][-1]['duration_s']))" "$SOAK_JSONL")
fi
/usr/bin/python3 - "$SOAK_JSONL" "$WARMUP" "$WINDOW" "$RATE" "${sat_rps:-}" > "$tmp/summary.json" <<'PY'
import json, sys
path, warmup, window, rate, sat = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
lines = [json.loads(l) for l in open(path) if l.startswith("{")]
wins = [l for l in lines if "window" in l]
final = [l for l in lines if l.get("mode") == "load"][-1]
after = [w for w in wins if w["t_s"] > warmup and w["rss_mb_last"] > 0 and w["t_s"] <= final["duration_s"]]
rss = [w["rss_mb_last"] for w in after]
p99 = [w["ok_ms_p99"] for w in after if w["ok"] > 0]
s = {"rate_rps": rate, "saturation_rps": float(sat) if sat else None, "duration_s": final["duration_s"],
     "window_s": window, "warmup_s": warmup, "ok": final["ok"], "shed": final["shed"],
     "errors": final["errors"], "ok_ms_p50": final["ok_ms_p50"], "ok_ms_p99": final["ok_ms_p99"],
     "rss_mb_after_warmup_min": min(rss), "rss_mb_after_warmup_max": max(rss),
     "rss_mb_first_after_warmup": rss[0], "rss_mb_last": rss[-1],
     "rss_spread_after_warmup": round((max(rss) - min(rss)) / min(rss), 4),
     "rss_flat_within_5pct": (max(rss) - min(rss)) / min(rss) <= 0.05,
     "window_p99_ms_min": min(p99), "window_p99_ms_median": sorted(p99)[len(p99) // 2],
     "window_p99_ms_max": max(p99)}
print(json.dumps(s))
PY
echo "== summary =="
cat "$tmp/summary.json"
/usr/bin/python3 - "$SOAK_JSONL" > "$tmp/series.dat" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    w = json.loads(line) if line.startswith("{") else {}
    if "window" in w and w["rss_mb_last"] > 0:
        print(w["t_s"], w["rss_mb_last"], w["ok_ms_p99"] if w["ok"] else "NaN")
PY
gnuplot <<GP
set terminal pngcairo size 1000,500 noenhanced
set output "$PLOT"
set title "rerankd soak: $RATE req/s (open loop) for $DURATION s; RSS and p99 per $WINDOW s window"
set xlabel "time (s)"
set ylabel "server RSS (MiB)"
set y2label "p99 latency of OK requests (ms)"
set ytics nomirror
set y2tics
set grid
set key left top
plot "$tmp/series.dat" using 1:2 with linespoints title "RSS (MiB)" axes x1y1, \
     "$tmp/series.dat" using 1:3 with linespoints title "p99 (ms)" axes x1y2
GP
echo "plot: $PLOT"
