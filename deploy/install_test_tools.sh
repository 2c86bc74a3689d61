#!/usr/bin/env bash
# Installs the Debian packages the deployment tests need (and nothing else), only those missing:
#   prometheus (prometheus, promtool)           the live dashboard test and `promtool test rules`
#   prometheus-alertmanager (amtool)            checks deploy/alertmanager/alertmanager.yml
#   docker-compose (1.29, Python)               `docker-compose config` validates docker-compose.yml
#                                               without a Docker engine
#   golang-go (1.19) + sprig + yaml.v3 + gojsonschema
#                                               tests/helm_render: Helm's template engine
#                                               (text/template + Sprig) renders helm/rerankd offline
# Called by the tests' CMake fragment at configure time and by `make test` (through
# deploy/install_deps.sh); safe to run repeatedly (a no-op, one dpkg-query, when all are present).
# Services are not started: the tests run their own Prometheus on loopback.
set -euo pipefail
PKGS=(
  prometheus prometheus-alertmanager docker-compose
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  golang-github-xeipuuv-gojsonschema-dev
)
source "$(dirname "$0")/apt_install_lib.sh"
apt_install_missing install_test_tools "${PKGS[@]}"
