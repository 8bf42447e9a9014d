// The immutable runtime snapshot built from a validated Config, and the
// per-backend live state that outlives snapshots. A reload builds a new
// Snapshot and swaps the pointer (Server::swap); sessions keep the
// shared_ptr<BackendState> they were placed with, so live sessions are never
// touched by a swap.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "health/status.hpp"
#include "lb/balancer.hpp"
#include "lb/metrics.hpp"

namespace lb {

// Live state of one backend, kept by name across snapshot swaps.
struct BackendState {
  explicit BackendState(std::string n) : name(std::move(n)) {}
  const std::string name;
  // Written by the health monitor (or marked Up at start without one).
  std::shared_ptr<health::Status> status = std::make_shared<health::Status>();
  // Sessions placed on this backend (connecting or forwarding), all workers.
  std::atomic<int64_t> active{0};
  BackendMetrics metrics;  // resolved once, in the main thread
};

struct RuntimeBackend {
  conf::Backend cfg;
  std::shared_ptr<BackendState> state;
};

struct Snapshot {
  conf::Config cfg;
  std::vector<RuntimeBackend> backends;  // same order as cfg.backends
  std::unique_ptr<Balancer> balancer;    // thread-safe pick()
  uint64_t generation = 0;
  uint32_t max_connections = 0;  // resolved (cfg value or derived from RLIMIT_NOFILE)
};

}  // namespace lb
