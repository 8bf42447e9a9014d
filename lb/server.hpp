// The balancer runtime: the worker threads, the current config snapshot,
// state shared by all workers (affinity table, takeover registry, connection
// limits, memory budget), metrics. Public methods are thread-safe unless noted.
//
// Workers live in fixed slots (at most kMaxWorkers): a session names its
// worker by slot, other threads find it there without locks, and a reload can
// add workers or retire some (a retired worker stops accepting, lets its
// sessions end or drain, then its slot is freed and may be reused).
//
// Files: server.cpp (core), server_reload.cpp (prepare/commit of a reload,
// reaping), server_admin.cpp (the admin API's operations).
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "conf/config.hpp"
#include "health/status.hpp"
#include "lb/admission.hpp"
#include "lb/affinity.hpp"
#include "lb/clock.hpp"
#include "lb/evacuation.hpp"
#include "lb/metrics.hpp"
#include "lb/registry.hpp"
#include "lb/runtime.hpp"
#include "lb/session.hpp"
#include "lb/store.hpp"
#include "net/budget.hpp"

namespace prometheus {
class Registry;
}

namespace lb {

class Worker;

// Default max_connections for a given open-files limit: two descriptors per
// session (also when joined in the kernel: the ends are watched on the sockets
// themselves, docs/forwarding.md), a reserve for listeners, metrics and
// health checks.
uint32_t default_max_connections(uint64_t nofile);

// conf "forwarding" (docs/forwarding.md): false (err set) when "kernel" is
// asked and the BPF programs do not load; logs once which path is in use.
bool forwarding_ok(conf::Forwarding f, std::string& err);

class Server final : public StoreSink {
 public:
  static constexpr size_t kMaxWorkers = 256;

  Server(const conf::Config& cfg, prometheus::Registry& registry);
  ~Server();

  // Binds every listener in every worker and starts the worker threads.
  // inherited (binary upgrade): listening sockets to adopt instead of
  // binding, by listener name, any number per listener.
  bool start(std::string& err, std::map<std::string, std::vector<int>> inherited = {});
  void stop_accepting();  // SIGTERM step 1: close listeners
  // Binary upgrade: the new generation accepts on the same sockets; this one
  // stops accepting, but connections it already has are placed as usual.
  void hand_over();
  bool handing_over() const { return handing_over_.load(); }
  void close_all_sessions();  // SIGTERM step 2 (after the grace period)
  void join();                // waits for every worker thread to end

  // A reload in two steps. prepare() does everything that can fail — binds
  // the sockets of new or re-bound listeners (and of new workers), builds
  // TLS contexts, checks new metrics/admin binds — and keeps nothing on
  // failure (errors in --check format). commit() then applies it all: a new
  // snapshot for new connections (backends, balance, limits, TLS), listeners
  // added, removed (their sessions go on up to limits.drain_timeout_ms) or
  // re-bound, workers added or retired, removed backends evacuated.
  // Established sessions of kept listeners and backends are never touched.
  struct Prepared {
    conf::Config cfg;
    // A socket bound for one listener on one worker: `slot` is an accepting
    // worker's slot, or -(k + 1) for the k-th worker this reload adds.
    struct Sock {
      conf::Listener listener;
      int slot;
      int fd;
    };
    std::vector<Sock> socks;
    std::vector<std::string> remove_listeners;  // by name: removed, or re-bound
    std::vector<int> retire;                    // slots of workers to retire
    int new_workers = 0;
    std::vector<std::string> removed_backends;
    ~Prepared();  // closes the sockets commit() did not take
  };
  std::unique_ptr<Prepared> prepare(const conf::Config& cfg, std::vector<std::string>& errors);
  void commit(std::unique_ptr<Prepared> p);
  // Main thread, every second: frees retired workers and closed listeners
  // that are done, removes the metric series of removed backends nobody uses.
  void reap();

  std::shared_ptr<const Snapshot> snapshot() const;
  // The config as the file gave it (no operator overrides).
  conf::Config file_config() const;

  // Every backend of the current snapshot with its shared health Status (for
  // the health monitor and for tests).
  std::vector<RuntimeBackend> backends() const;

  // Health on_down "shutdown-sessions": the workers close the client sessions
  // currently forwarded to `backend_name`, spread evenly over spread_ms.
  void shutdown_backend_sessions(const std::string& backend_name, uint32_t spread_ms);

  int64_t active_connections() const { return active_.load(std::memory_order_relaxed); }

  // --- used by workers/sessions ---
  Metrics& metrics() { return metrics_; }
  AffinityTable& affinity() { return affinity_; }
  ClientRegistry& registry() { return registry_; }
  net::MemoryBudget& budget() { return budget_; }
  Admission& admission() { return admission_; }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  // Workers that accept connections now (rates and connect slots are shared
  // out over them).
  size_t worker_count() const { return n_active_.load(std::memory_order_relaxed); }
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

