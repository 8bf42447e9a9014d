// Heap bytes per entry of the balancer's two per-session tables (issue 13:
// <= 1 KB of userspace memory per idle proxied session), measured with glibc's
// mallinfo2 (bytes in use: arena chunks + mmapped chunks, allocator headers
// included) around the table. Its own binary: mallinfo2 counts the whole
// process, so nothing else may allocate meanwhile. Meaningless under ASan (its
// own allocator): skipped there.
#include <doctest/doctest.h>
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "lb/affinity.hpp"
#include "lb/client_key.hpp"
#include "lb/registry.hpp"

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMeasurable = false;
#else
constexpr bool kMeasurable = true;
#endif

int64_t heap_in_use() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

constexpr size_t kEntries = 100'000;
constexpr size_t kFrom = 1'000;  // below, the fixed minimum array dominates

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

TEST_CASE("affinity: at most kEntryBytes of heap per entry at every size up to 100,000 entries") {
  if (!kMeasurable) return;
  const auto k = keys(kEntries);
  const int64_t base = heap_in_use();
  Worst worst;
  {
    lb::AffinityTable t(kEntries, 1ull << 40, 1'000'000'000);
    worst = fill(base, [&](size_t i) { t.put(k[i], 1, static_cast<int64_t>(i)); });
    REQUIRE(t.size() == kEntries);
    double full = static_cast<double>(heap_in_use() - base) / kEntries;
    for (size_t i = 0; i < kEntries; ++i) t.erase(k[i]);
    int64_t left = heap_in_use() - base;  // before doctest's messages allocate
    MESSAGE("affinity: worst " << worst.bytes << " B/entry (at " << worst.at << " entries), "
                               << full << " B/entry at capacity, " << left << " B once emptied");
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

TEST_CASE("registry: at most kEntryBytes of heap per entry at every size up to 100,000 entries") {
  if (!kMeasurable) return;
  const auto k = keys(kEntries);
  const int64_t base = heap_in_use();
  Worst worst;
  {
    lb::ClientRegistry r;
    worst = fill(base, [&](size_t i) { r.add(k[i], {static_cast<int>(i % 4), i + 1, 7}); });
    REQUIRE(r.size() == kEntries);
    for (size_t i = 0; i < kEntries; ++i) r.remove(k[i], i + 1);
    int64_t left = heap_in_use() - base;
    MESSAGE("registry: worst " << worst.bytes << " B/entry (at " << worst.at << " entries), "
                               << left << " B once emptied");
    CHECK(r.size() == 0);
    CHECK(left < 16384);
  }
  CHECK(worst.bytes <= static_cast<double>(lb::ClientRegistry::kEntryBytes));
}

}  // namespace
