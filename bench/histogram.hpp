// A log-bucket latency histogram in the style of HdrHistogram: fixed memory
// (~30 KB), O(1) record, relative error of a reported percentile below 1/64
// (1.6 %) of the value. Values are unsigned integers (the bench records
// nanoseconds). Not thread-safe; the bench has one loop.
#pragma once

#include <array>
#include <cstdint>

namespace bench {

class Histogram {
 public:
  // 64 linear sub-buckets per power of two above 2^6; values below 128 exact.
  static constexpr int kSubBits = 7;
  static constexpr int kHalf = 1 << (kSubBits - 1);  // 64
  static constexpr int kBuckets = (64 - kSubBits + 1) * kHalf + kHalf;

  void record(uint64_t v) {
    counts_[index(v)]++;
    total_++;
    sum_ += v;
    if (v < min_) min_ = v;
    if (v > max_) max_ = v;
  }
  void merge(const Histogram& o);
  void reset();

  uint64_t count() const { return total_; }
  uint64_t min() const { return total_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const;
  // Value at percentile p in [0, 100]: the highest value equivalent to the
  // bucket holding the ceil(p% * count)-th smallest sample, clamped to
  // [min, max]. 0 when empty.
  uint64_t percentile(double p) const;

  static int index(uint64_t v);
  // Smallest and largest value mapped to bucket i.
  static uint64_t bucket_low(int i);
  static uint64_t bucket_high(int i);

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  long double sum_ = 0;  // exact mean
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace bench
