// The shared, thread-safe view of one backend's health. Written only by the
// health checker (one place per backend, not per worker); read by every worker's
// balancer on each pick. Lives as long as the backend exists in any config
// snapshot (held by shared_ptr from the runtime backend object).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace health {

enum class State : uint8_t {
  Down = 0,   // failing checks (the initial state: first check runs at once)
  Up = 1,     // passing; receives new connections
  Drain = 2,  // admin: no new connections, existing ones stay, checks continue
  Maint = 3,  // admin: out of rotation, checks stopped
};

const char* to_string(State s);

struct Status {
  std::atomic<State> state{State::Down};
  // Steady-clock milliseconds when the backend last went Up; drives slowstart.
  std::atomic<int64_t> up_since_ms{0};
  std::atomic<uint32_t> slowstart_ms{0};

  bool accepts_new() const { return state.load(std::memory_order_relaxed) == State::Up; }

  // The last check's verdict, for the admin API (written by the monitor).
  struct LastCheck {
    bool valid = false;  // no check has finished yet
    bool pass = false;
    std::string reason;   // "" when passed; else the failure kind and detail
    double seconds = 0;   // check latency
    int64_t wall_ms = 0;  // when it finished (ms since the epoch)
  };
  void record(LastCheck c) {
    std::lock_guard<std::mutex> g(check_mu_);
    last_ = std::move(c);
  }
  LastCheck last_check() const {
    std::lock_guard<std::mutex> g(check_mu_);
    return last_;
  }

  // Effective weight factor in (0, 1]: ramps linearly from 1/slowstart to 1 over
  // slowstart_ms after the backend went Up; 1 when slowstart is off.
  double weight_factor(int64_t now_ms) const {
    uint32_t ss = slowstart_ms.load(std::memory_order_relaxed);
    if (ss == 0) return 1.0;
    int64_t since = now_ms - up_since_ms.load(std::memory_order_relaxed);
    if (since >= static_cast<int64_t>(ss)) return 1.0;
    double f = since <= 0 ? 0.0 : static_cast<double>(since) / ss;
    return f < 0.01 ? 0.01 : f;
  }

 private:
  mutable std::mutex check_mu_;
  LastCheck last_;
};

}  // namespace health
