// The balancer runtime: N workers, the current config snapshot, state shared by
// all workers (affinity table, takeover registry, connection limits), metrics.
// Public methods are thread-safe unless noted.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "conf/config.hpp"
#include "health/status.hpp"
#include "lb/affinity.hpp"
#include "lb/clock.hpp"
#include "lb/metrics.hpp"
#include "lb/registry.hpp"
#include "lb/runtime.hpp"
#include "net/budget.hpp"

namespace prometheus {
class Registry;
}

namespace lb {

class Worker;

// Default max_connections for a given open-files limit: two descriptors per
// session, a reserve for listeners, metrics and health checks.
uint32_t default_max_connections(uint64_t nofile);

class Server {
 public:
  Server(const conf::Config& cfg, prometheus::Registry& registry);
  ~Server();

  // Binds every listener in every worker and starts the worker threads.
  bool start(std::string& err);
  void stop_accepting();      // SIGTERM step 1: close listeners
  void close_all_sessions();  // SIGTERM step 2 (after the grace period)
  void join();                // waits for every worker thread to end

  // Validated config -> new snapshot, swapped in for new connections. Backends
  // keep their Status and counters by name. Listeners and workers are not
  // changed by a swap (logged by the caller).
  void swap(const conf::Config& cfg);
  std::shared_ptr<const Snapshot> snapshot() const;

  // Every backend of the current snapshot with its shared health Status (for
  // the health monitor and for tests).
  std::vector<RuntimeBackend> backends() const;

  // Health on_down "shutdown-sessions": the workers close the client sessions
  // currently forwarded to `backend_name`, spread evenly over spread_ms.
  void shutdown_backend_sessions(const std::string& backend_name, uint32_t spread_ms);

  int64_t active_connections() const { return active_.load(std::memory_order_relaxed); }
  // True when `cfg` differs from the running process in what a swap cannot
  // change (listeners, worker count): a restart is needed for those.
  bool needs_restart(const conf::Config& cfg) const;

  // --- used by workers/sessions ---
  Metrics& metrics() { return metrics_; }
  AffinityTable& affinity() { return affinity_; }
  ClientRegistry& registry() { return registry_; }
  net::MemoryBudget& budget() { return budget_; }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  size_t worker_count() const { return n_workers_; }
  // Admission at accept: the global connection count (max_connections), then
  // the source address's (max_connections_per_ip). Each true return is
  // matched by exactly one release (the session's destructor).
  bool admit_global();
  void release_global();
  bool admit_ip(const std::string& ip);
  void release_ip(const std::string& ip);
  // Asks the session's worker to close it (takeover).
  void close_session(const SessionRef& ref, CloseReason why);
  uint64_t next_session_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  // Refreshes the gauges of shared state (budget, tables); main thread, every second.
  void update_gauges();

 private:
  std::shared_ptr<Snapshot> build(const conf::Config& cfg);
  void build_listener_tls(const conf::Config& cfg, Snapshot& s);  // snap_mu_ held or not started

  Metrics metrics_;
  size_t n_workers_;
  AffinityTable affinity_;
  ClientRegistry registry_;
  net::MemoryBudget budget_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<conf::Listener> listeners_;  // bound at start; not reloadable yet
  uint32_t workers_cfg_ = 0;               // `workers` as configured at start
  std::string tls_error_;                  // a TLS listener context failed at construction

  mutable std::mutex snap_mu_;
  std::shared_ptr<const Snapshot> snap_;
  std::map<std::string, std::shared_ptr<BackendState>> states_;  // by name, guarded by snap_mu_
  uint64_t generation_ = 0;

  std::atomic<int64_t> active_{0};
  std::atomic<uint32_t> max_conn_{0};
  std::atomic<uint32_t> max_per_ip_{0};
  std::mutex ip_mu_;
  std::unordered_map<std::string, uint32_t> per_ip_;

  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace lb
