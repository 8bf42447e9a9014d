// A process-wide memory budget for the bytes connections hold on the data path
// (CONNECT buffers while peeking, queued writes). Charging never fails: bytes a
// session already owns must be kept (dropping them would lose data); the
// budget is consulted where refusing is safe — admitting a new connection,
// growing a peek buffer — so a flood makes mqttlb refuse, not grow.
//
// Thread-safe (one relaxed atomic); shared by every worker.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace net {

class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t limit = 0) : limit_(limit) {}
  void set_limit(uint64_t limit) { limit_.store(limit, std::memory_order_relaxed); }
  uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }

  void charge(size_t n) { used_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed); }
  void release(size_t n) { used_.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed); }
  int64_t used() const { return used_.load(std::memory_order_relaxed); }
  // True when `more` bytes would still fit (limit 0 = unlimited).
  bool has_room(size_t more = 0) const {
    uint64_t l = limit();
    return l == 0 || used() + static_cast<int64_t>(more) <= static_cast<int64_t>(l);
  }

 private:
  std::atomic<uint64_t> limit_;
  std::atomic<int64_t> used_{0};
};

}  // namespace net
