#!/usr/bin/env bash
# Installs the Debian packages rerankd needs to build, run and test, only those that are missing.
# Safe to run repeatedly: it is a no-op (one dpkg-query) when everything is present.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git jq curl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libtorch-dev libopenblas0-pthread libtcmalloc-minimal4
  prometheus-cpp-dev libcivetweb-dev libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev libcurl4-openssl-dev
  libabsl-dev libicu-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  python3-torch python3-grpcio python3-grpc-tools python3-yaml python3-numpy
)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
