# shellcheck shell=bash
# Sourced by deploy/*_reranker.sh and deploy/check_deployment.sh: locates the rerankctl binary and
# runs it where rerankd runs.

# The repository root (this file is in <root>/deploy).
rerank_repo_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

# $1 made absolute against the current directory ("" stays "", so rerankctl can reject it).
absolute_path() {
  case "$1" in
    /* | "") printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
  esac
}

# Prints the absolute path of rerankctl. Order: $RERANKCTL, then <repo>/build/tools/rerankctl
# (what `make build` produces), then `rerankctl` on PATH.
find_rerankctl() {
  if [[ -n "${RERANKCTL:-}" ]]; then
    if [[ ! -x "$RERANKCTL" ]]; then
      echo "$(basename "$0"): RERANKCTL=$RERANKCTL is not an executable file" >&2
      return 1
    fi
    absolute_path "$RERANKCTL"
    return 0
  fi
  local root
  root="$(rerank_repo_root)"
  if [[ -x "$root/build/tools/rerankctl" ]]; then
    printf '%s\n' "$root/build/tools/rerankctl"
    return 0
  fi
  if command -v rerankctl >/dev/null 2>&1; then
    absolute_path "$(command -v rerankctl)"
    return 0
  fi
  echo "$(basename "$0"): rerankctl not found: run 'make build' (builds build/tools/rerankctl)," \
       "put rerankctl on PATH, or set RERANKCTL=/path/to/rerankctl" >&2
  return 1
}

# rerankd resolves relative paths (flags.path, and with it the admin token file it generates when
# no admin.token is configured, data/admin.token by default; audit.path; model.dir) against its
# working directory, and `make run` runs it from the repository root. So that rerankctl, which
# derives the same paths from the same config and environment, finds the same files from wherever
# a script is called, the scripts run it in rerankd's working directory: $RERANKD_WORKDIR, default
# the repository root. Paths the caller passes (--config, --token-file, --docs-file, --state) stay
# relative to the caller's directory: this sets RERANKCTL_ARGS to "$@" with those made absolute,
# then cds. Call it after find_rerankctl.
enter_rerankd_workdir() {
  RERANKCTL_ARGS=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --config | --token-file | --docs-file | --state)
        RERANKCTL_ARGS+=("$1")
        shift
        if [[ $# -gt 0 ]]; then
          RERANKCTL_ARGS+=("$(absolute_path "$1")")
          shift
        fi
        ;;
      --config=* | --token-file=* | --docs-file=* | --state=*)
        RERANKCTL_ARGS+=("${1%%=*}=$(absolute_path "${1#*=}")")
        shift
        ;;
      --)
        RERANKCTL_ARGS+=("$@")
        break
        ;;
      *)
        RERANKCTL_ARGS+=("$1")
        shift
        ;;
    esac
  done
  local dir="${RERANKD_WORKDIR:-$(rerank_repo_root)}"
  if ! cd "$dir" 2>/dev/null; then
    echo "$(basename "$0"): RERANKD_WORKDIR=$dir is not a directory" >&2
    exit 2
  fi
}

# Prints the caller's usage() and exits 0 when any argument is -h or --help.
exit_on_help() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      -h | --help)
        usage
        exit 0
        ;;
    esac
  done
}
