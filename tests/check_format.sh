#!/usr/bin/env bash
# Fails (listing the files) when a C++ source of the project is not clang-format clean
# (.clang-format: Google style, 100 columns). Fix with: clang-format -i FILE
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format not installed (deploy/install_deps.sh)"; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h' | grep -v '^third_party/')
else
  mapfile -t files < <(find . -path ./third_party -prune -o -path './build*' -prune -o \
                         \( -name '*.cc' -o -name '*.h' \) -print | sed 's|^\./||')
fi
[ ${#files[@]} -gt 0 ] || { echo "no C++ sources found"; exit 1; }
bad=()
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "not clang-format clean (${#bad[@]} of ${#files[@]} files): ${bad[*]}"
  exit 1
fi
echo "clang-format clean: ${#files[@]} files"
