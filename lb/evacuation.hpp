// One evacuation: move every session off a backend at a rate, then close what
// is left at a deadline (admin API, a backend removed by a reload, a binary
// upgrade). Shared by the workers that carry it out (each moves its own
// sessions at its share of the rate) and the admin API that shows it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace lb {

struct Evacuation {
  std::string backend;      // empty: every backend (binary upgrade)
  std::string listener;     // set: only sessions accepted on this listener (removed by a reload)
  double rate_per_s = 100;  // 0: none before the deadline, then all at once
  uint64_t deadline_ms = 120'000;  // from the start
  uint8_t reason = 0x9C;  // 5.0 DISCONNECT reason: 0x9C use another server, 0x8B shutting down
  std::string server_reference;  // 5.0 Server Reference property, when set
  int64_t started_wall_ms = 0;
  std::atomic<uint64_t> total{0};    // sessions found on the backend (all workers)
  std::atomic<uint64_t> moved{0};    // ended (or gone by themselves)
  std::atomic<int> workers_left{0};  // workers still holding scheduled sessions
  std::atomic<bool> cancelled{false};
  bool done() const { return workers_left.load() == 0; }
};

}  // namespace lb
