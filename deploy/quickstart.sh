#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and starts a local
# cluster (reference brokers behind mqttlb). Filled in as the balancer lands.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
# shellcheck disable=SC2086
mqttlb_install_deps $MQTTLB_BUILD_DEPS $MQTTLB_RUN_DEPS
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "not yet: the local cluster needs the broker and the balancer (issues 4 and 5)"
