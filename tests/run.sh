#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian 12, as root),
# builds, and runs the whole suite three times: a Release build, an
# AddressSanitizer + UndefinedBehaviorSanitizer build and a ThreadSanitizer
# build (every fuzz corpus is replayed in each). Exits non-zero on any
# failure. MQTTLB_SKIP_SANITIZE / _TSAN=1 skip a pass; MQTTLB_FUZZ_SMOKE=1
# adds a short libFuzzer run of every target (off by default: its clang build
# would take CI past its 45 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
# shellcheck disable=SC2086
mqttlb_install_deps $MQTTLB_BUILD_DEPS $MQTTLB_TEST_DEPS
mqttlb_install_npm

JOBS=$(nproc)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run_suite() {  # $1 build dir, then cmake args, then optionally -- and ctest args
  local dir=$1; shift
  local cm=() ct=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cm+=("$1"); shift; done
  [ "${1:-}" = "--" ] && shift && ct=("$@")
  echo "=== configure + build: $dir (${cm[*]})"
  cmake -S . -B "$dir" "${cm[@]}" >/dev/null
  cmake --build "$dir" -j"$JOBS"
  echo "=== tests: $dir"
  (cd "$dir" && ctest --output-on-failure -j2 --timeout 900 "${ct[@]}")
}

run_suite build -DCMAKE_BUILD_TYPE=Release
# The sanitizer builds keep -O2 but only line-table debug info (-g1): stack
# traces still name file and line, and the builds take a third less time (CI
# has 45 minutes on 2 cores for all of this).
SAN_FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
           "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG")
if [ "${MQTTLB_SKIP_SANITIZE:-0}" != "1" ]; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan "${SAN_FLAGS[@]}" -DMQTTLB_SANITIZE=ON
fi
if [ "${MQTTLB_SKIP_TSAN:-0}" != "1" ]; then
  # Worker threads, the health thread, the store and discovery threads and
  # reloads, under ThreadSanitizer: every test that runs mqttlb. Left out, as
  # single-threaded code TSan has nothing to find in (and CI's 45 minutes):
  # the reference broker's own tests, the corpus replays, the importer's
  # translation tests, the benchmark comparison (it measures) and the lint.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run_suite build-tsan "${SAN_FLAGS[@]}" -DMQTTLB_TSAN=ON -- \
    -E '^(it_test_bench_compare|it_test_broker_.*|fuzz_replay_.*|it_test_import_haproxy|lint_.*)$'
fi
if [ "${MQTTLB_FUZZ_SMOKE:-0}" = "1" ]; then
  # The fuzzers must keep building, and a short run from the committed corpus
  # catches a regression the replay tests might not (docs/fuzzing.md).
  echo "=== fuzz smoke run (clang + libFuzzer, ${MQTTLB_FUZZ_SECONDS:-10} s per target)"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMQTTLB_FUZZ=ON -DMQTTLB_TESTS=ON >/dev/null
  targets="connect frame proxy config tls_transport haproxy_tokenizer haproxy_acl peer rewrite store admin_route ws_http ws_frame ws_connect records splice_scan"
  # shellcheck disable=SC2086
  cmake --build build-fuzz -j"$JOBS" --target $(for t in $targets; do printf 'fuzz_%s ' "$t"; done)
  root=$(pwd)
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  for t in $targets; do
    mkdir -p "$scratch/$t"
    extra=()
    [ "$t" = connect ] && extra=(-dict="$root/tests/fuzz/connect.dict")
    [ "$t" = rewrite ] && extra=(-dict="$root/tests/fuzz/connect.dict")
    [ "$t" = ws_connect ] && extra=(-dict="$root/tests/fuzz/connect.dict")
    [ "$t" = ws_http ] && extra=(-dict="$root/tests/fuzz/ws_http.dict")
    [ "$t" = haproxy_tokenizer ] && extra=(-dict="$root/tests/fuzz/haproxy.dict")
    [ "$t" = haproxy_acl ] && extra=(-dict="$root/tests/fuzz/haproxy_acl.dict")
    # OpenSSL keeps per-thread error-queue buffers for reuse: libFuzzer's
    # in-run leak check reports them. Leaks are still checked at exit by the
    # ASan replay test (docs/fuzzing.md).
    [ "$t" = tls_transport ] && extra=(-detect_leaks=0)
    # A crash fails this script and leaves its reproducer in build-fuzz/ (see docs/fuzzing.md).
    (cd "$scratch" && "$root/build-fuzz/fuzz/fuzz_$t" -max_total_time="${MQTTLB_FUZZ_SECONDS:-10}" \
      -max_len=4096 -print_final_stats=1 -artifact_prefix="$root/build-fuzz/" "${extra[@]}" "$scratch/$t" "$root/tests/fuzz/corpus/$t" \
      2>&1 | grep -E "^stat::number_of_executed_units|ERROR|SUMMARY")
  done
fi
echo "=== all tests passed"
