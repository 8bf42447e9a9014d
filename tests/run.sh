#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian 12, as root),
# builds, and runs the whole suite twice: a Release build, then an
# AddressSanitizer + UndefinedBehaviorSanitizer build. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
# shellcheck disable=SC2086
mqttlb_install_deps $MQTTLB_BUILD_DEPS $MQTTLB_TEST_DEPS

JOBS=$(nproc)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run_suite() {  # $1 build dir, rest: cmake args
  local dir=$1; shift
  echo "=== configure + build: $dir ($*)"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS"
  echo "=== tests: $dir"
  (cd "$dir" && ctest --output-on-failure -j2 --timeout 900)
}

run_suite build -DCMAKE_BUILD_TYPE=Release
if [ "${MQTTLB_SKIP_SANITIZE:-0}" != "1" ]; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTTLB_SANITIZE=ON
fi
echo "=== all tests passed"
