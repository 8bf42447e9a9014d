// health::Monitor: the one place that checks every backend. Owns one thread
// running a libuv loop with one Checker per backend, the rise/fall state
// machines, and the health metrics. Publishes each backend's state into its
// shared health::Status, which the balancer's workers read lock-free.
//
// Thread safety: the constructor, start(), stop(), set_admin_state() and the
// destructor may be called from any thread (not concurrently with the
// destructor). The transition callback runs on the health thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conf/config.hpp"
#include "health/state_machine.hpp"
#include "health/status.hpp"

namespace prometheus {
class Registry;
}

namespace health {

struct MonitoredBackend {
  conf::Backend backend;           // name, address, proxy_protocol, tls
  std::shared_ptr<Status> status;  // written only by the Monitor
};

// Called on the health thread after a backend's Status has changed.
using TransitionFn = std::function<void(const std::string& backend, State from, State to,
                                        const std::string& reason)>;
// One log line, no trailing newline. Default: written to stderr.
using LogFn = std::function<void(const std::string& line)>;

class Monitor {
 public:
  Monitor(std::vector<MonitoredBackend> backends, const conf::Health& hc,
          prometheus::Registry& registry, TransitionFn on_transition = {}, LogFn log = {});
  ~Monitor();  // stop()
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Starts the health thread; every backend's first check runs at once.
  // Returns false (with err) if the loop or thread cannot be set up.
  bool start(std::string& err);
  // Blocks until every backend given to the constructor has its first check
  // verdict, or `max_ms` passed. Returns true if all verdicts are in. mqttlb
  // calls this before it starts listening, so it never answers "no backend"
  // just because the first checks had not finished.
  bool wait_first_round(uint32_t max_ms);
  // Stops checking, closes every connection, joins the thread. Idempotent.
  // Statuses keep their last state.
  void stop();

  // Operator command for one backend; applied asynchronously on the health
  // thread. Returns false if no backend has that name.
  bool set_admin_state(const std::string& backend, Admin a);

  // Config reload: the new backend list and health settings, applied
  // asynchronously. A backend whose name, address, PROXY/TLS settings and
  // Status object are unchanged keeps its state, streaks and admin state
  // (its checker is restarted only if check settings changed); a new or
  // changed one starts Down with an immediate check; a removed one stops.
  void update(std::vector<MonitoredBackend> backends, const conf::Health& hc);

  // Random per-process id embedded in every check client id, so two balancers
  // never take over each other's check sessions.
  const std::string& instance_id() const { return instance_id_; }
  // The check client id used for a backend ("" if unknown).
  std::string client_id(const std::string& backend) const;

  struct Impl;  // loop-thread state; see monitor.cpp

 private:
  // Runs fn on the health thread: through the mailbox once started; before
  // start() kept in early_ and run first, right after the config's own state
  // is applied; dropped after stop().
  void post(std::function<void()> fn);

  std::unique_ptr<Impl> impl_;
  std::string instance_id_;
  std::thread thread_;
  std::mutex mu_;  // guards started_/stopped_/early_
  bool started_ = false;
  bool stopped_ = false;
  std::vector<std::function<void()>> early_;
};

}  // namespace health
