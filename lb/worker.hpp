// One worker thread: its own libuv loop, its own SO_REUSEPORT listening socket
// per listener (lb/listener.hpp), its own session table and read slab. Other
// threads talk to it only through post() (net::Mailbox).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "conf/config.hpp"
#include "lb/admission.hpp"
#include "lb/evacuation.hpp"
#include "lb/listener.hpp"
#include "lb/session.hpp"
#include "lb/timer_heap.hpp"
#include "net/fd_transport.hpp"
#include "net/mailbox.hpp"
#include "net/transport.hpp"

namespace lb {

class Server;

class Worker {
 public:
  Worker(Server& s, int index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds one SO_REUSEPORT socket per listener on this worker's loop. Called
  // from the main thread before start(); returns false with `err` set.
  bool listen(const std::vector<conf::Listener>& listeners, std::string& err);
  // Fails when another process already listens on a listener's address:
  // SO_REUSEPORT would otherwise let two instances silently share the port.
  static bool check_free(const std::vector<conf::Listener>& listeners, std::string& err);
  // Polls an already bound listening socket (a reload's, or one inherited in
  // a binary upgrade). Main thread before start(), else the worker thread.
  void adopt_listener(const conf::Listener& l, int fd);
  void start();  // spawns the thread running the loop
  void join();
  // True once the loop has ended (a retired worker can then be joined).
  bool finished() const { return finished_.load(); }
  // The listening sockets of this worker, by listener name (asked from
  // another thread; waits up to timeout_ms).
  std::vector<std::pair<std::string, int>> listening_fds(uint32_t timeout_ms);

  // Runs fn on the worker thread. Thread-safe; dropped once the worker stopped.
  void post(std::function<void(Worker&)> fn);

  // --- worker thread only ---
  void stop_accepting();
  void stop();  // close everything; the loop then ends
  // A reload removed (or re-bound) this listener: it stops accepting now; its
  // sessions go on, then are ended (DISCONNECT 0x8B) after drain_ms.
  void remove_listener(const std::string& name, uint32_t drain_ms);
  // A reload retired this worker: it stops accepting; once its sessions ended
  // (or drain_ms passed) it stops, and the main thread reaps it.
  void retire(uint32_t drain_ms);
  void session_gone(Listener* l);  // a session accepted on l ended (Session's destructor)
  void close_session(uint64_t id, CloseReason why);
  void shutdown_backend(const std::string& backend, uint32_t spread_ms);
  // Ends this worker's sessions on ev->backend (all placed sessions when it is
  // empty) at its share of ev->rate_per_s, with jitter, each with a DISCONNECT
  // (Session::end); what is left at the deadline, at once.
  void evacuate(std::shared_ptr<Evacuation> ev);
  // The admin API: a placed session's details / close it (5.0: DISCONNECT 0x98).
  std::optional<Session::Info> session_info(uint64_t id) const;
  bool kick(uint64_t id);
  void destroy(uint64_t id);  // from Session, after its last handle closed

  Server& server() { return server_; }
  uv_loop_t* loop() { return &loop_; }
  net::Slab* slab() { return slab_.get(); }
  // Where its sessions' sockets are watched (net/fd_transport.hpp); null if
  // the epoll set could not be made (they then use libuv TCP handles).
  net::PollSet* polls() { return polls_ok_ ? &polls_ : nullptr; }
  TimerHeap& timers() { return timers_; }
  // A session freed its setup (placed) or ended: heap churn (trim_timer_cb).
  void note_churn() { ++churn_; }
  // The metrics every pump of this worker counts in (one copy, not one per session).
  const Pump::Counters& pump_counters();
  int index() const { return index_; }
  bool accepting() const { return accepting_; }

  static constexpr int kListenBacklog = 4096;

 private:
  void on_accept(Listener& l, int fd, const sockaddr_storage& peer);
  void run_loop();  // until every handle closed: the PollSet's run(), or uv_run without one
  uint32_t pace_tls();  // limits.tls_handshake_rate, for this worker's TLS listeners
  void add(std::unique_ptr<Listener> l);
  static void drain_timer_cb(uv_timer_t* t);
  static void trim_timer_cb(uv_timer_t* t);
  static constexpr uint64_t kTrimTickMs = 250;
  void run_drain();

  Server& server_;
  const int index_;
  uv_loop_t loop_;
  net::Mailbox mailbox_;
  uv_timer_t drain_timer_;
  uv_timer_t trim_timer_;  // free heap back to the kernel after a burst (trim_timer_cb)
  uint64_t churn_ = 0, churn_last_tick_ = 0, churn_trimmed_ = 0;
  TimerHeap timers_;                             // every session's stage timer (lb/timer_heap.hpp)
  std::optional<Pump::Counters> pump_counters_;  // built at the first placement
  std::unique_ptr<net::Slab> slab_;
  net::PollSet polls_;  // closed in stop(), once its transports' on_closed went out
  bool polls_ok_ = false;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::thread thread_;
  bool accepting_ = true;
  bool stopping_ = false;
  bool retiring_ = false;
  TokenBucket tls_bucket_;
  uint32_t tls_rate_ = 0;
  std::atomic<bool> finished_{false};
  void free_closed_listeners();

  // shutdown_backend() and evacuate(): sessions to end, each at its due time
  // (loop ms), sorted. ev null: health on_down "shutdown-sessions".
  struct Due {
    uint64_t due_ms;
    uint64_t session;  // 0: the deadline sweep of `ev`
    std::shared_ptr<Evacuation> ev;
    bool operator<(const Due& o) const { return due_ms < o.due_ms; }
  };
  std::deque<Due> drain_;
  void schedule(std::deque<Due> add);
  void fire(const Due& d);
  void sweep_soon(const std::shared_ptr<Evacuation>& ev);
};

}  // namespace lb
