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
if [ "${MQTTLB_SKIP_FUZZ:-0}" != "1" ]; then
  # The fuzzers must keep building, and a short run from the committed corpus
  # catches a regression the replay tests might not (docs/fuzzing.md).
  echo "=== fuzz smoke run (clang + libFuzzer, ${MQTTLB_FUZZ_SECONDS:-30} s per target)"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMQTTLB_FUZZ=ON -DMQTTLB_TESTS=ON >/dev/null
  cmake --build build-fuzz -j"$JOBS" --target fuzz_connect fuzz_frame fuzz_peer
  root=$(pwd)
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  for t in connect frame peer; do
    mkdir -p "$scratch/$t"
    extra=()
    [ "$t" = connect ] && extra=(-dict="$root/tests/fuzz/connect.dict")
    # A crash fails this script and leaves its reproducer in build-fuzz/ (see docs/fuzzing.md).
    (cd "$scratch" && "$root/build-fuzz/fuzz/fuzz_$t" -max_total_time="${MQTTLB_FUZZ_SECONDS:-30}" \
      -max_len=4096 -print_final_stats=1 -artifact_prefix="$root/build-fuzz/" "${extra[@]}" "$scratch/$t" "$root/tests/fuzz/corpus/$t" \
      2>&1 | grep -E "^stat::number_of_executed_units|ERROR|SUMMARY")
  done
fi
echo "=== all tests passed"
