// The immutable runtime snapshot built from a validated Config, and the
// per-backend live state that outlives snapshots. A reload builds a new
// Snapshot and swaps the pointer (Server::swap); sessions keep the
// shared_ptr<BackendState> they were placed with, so live sessions are never
// touched by a swap.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "health/status.hpp"
#include "lb/balancer.hpp"
#include "lb/gate.hpp"
#include "lb/metrics.hpp"
#include "lb/routes.hpp"
#include "tls/context.hpp"
#include "tls/engine.hpp"

namespace lb {

// Live state of one backend, kept by name across snapshot swaps.
struct BackendState {
  explicit BackendState(std::string n) : name(std::move(n)), name_hash(hash64(name)) {}
  const std::string name;
  const uint64_t name_hash;  // the backend's identity in the affinity and session tables
  // Written by the health monitor (or marked Up at start without one).
  std::shared_ptr<health::Status> status = std::make_shared<health::Status>();
  // Sessions placed on this backend (connecting or forwarding), all workers.
  std::atomic<int64_t> active{0};
  BackendMetrics metrics;  // resolved once, in the main thread
  std::unique_ptr<ConnackCounters> connacks;
  // The connect gate: one lane per worker, each used only by its worker's loop.
  std::vector<std::unique_ptr<GateLane>> lanes;
  // Backend TLS: the latest resumable session, offered by the next connection
  // (any worker) so reconnect storms cost abbreviated handshakes. A session
  // from a context a reload replaced is harmless (a full handshake follows).
  std::mutex tls_mu;
  tls::Session tls_session;  // guarded by tls_mu
};

struct RuntimeBackend {
  conf::Backend cfg;
  std::shared_ptr<BackendState> state;
  // cfg.tls set: the client context for lb -> backend TLS, built with this
  // snapshot (null if building it failed: connects then fail and are logged).
  std::shared_ptr<tls::Context> tls_ctx;
};

struct Snapshot {
  conf::Config cfg;
  std::vector<RuntimeBackend> backends;  // same order as cfg.backends
  std::unique_ptr<Balancer> balancer;    // thread-safe pick()
  uint64_t generation = 0;
  uint32_t max_connections = 0;  // resolved (cfg value or derived from RLIMIT_NOFILE)
  // Per TLS listener: its server context
  // for a plain listener. One per snapshot, shared read-only by all workers; a
  // reload builds new ones (inheriting the ticket keys) for new connections
  // while live engines keep a reference on the SSL_CTX they started with.
  std::map<std::string, std::shared_ptr<tls::Context>> listener_tls;  // by listener name
  RoutePlan routes;  // pools over `backends` (lb/routes.hpp)
};

}  // namespace lb
