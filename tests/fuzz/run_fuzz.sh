#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang, ASan and UBSan in
# their own build tree, then runs each for FUZZ_SECONDS, one after another. Exits non-zero on the
# first target that finds something (crash, sanitizer report, failed FUZZ_CHECK, leak, timeout);
# the input is saved under <build>/fuzz-artifacts/ (replay: <build>/tests/fuzz_<target> <file>).
#
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_TARGETS (default all), FUZZ_BUILD
# (default build-fuzz), FUZZ_RSS_LIMIT_MB (default 2048), JOBS (build parallelism).
# Each target fuzzes a working corpus in <build>/fuzz-corpus/<target> (kept between runs, so a
# later run starts where the last one stopped) seeded from tests/fuzz/corpus/<target> (read
# only; add regression inputs there by hand). Per-target logs and a summary table (executions,
# exec/s, libFuzzer's cov and ft, corpus size) go to <build>/fuzz-logs/.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${FUZZ_SECONDS:-60}"
build="${FUZZ_BUILD:-build-fuzz}"
read -r -a targets <<<"${FUZZ_TARGETS:-tokenizer rerank_request config flags http}"
rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}"
# Inputs longer than the limits the targets' code paths care about only slow the fuzzer down.
declare -A max_len=([tokenizer]=4096 [rerank_request]=4096 [config]=16384 [flags]=4096
                    [http]=8192)

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DRERANK_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"

mkdir -p "$build/fuzz-logs" "$build/fuzz-artifacts"
summary="$build/fuzz-logs/summary.txt"
printf '%-15s %8s %12s %8s %7s %7s %12s  %s\n' target seconds executions exec/s cov ft \
  corpus result | tee "$summary"
status=0
for t in "${targets[@]}"; do
  [[ -n "${max_len[$t]:-}" ]] || { echo "run_fuzz.sh: unknown target '$t'" >&2; exit 2; }
  corpus="$build/fuzz-corpus/$t"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$corpus"
  result=ok
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1 \
    "$build/tests/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" \
    -max_len="${max_len[$t]}" -timeout=60 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$t-" "$corpus" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || result=FAILED
  # The last status line: "#123 DONE cov: 456 ft: 789 corp: 12/3456b ..."
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  printf '%-15s %8s %12s %8s %7s %7s %12s  %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result" | tee -a "$summary"
  if [[ "$result" != ok ]]; then
    echo "--- fuzz_$t found a problem; the end of $log:" >&2
    tail -n 60 "$log" >&2
    status=1
    break
  fi
done
exit "$status"
