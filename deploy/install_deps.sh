#!/usr/bin/env bash
# Installs the Debian packages rerankd needs to build, run and test, only those that are missing.
# Safe to run repeatedly: it is a no-op (one dpkg-query) when everything is present.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git jq curl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libtorch-dev libopenblas0-pthread libtcmalloc-minimal4
  prometheus-cpp-dev libboost1.81-dev libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev libcurl4-openssl-dev
  libabsl-dev libicu-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  clang libclang-rt-dev llvm libomp-dev  # make fuzz: libFuzzer + sanitizer runtimes, llvm-symbolizer, OpenMP for the fused ops
  python3-torch python3-grpcio python3-grpc-tools python3-yaml python3-numpy
  nodejs
)
# npm for the real-client HTTP tests (tests/npm_clients). Debian ships it as its own package;
# NodeSource's nodejs bundles it (and conflicts with Debian's npm), so only when it is missing.
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
source "$(dirname "$0")/apt_install_lib.sh"
apt_install_missing install_deps "${PKGS[@]}"
