# rerankd: `make run` and `make test` are the whole quick start (see README.md).
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?=
# `make test` passes these to ctest, e.g. `make test CTEST_ARGS="-R tokenizer"`.
CTEST_ARGS ?=

.PHONY: all deps configure build demo-model run test bench clean

all: build

deps:
	@bash deploy/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The MiniLM-L6-shaped demo model (random weights) that the default config serves.
demo-model: deps
	@bash deploy/make_demo_model.sh

# Builds, then runs rerankd in the foreground on the embedded default config (or CONFIG=path).
run: build demo-model
	@mkdir -p data
	OPENBLAS_NUM_THREADS=1 exec $(BUILD)/server/rerankd $(if $(CONFIG),--config $(CONFIG),)

test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900 -j 2 $(CTEST_ARGS)

bench: build demo-model
	@bash bench/run_bench.sh

clean:
	rm -rf $(BUILD)
