#!/usr/bin/env bash
# Moves a running rerankd to a rollout stage, then shows its status.
#   ./deploy/deploy_reranker.sh cache-10            # next rollout step
#   ./deploy/deploy_reranker.sh rollback            # optional features off, reranker stays on
#   ./deploy/deploy_reranker.sh disabled            # reranker off: original order passes through
#   ./deploy/deploy_reranker.sh auto                # guarded rollout of the whole plan (rerankctl rollout)
# Extra arguments go to rerankctl (e.g. --actor alice, --admin URL, --token-file PATH, --config
# PATH). On the server's host no token flag is needed: a rerankd without admin.token writes a
# generated one to its admin.token_file (data/admin.token under `make run`), and rerankctl, run in
# rerankd's working directory (see rerankctl_lib.sh), reads it from there.
set -euo pipefail

# Keep in sync with StageNames() in common/feature_flags.cc (tests/rerankctl_e2e_test.py checks
# this list against the server's GET /flags "stages").
STAGES=(feature-flags cache-10 cache-50 cache-100 full rollback disabled)

# `auto`: the deployment guide's plan, one stage a day, gated on the guide's figures.
AUTO_PLAN="feature-flags,cache-10,cache-50,cache-100,full"
AUTO_HOLD="24h"
AUTO_GATES="p95_latency_ms<50,error_rate_percent<0.1,cache_hit_rate_percent>30"

usage() {
  cat <<USAGE
Usage: $(basename "$0") <stage> [--actor NAME] [--token-file PATH] [--config PATH]
                          [rerankctl global flags]
       $(basename "$0") auto [--dry-run] [rerankctl rollout flags] [rerankctl global flags]

Sets the rollout stage with 'rerankctl stage <stage>' (prints old -> new stage and the effective
flags), then prints 'rerankctl status'. Stages, in rollout order:
  feature-flags  reranker on, cache off
  cache-10       cache for 10% of clients
  cache-50       cache for 50% of clients
  cache-100      cache for every client
  full           cache 100%, batch, audit and overfetch (20 candidates -> top 5) on
  rollback       back to the plain reranker: cache, batch and overfetch off
  disabled       reranker off: requests return their original order (full rollback)

'auto' runs the guarded rollout of docs/OPERATIONS.md ("Guarded rollout"):
  rerankctl rollout --plan $AUTO_PLAN --hold $AUTO_HOLD \\
      --gate "$AUTO_GATES"
advancing one stage per day while the gates hold and rolling back to the last good stage when one
fails for a whole window (5 minutes). It resumes where it was when run again. Further arguments
go to rerankctl (a later --hold or --gate ... overrides or adds; --state FILE, --prometheus URL,
--actor NAME); --dry-run prints the command instead of running it. Exit status: rerankctl's
(0 the plan completed, 1 rolled back or failed, 2 usage error).

The admin token, first found: --token-file PATH, --token T, RERANKER_ADMIN_TOKEN, admin.token in
--config, RERANKER_ADMIN_TOKEN_FILE, then the token file rerankd generates when it has no
admin.token (admin.token_file, default admin.token next to its flags file: data/admin.token for
'make run'), located from --config and the RERANKER_* environment as rerankd locates it.
rerankctl runs in rerankd's working directory, RERANKD_WORKDIR (default: the repository root,
where 'make run' runs it), so relative paths in the config resolve as rerankd's do; --config and
--token-file paths are relative to the current directory.
Environment: RERANKER_ADMIN_URL, RERANKER_ADMIN_TOKEN, RERANKER_ADMIN_TOKEN_FILE, RERANKD_WORKDIR,
RERANKCTL (binary path).
Exit status: 0 applied; 1 the server refused or is unreachable; 2 usage error.
USAGE
}

if [[ $# -lt 1 ]]; then
  usage >&2
  exit 2
fi
case "$1" in
  -h | --help)
    usage
    exit 0
    ;;
esac
stage="$1"
shift

if [[ "$stage" == "auto" ]]; then
  dry_run=0
  auto_args=()
  for a in "$@"; do
    if [[ "$a" == "--dry-run" ]]; then dry_run=1; else auto_args+=("$a"); fi
  done
  # shellcheck source=deploy/rerankctl_lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/rerankctl_lib.sh"
  RERANKCTL_BIN="$(find_rerankctl)"
  enter_rerankd_workdir ${auto_args[@]+"${auto_args[@]}"}
  cmd=("$RERANKCTL_BIN" rollout --plan "$AUTO_PLAN" --hold "$AUTO_HOLD" --gate "$AUTO_GATES"
       ${RERANKCTL_ARGS[@]+"${RERANKCTL_ARGS[@]}"})
  if [[ $dry_run -eq 1 ]]; then
    echo "cd $(printf '%q' "$PWD") && $(printf '%q ' "${cmd[@]}")"
    exit 0
  fi
  echo "== rerankctl rollout (plan $AUTO_PLAN, hold $AUTO_HOLD, gates $AUTO_GATES)"
  exec "${cmd[@]}"
fi

valid=0
for s in "${STAGES[@]}"; do
  if [[ "$s" == "$stage" ]]; then valid=1; fi
done
if [[ $valid -eq 0 ]]; then
  echo "$(basename "$0"): unknown stage '$stage'; valid stages: ${STAGES[*]}" >&2
  exit 2
fi

# --actor is for `stage` only; every other argument goes to both commands.
stage_args=()
common_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --actor)
      if [[ $# -lt 2 ]]; then
        echo "$(basename "$0"): --actor needs a value" >&2
        exit 2
      fi
      stage_args+=("$1" "$2")
      shift 2
      ;;
    --actor=*)
      stage_args+=("$1")
      shift
      ;;
    *)
      common_args+=("$1")
      shift
      ;;
  esac
done

# shellcheck source=deploy/rerankctl_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rerankctl_lib.sh"
RERANKCTL_BIN="$(find_rerankctl)"
enter_rerankd_workdir ${common_args[@]+"${common_args[@]}"}

echo "== rerankctl stage $stage"
"$RERANKCTL_BIN" stage "$stage" ${stage_args[@]+"${stage_args[@]}"} \
  ${RERANKCTL_ARGS[@]+"${RERANKCTL_ARGS[@]}"}
echo
echo "== rerankctl status"
"$RERANKCTL_BIN" status ${RERANKCTL_ARGS[@]+"${RERANKCTL_ARGS[@]}"}
