// Heap bytes per entry of the balancer's two per-session tables (issue 13:
// <= 1 KB of userspace memory per idle proxied session), measured with glibc's
// mallinfo2 (bytes in use: arena chunks + mmapped chunks, allocator headers
// included) around the table. Its own binary: mallinfo2 counts the whole
// process, so nothing else may allocate meanwhile. Meaningless under ASan and
// TSan (their own allocator): skipped there.
#include <doctest/doctest.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "lb/affinity.hpp"
#include "lb/client_key.hpp"
#include "lb/registry.hpp"

namespace {

// ASan and TSan bring their own allocator (mallinfo2 sees nothing of it) and
// reserve terabytes of shadow (no RLIMIT_AS under them): the Release build
// measures.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMeasurable = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kMeasurable = false;
#else
constexpr bool kMeasurable = true;
#endif
#else
constexpr bool kMeasurable = true;
#endif

int64_t heap_in_use() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

constexpr size_t kEntries = 100'000;
// Below, the fixed minimum arrays and glibc's tcache (freed small blocks still
// count as in use) weigh on the ratio.
constexpr size_t kFrom = 10'000;

std::vector<lb::ClientKey> keys(size_t n) {
  std::vector<lb::ClientKey> k;
  k.reserve(n);
  for (size_t i = 0; i < n; ++i) k.push_back(lb::client_key("mem" + std::to_string(i)));
  return k;
}

// Calls add(i) for i in [0, kEntries); the worst heap bytes per entry seen
// after each call from kFrom entries on, and where.
struct Worst {
  double bytes = 0;
  size_t at = 0;
};
template <class Add>
Worst fill(int64_t base, Add&& add) {
  Worst w;
  for (size_t i = 0; i < kEntries; ++i) {
    add(i);
    if (i + 1 < kFrom) continue;
    double per = static_cast<double>(heap_in_use() - base) / static_cast<double>(i + 1);
    if (per > w.bytes) w = {per, i + 1};
  }
  return w;
}

// Calls remove(i) for i in [0, kEntries) on a full table; the worst heap bytes
// per remaining entry while at least kFrom remain (the index shrinks only
// under 1/4 full, so a shrinking table holds more per entry than a growing one).
template <class Remove>
Worst drain(int64_t base, Remove&& remove) {
  Worst w;
  for (size_t i = 0; i < kEntries; ++i) {
    remove(i);
    size_t left = kEntries - i - 1;
    if (left < kFrom) continue;
    double per = static_cast<double>(heap_in_use() - base) / static_cast<double>(left);
    if (per > w.bytes) w = {per, left};
  }
  return w;
}
// Bytes an entry while a table shrinks: 40 B entries, up to 16 B of index (at
// 1/4 load), up to two chunks of slack; measured 57.2 B at worst (documented
// in lb/affinity.hpp).
constexpr double kShrinkingEntryBytes = 58;

TEST_CASE("mallinfo2 sees this process's heap (else every figure below would be 0)") {
  if (!kMeasurable) return;
  const int64_t before = heap_in_use();
  std::vector<char> block(1 << 20, 1);
  CHECK(heap_in_use() - before >= (1 << 20));
  CHECK(block[12345] == 1);  // the block is used: not elided
}

TEST_CASE("affinity: at most kEntryBytes of heap per entry at every size from 10,000 to 100,000 entries") {
  if (!kMeasurable) return;
  const auto k = keys(kEntries);
  const int64_t base = heap_in_use();
  Worst worst;
  {
    lb::AffinityTable t(kEntries, 1ull << 40, 1'000'000'000);
    worst = fill(base, [&](size_t i) { t.put(k[i], 1, static_cast<int64_t>(i)); });
    REQUIRE(t.size() == kEntries);
    double full = static_cast<double>(heap_in_use() - base) / kEntries;
    Worst going = drain(base, [&](size_t i) { t.erase(k[i]); });
    int64_t left = heap_in_use() - base;  // before doctest's messages allocate
    MESSAGE("affinity: worst " << worst.bytes << " B/entry (at " << worst.at << " entries), "
                               << full << " B/entry at capacity, worst " << going.bytes
                               << " B/entry (at " << going.at << ") while erasing, " << left
                               << " B once emptied");
    CHECK(going.bytes <= kShrinkingEntryBytes);
    CHECK(full <= 46);    // at capacity: 40 B entries, 5 B of index, chunk directory
    CHECK(left < 16384);  // emptied: 4.5 MB given back (glibc's tcache keeps a few small blocks)
  }
  CHECK(worst.bytes <= static_cast<double>(lb::AffinityTable::kEntryBytes));
}

TEST_CASE("affinity: max_bytes bounds the table's heap whatever is put") {
  if (!kMeasurable) return;
  const auto k = keys(kEntries);
  const uint64_t max_bytes = 2'000'000;
  const int64_t base = heap_in_use();
  lb::AffinityTable t(100'000'000, max_bytes, 1'000'000'000);
  int64_t peak = 0;
  for (size_t i = 0; i < kEntries; ++i) {
    t.put(k[i], 1, static_cast<int64_t>(i));
    peak = std::max(peak, heap_in_use() - base);
  }
  CHECK(t.size() == max_bytes / lb::AffinityTable::kEntryBytes);
  CHECK(peak <= static_cast<int64_t>(max_bytes));
}

TEST_CASE("registry: at most kEntryBytes of heap per entry at every size from 10,000 to 100,000 entries") {
  if (!kMeasurable) return;
  const auto k = keys(kEntries);
  const int64_t base = heap_in_use();
  Worst worst;
  {
    lb::ClientRegistry r;
    worst = fill(base, [&](size_t i) { r.add(k[i], {static_cast<int>(i % 4), i + 1, 7}); });
    REQUIRE(r.size() == kEntries);
    Worst going = drain(base, [&](size_t i) { r.remove(k[i], i + 1); });
    int64_t left = heap_in_use() - base;
    MESSAGE("registry: worst " << worst.bytes << " B/entry (at " << worst.at << " entries), worst "
                               << going.bytes << " B/entry (at " << going.at << ") while removing, "
                               << left << " B once emptied");
    CHECK(going.bytes <= kShrinkingEntryBytes);
    CHECK(r.size() == 0);
    CHECK(left < 16384);
  }
  CHECK(worst.bytes <= static_cast<double>(lb::ClientRegistry::kEntryBytes));
}

// Out of memory (RLIMIT_AS a little above what the process maps): neither
// table throws nor loses its consistency. The affinity table keeps taking
// puts by dropping its least recently used entries; the registry stops
// recording new sessions and keeps those it has. Returns 0, or which
// expectation failed. Runs in a forked child (the limit is for the process).
int out_of_memory_child() {
  size_t vm_pages = 0;
  std::ifstream("/proc/self/statm") >> vm_pages;
  const rlim_t limit = vm_pages * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (8u << 20);
  rlimit rl{limit, limit};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return 1;
  const size_t kPuts = 600'000;  // ~30 MB if all were kept
  auto key = [](size_t i) { return lb::ClientKey{i + 1, (i + 1) * 0x9E3779B97F4A7C15ull}; };
  size_t kept = 0;
  {
    lb::AffinityTable t(100'000'000, 1ull << 40, INT64_MAX / 4);
    for (size_t i = 0; i < kPuts; ++i) {
      t.put(key(i), i, static_cast<int64_t>(i));
      if (t.get(key(i), static_cast<int64_t>(i)) != std::optional<uint64_t>(i))
        return 2;  // the newest is there
    }
    kept = t.size();
    if (kept == 0 || kept >= kPuts) return 3;        // bounded by memory, not emptied
    if (t.get(key(0), kPuts)) return 4;              // the least recently used went first
    if (!t.get(key(kPuts - kept), kPuts)) return 5;  // the most recent `kept` stayed
    t.erase(key(kPuts - 1));
    if (t.size() != kept - 1) return 6;
  }
  lb::ClientRegistry r;
  for (size_t i = 0; i < kPuts; ++i) r.add(key(i), {0, i + 1, 1});
  size_t n = r.size();
  if (n == 0 || n >= kPuts) return 7;
  if (!r.find(key(0)) || r.find(key(0))->session != 1) return 8;  // recorded ones stay
  if (r.find(key(kPuts - 1))) return 9;  // added without memory: not recorded
  r.remove(key(0), 1);
  if (r.size() != n - 1) return 10;
  return 0;
}

TEST_CASE("affinity and registry: out of memory, no exception and no corruption") {
  if (!kMeasurable) return;  // the sanitizers reserve terabytes of shadow: no RLIMIT_AS under them
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(out_of_memory_child());
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));  // not killed by an uncaught bad_alloc
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace
