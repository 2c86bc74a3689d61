# shellcheck shell=bash
# Sourced by deploy/*_reranker.sh and deploy/check_deployment.sh: locates the rerankctl binary.
# Order: $RERANKCTL, then <repo>/build/tools/rerankctl (what `make build` produces), then
# `rerankctl` on PATH.
find_rerankctl() {
  if [[ -n "${RERANKCTL:-}" ]]; then
    if [[ ! -x "$RERANKCTL" ]]; then
      echo "$(basename "$0"): RERANKCTL=$RERANKCTL is not an executable file" >&2
      return 1
    fi
    printf '%s\n' "$RERANKCTL"
    return 0
  fi
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [[ -x "$root/build/tools/rerankctl" ]]; then
    printf '%s\n' "$root/build/tools/rerankctl"
    return 0
  fi
  if command -v rerankctl >/dev/null 2>&1; then
    command -v rerankctl
    return 0
  fi
  echo "$(basename "$0"): rerankctl not found: run 'make build' (builds build/tools/rerankctl)," \
       "put rerankctl on PATH, or set RERANKCTL=/path/to/rerankctl" >&2
  return 1
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
