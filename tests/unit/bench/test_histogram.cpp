// The bench's latency histogram: percentiles a user reads off the report must
// be within the documented 1/64 relative error of the exact order statistic.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "bench/histogram.hpp"

using bench::Histogram;

namespace {
uint64_t exact(std::vector<uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::max<size_t>(rank, 1) - 1];
}
void check_close(uint64_t got, uint64_t want) {
  double tol = std::max(1.0, static_cast<double>(want) / 64.0);
  CHECK(std::fabs(static_cast<double>(got) - static_cast<double>(want)) <= tol);
}
}  // namespace

TEST_CASE("empty histogram reports zeros") {
  Histogram h;
  CHECK(h.count() == 0);
  CHECK(h.percentile(50) == 0);
  CHECK(h.max() == 0);
  CHECK(h.min() == 0);
  CHECK(h.mean() == 0);
}

TEST_CASE("small values are exact") {
  Histogram h;
  for (uint64_t v = 0; v < 100; v++) h.record(v);
  CHECK(h.percentile(50) == 49);
  CHECK(h.percentile(1) == 0);
  CHECK(h.percentile(100) == 99);
  CHECK(h.min() == 0);
  CHECK(h.max() == 99);
  CHECK(h.mean() == doctest::Approx(49.5));
}

TEST_CASE("bucket layout is contiguous and monotonic") {
  for (int i = 1; i < Histogram::kBuckets; i++) {
    CHECK(Histogram::bucket_low(i) == Histogram::bucket_high(i - 1) + 1);
  }
  for (uint64_t v : std::vector<uint64_t>{0, 1, 127, 128, 129, 1000, 123456789,
                                          (uint64_t{1} << 40) + 7, UINT64_MAX}) {
    int i = Histogram::index(v);
    REQUIRE(i >= 0);
    REQUIRE(i < Histogram::kBuckets);
    CHECK(Histogram::bucket_low(i) <= v);
    CHECK(v <= Histogram::bucket_high(i));
  }
}

TEST_CASE("percentiles of a log-uniform latency sample within 1/64") {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> d(std::log(1e3), std::log(5e9));  // 1 us .. 5 s in ns
  std::vector<uint64_t> v;
  Histogram h;
  for (int i = 0; i < 200000; i++) {
    auto x = static_cast<uint64_t>(std::exp(d(rng)));
    v.push_back(x);
    h.record(x);
  }
  CHECK(h.count() == v.size());
  for (double p : {50.0, 90.0, 99.0, 99.9, 99.99}) check_close(h.percentile(p), exact(v, p));
  CHECK(h.max() == *std::max_element(v.begin(), v.end()));
  CHECK(h.percentile(100) == h.max());
}

TEST_CASE("a single outlier shows at max and p99.9 only when it is that rare") {
  Histogram h;
  for (int i = 0; i < 999; i++) h.record(1'000'000);  // 1 ms
  h.record(250'000'000);                              // 250 ms
  check_close(h.percentile(99), 1'000'000);
  check_close(h.percentile(99.9), 1'000'000);
  CHECK(h.percentile(99.95) == 250'000'000);
  CHECK(h.max() == 250'000'000);
}

TEST_CASE("merge equals recording everything in one") {
  Histogram a, b, all;
  for (uint64_t i = 1; i <= 5000; i++) {
    (i % 2 ? a : b).record(i * 997);
    all.record(i * 997);
  }
  a.merge(b);
  CHECK(a.count() == all.count());
  for (double p : {10.0, 50.0, 99.0}) CHECK(a.percentile(p) == all.percentile(p));
  CHECK(a.min() == all.min());
  CHECK(a.max() == all.max());
  CHECK(a.mean() == doctest::Approx(all.mean()));
}