  // --- the admin API (lb/control.*) ---
  // Operator overrides of a backend's admin state and weight. They survive a
  // reload unless the file sets that key itself (docs/admin-api.md "Which
  // wins"); backends() and new snapshots apply them. False: no such backend.
  bool set_admin_override(const std::string& backend, conf::BackendAdmin a);
  bool set_weight_override(const std::string& backend, uint32_t weight);
  // Starts ev on every worker (ev->workers_left is set here); replaces a
  // finished one of the same backend. False: one is running for that backend.
  bool start_evacuation(std::shared_ptr<Evacuation> ev);
  bool cancel_evacuation(const std::string& backend);
  std::shared_ptr<Evacuation> evacuation(const std::string& backend) const;
  // Sessions on a backend over all workers (also one a reload removed, until
  // reaped); 0 when unknown. Workers share an evacuation's rate by it.
  int64_t backend_active(const std::string& backend) const;
  std::vector<std::shared_ptr<Evacuation>> evacuations() const;
  // A placed client's details, from its worker (waits up to timeout_ms).
  std::optional<Session::Info> client_info(const ClientKey& key, uint32_t timeout_ms = 2000);
  bool kick_client(const ClientKey& key, uint32_t timeout_ms = 2000);
  // True when every worker loop answered within timeout_ms (GET /healthz).
  bool workers_alive(uint32_t timeout_ms = 1000);
  bool started() const { return started_.load(); }
  // Every listening socket, by listener name (binary upgrade hands them over).
  std::map<std::string, std::vector<int>> listening_fds();

  // --- scale-out (lb/server_scale.cpp, docs/scale-out.md) ---
  // The shared affinity store, or null. Set before start() and cleared only
  // after the workers are joined (they call placed() on it).
  void set_store(AffinityStore* s) { store_.store(s, std::memory_order_release); }
  AffinityStore* store() const { return store_.load(std::memory_order_acquire); }
  bool apply_remote(const ClientKey& key, uint64_t backend, bool live) override;  // any thread
  // DNS discovery. set_discovered (any thread): the backends a source resolves
  // to now; they replace its previous set at the next apply_discovered().
  // retain_discovered (any thread): sources not in `keep` lose their backends
  // (a reload removed their discovery entry).
  void set_discovered(const std::string& source, std::vector<conf::Backend> backends);
  void retain_discovered(const std::vector<std::string>& keep);
  // Main thread (reap() calls it every second; main.cpp once before start):
  // pending discovery results become a new snapshot (file backends win a name
  // clash; reloads keep discovered ones); a backend that left is drained like
  // one a reload removed; then on_backends_changed runs (health checks).
  // Returns true when the snapshot changed.
  bool apply_discovered();
  void on_backends_changed(std::function<void()> fn) { backends_changed_ = std::move(fn); }

 private:
  // A new snapshot for new connections (backends, balance, limits, TLS);
  // commit() calls it first.
  void swap(const conf::Config& cfg);
  // snap_mu_ held. keep_listener_tls: reuse the current listener contexts
  // (a discovery change rebuilds backends only).
  std::shared_ptr<Snapshot> build(const conf::Config& cfg, bool keep_listener_tls = false);
  void build_listener_tls(const conf::Config& cfg, Snapshot& s);  // snap_mu_ held
  Worker* worker(int slot) const;                                 // null when the slot is free
  std::vector<Worker*> all_workers() const;
  template <typename Fn>
  void each_worker(Fn fn) const {
    for (Worker* w : all_workers()) fn(*w);
  }

  Metrics metrics_;
  AffinityTable affinity_;
  ClientRegistry registry_;
  net::MemoryBudget budget_;
  Admission admission_;

  // Worker slots. slots_ is read by any thread; owned_/active_ only by the
  // main thread (construction, start, commit, reap, destruction).
  std::array<std::atomic<Worker*>, kMaxWorkers> slots_{};
  std::array<std::unique_ptr<Worker>, kMaxWorkers> owned_;
  std::vector<int> active_slots_;  // accepting workers, in slot order
  std::vector<int> retiring_;      // retired, still draining
  std::atomic<size_t> n_active_{0};
  std::vector<conf::Listener> listeners_;  // bound now (main thread)
  std::string tls_error_;                  // a TLS listener context failed at construction

  mutable std::mutex snap_mu_;
  std::shared_ptr<const Snapshot> snap_;
  std::map<std::string, std::shared_ptr<BackendState>> states_;  // by name, guarded by snap_mu_
  conf::Config cfg_;  // the config the current snapshot was built from (snap_mu_)
  uint64_t generation_ = 0;
  // Admin overrides by backend name, guarded by snap_mu_.
  std::map<std::string, conf::BackendAdmin> admin_override_;
  std::map<std::string, uint32_t> weight_override_;

  std::atomic<int64_t> active_{0};
  std::atomic<uint32_t> max_conn_{0};
  std::atomic<uint32_t> max_per_ip_{0};
  std::mutex ip_mu_;
  std::unordered_map<std::string, uint32_t> per_ip_;

  mutable std::mutex evac_mu_;
  std::map<std::string, std::shared_ptr<Evacuation>> evacuations_;  // by backend ("" = all)

  // Scale-out: the store (set_store) and discovered backends by source
  // (guarded by snap_mu_; merged into every snapshot by build()).
  std::atomic<AffinityStore*> store_{nullptr};
  std::map<std::string, std::vector<conf::Backend>> discovered_;
  std::mutex disc_mu_;  // guards pending_ (written by the discovery thread)
  std::map<std::string, std::optional<std::vector<conf::Backend>>> pending_;  // nullopt: drop
  std::function<void()> backends_changed_;                                    // main thread
  void evacuate_removed(const std::string& backend, const conf::Config& cfg);

  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> handing_over_{false};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace lb
