// The balancer's wall of time: a steady clock in milliseconds (affinity TTL,
// slowstart, log rate limits). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace lb {

inline int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace lb
