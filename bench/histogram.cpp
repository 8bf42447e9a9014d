#include "bench/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace bench {

// Bucket layout: v < 2^kSubBits maps to itself. Otherwise with e = floor(log2 v),
// shift = e - (kSubBits - 1), the mantissa v >> shift lies in [kHalf, 2*kHalf)
// and the index is shift * kHalf + mantissa: contiguous with the linear part.
int Histogram::index(uint64_t v) {
  if (v < (uint64_t{1} << kSubBits)) return static_cast<int>(v);
  int e = 63 - __builtin_clzll(v);
  int shift = e - (kSubBits - 1);
  return shift * kHalf + static_cast<int>(v >> shift);
}

uint64_t Histogram::bucket_low(int i) {
  if (i < (1 << kSubBits)) return static_cast<uint64_t>(i);
  int shift = i / kHalf - 1;
  uint64_t mant = static_cast<uint64_t>(i - shift * kHalf);
  return mant << shift;
}

uint64_t Histogram::bucket_high(int i) {
  if (i < (1 << kSubBits)) return static_cast<uint64_t>(i);
  int shift = i / kHalf - 1;
  uint64_t low = bucket_low(i);
  uint64_t width = uint64_t{1} << shift;
  // The very last bucket would overflow: clamp.
  return low > UINT64_MAX - (width - 1) ? UINT64_MAX : low + (width - 1);
}

void Histogram::merge(const Histogram& o) {
  for (int i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
  total_ += o.total_;
  sum_ += o.sum_;
  if (o.total_) {
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
}

void Histogram::reset() {
  *this = Histogram();
}

double Histogram::mean() const {
  return total_ ? static_cast<double>(sum_ / total_) : 0;
}

uint64_t Histogram::percentile(double p) const {
  if (!total_) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // The epsilon keeps 99.9% of 1000 at rank 999 despite 0.999 * 1000 > 999 in binary.
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_) - 1e-9));
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; i++) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(bucket_high(i), min_, max_);
  }
  return max_;
}

}  // namespace bench
