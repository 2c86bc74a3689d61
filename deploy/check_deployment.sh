#!/usr/bin/env bash
# Pre-deployment validation of a rerankd host; exit status 0 only when every check passes.
#   ./deploy/check_deployment.sh --config /etc/rerankd/rerankd.yaml
# Relative paths in the config resolve against rerankd's working directory, RERANKD_WORKDIR
# (default: the repository root, where `make run` runs rerankd); see rerankctl_lib.sh.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--config PATH] [rerankctl global flags, e.g. --admin URL]

Runs 'rerankctl check', one ✅/❌ line per check:
  config file present (with --config), model files (model.pt, vocab.txt, model.yaml),
  flags file and audit log directories writable, config valid (file + RERANKER_* environment),
  health OK (GET /health 200, status healthy), reranker enabled, stats available.
--config is relative to the current directory; the paths inside the config (model.dir, flags.path,
audit.path) resolve against rerankd's working directory, RERANKD_WORKDIR (default: the repository
root, where 'make run' runs rerankd), as rerankd resolves them. The checks read only: no admin
token is needed (--token-file and --token are accepted and unused).
Environment: RERANKER_ADMIN_URL (default http://127.0.0.1:8000), RERANKER_* (as rerankd reads
them), RERANKD_WORKDIR, RERANKCTL (binary path).
Exit status: 0 all checks passed; 1 a check failed; 2 usage error.
USAGE
}

# shellcheck source=deploy/rerankctl_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rerankctl_lib.sh"
exit_on_help "$@"
RERANKCTL_BIN="$(find_rerankctl)"
enter_rerankd_workdir "$@"
exec "$RERANKCTL_BIN" check ${RERANKCTL_ARGS[@]+"${RERANKCTL_ARGS[@]}"}
