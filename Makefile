# rerankd: `make run` and `make test` are the whole quick start (see README.md).
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?=
# `make test` passes these to ctest, e.g. `make test CTEST_ARGS="-R tokenizer"`.
CTEST_ARGS ?=
# `make fuzz`: seconds per fuzz target (tests/fuzz/run_fuzz.sh also reads FUZZ_TARGETS).
FUZZ_SECONDS ?= 60
# ccache, when installed, makes rebuilds (and the sanitizer builds) cheap.
LAUNCHER := $(if $(shell command -v ccache 2>/dev/null),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache,)
# Sanitizer runs: every C++ and driver test except
#  - the pure-Python exporter test (no C++ in it);
#  - the container-file test (it checks that the release image's packages cover what a release
#    binary links; a sanitizer binary links its runtime and, without --as-needed, more);
#  - HttpServerTest.AcceptFailuresBackOffInsteadOfSpinning: it exhausts the descriptor limit on
#    purpose, and UBSan's vptr check and symbolizer need descriptors (a pipe) to work, so every
#    virtual call then reports a bogus "invalid vptr" that no suppression can match.
SAN_CTEST_ARGS ?= -E "^(export_model_test|deploy_containers_test|HttpServerTest.AcceptFailuresBackOffInsteadOfSpinning)$$"
SAN_ENV := UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0 \
  TSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/tsan.supp:halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0

.PHONY: all deps configure build demo-model run test test-asan test-tsan fuzz bench clean

all: build

deps:
	@bash deploy/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(LAUNCHER)

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The MiniLM-L6-shaped demo model (random weights) that the default config serves. Its export
# loads the fused ops library (build/server/fused_ops/librerank_fused_ops.so), hence `build`.
demo-model: build
	@BUILD=$(BUILD) bash deploy/make_demo_model.sh

# Builds, then runs rerankd in the foreground on the embedded default config (or CONFIG=path).
run: build demo-model
	@mkdir -p data
	OPENBLAS_NUM_THREADS=1 exec $(BUILD)/app/rerankd $(if $(CONFIG),--config $(CONFIG),)

test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900 -j 2 $(CTEST_ARGS)

# AddressSanitizer + UndefinedBehaviorSanitizer, and ThreadSanitizer: separate build trees.
test-asan: deps
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRERANK_SANITIZE=address $(LAUNCHER)
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && $(SAN_ENV) ctest --output-on-failure --timeout 1800 -j 2 $(SAN_CTEST_ARGS) $(CTEST_ARGS)

test-tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRERANK_SANITIZE=thread $(LAUNCHER)
	@cmake --build build-tsan -j $(JOBS)
	@cd build-tsan && $(SAN_ENV) ctest --output-on-failure --timeout 1800 -j 2 $(SAN_CTEST_ARGS) $(CTEST_ARGS)

# libFuzzer (clang, ASan + UBSan, build-fuzz/): every target in tests/fuzz/ for FUZZ_SECONDS each.
# `make test` runs a bounded deterministic version of each (the fuzz_*_replay tests).
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) bash tests/fuzz/run_fuzz.sh

bench: build demo-model
	@BUILD=$(BUILD) bash bench/run_bench.sh

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
