#!/usr/bin/env bash
# Live key stats of a running rerankd, one line every N seconds (default 5), until Ctrl-C.
#   ./deploy/monitor_reranker.sh 10
# Extra arguments go to `rerankctl monitor` (e.g. --count 3, --admin URL). Reads need no admin
# token; rerankctl runs in rerankd's working directory like the other scripts (rerankctl_lib.sh).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [seconds] [--count K] [rerankctl global flags]

Runs 'rerankctl monitor [seconds]': a header, then every [seconds] (default 5) one line with time,
stage, total reranks, req/s since the previous line, avg/p95/p99 latency (ms), cache hit %,
error % and target-latency-met % from GET /health. Ctrl-C stops it.
Reads need no admin token (--token-file and --token are accepted and unused).
Environment: RERANKER_ADMIN_URL (default http://127.0.0.1:8000), RERANKD_WORKDIR (rerankd's
working directory, where rerankctl runs; default the repository root), RERANKCTL (binary path).
USAGE
}

# shellcheck source=deploy/rerankctl_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rerankctl_lib.sh"
exit_on_help "$@"
RERANKCTL_BIN="$(find_rerankctl)"
enter_rerankd_workdir "$@"
exec "$RERANKCTL_BIN" monitor ${RERANKCTL_ARGS[@]+"${RERANKCTL_ARGS[@]}"}
