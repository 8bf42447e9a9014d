// One listening socket of one worker (SO_REUSEPORT: every worker has its own),
// accepting with accept4() on a uv_poll instead of uv_listen, so that running
// out of file descriptors pauses it instead of spinning: libuv's accept loop
// keeps a reserve descriptor for that case, which two threads sharing one
// process's descriptor table can lose, and then busy-loops. Here EMFILE,
// ENFILE, ENOBUFS and ENOMEM stop the poll for a back-off (50 ms doubling to
// 1 s while it persists), count mqttlb_accept_errors_total{error} and log one
// rate-limited line; the connections waiting in the kernel's backlog are
// accepted when descriptors are free again.
//
// Ownership: a heap object owned by its Worker; close() (idempotent) closes
// both handles and then the socket, in the last close callback.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "conf/config.hpp"
#include "lb/metrics.hpp"

namespace lb {

class Listener {
 public:
  // Called for every accepted connection (a non-blocking, close-on-exec socket).
  using AcceptFn = std::function<void(Listener& l, int fd, const sockaddr_storage& peer)>;
  // TLS listeners: may one more handshake start now? 0: yes; else wait this
  // many ms (limits.tls_handshake_rate: the connections wait in the backlog).
  using PaceFn = std::function<uint32_t()>;
  void set_pace(PaceFn fn) { pace_ = std::move(fn); }

  Listener(uv_loop_t* loop, std::string name, size_t index, bool tls, Metrics& m, AcceptFn fn);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // A listening socket: SO_REUSEADDR + SO_REUSEPORT + bind + listen
  // (non-blocking, close-on-exec). -1 with err set. Any thread. It counts in
  // held() from now on, not only once a worker adopted it (a reload hands it
  // to a worker's queue, and the next reload may move the address back
  // before that worker ran): a Listener's adopt() takes it over, else
  // close_socket() closes it.
  static int open_socket(const conf::Endpoint& bind, int backlog, std::string& err);
  static void close_socket(int fd, const conf::Endpoint& bind);
  // Counts a socket inherited from an older process (a binary upgrade) in
  // held(), as open_socket() does for ours, before adopt().
  static void hold(const conf::Endpoint& bind);
  // Polls `fd` (from open_socket, or inherited and hold()), bound to `bind`,
  // on this loop; the Listener owns it from now on. Loop thread (or before
  // it runs).
  void adopt(int fd, const conf::Endpoint& bind);
  // Whether a listening socket of this process is still open on `bind`: a
  // listener of the running config, or one a reload removed (or a retired
  // worker's) whose worker has not closed it yet. A reload binding there
  // joins our own SO_REUSEPORT group rather than meeting a stranger. Any thread.
  static bool held(const conf::Endpoint& bind);
  // open_socket + adopt.
  bool open(const conf::Endpoint& bind, int backlog, std::string& err);
  void close();
  bool closed() const { return closing_; }
  int fd() const { return fd_; }
  // Sessions accepted here and still open: a closed listener is freed only
  // once they are gone (they refer to it).
  int sessions = 0;
  bool freeable() const { return closing_ && open_handles_ == 0 && sessions == 0; }

  const std::string& name() const { return name_; }
  size_t index() const { return index_; }  // in the Server's listener order
  bool tls() const { return tls_; }
  prometheus::Counter* accepted() const { return accepted_; }
  TlsListenerMetrics& tls_metrics() { return tls_metrics_; }

  static constexpr int kAcceptsPerWakeup = 128;  // fairness with the loop's other work

 private:
  static void poll_cb(uv_poll_t* p, int status, int events);
  static void pause_cb(uv_timer_t* t);
  static void close_cb(uv_handle_t* h);
  void close_fd();  // closes fd_ and leaves the held() registry
  void accept_some();
  void pause(int err);
  void wait(uint32_t ms);  // paced, not an error

  uv_loop_t* loop_;
  uv_poll_t poll_{};
  uv_timer_t pause_timer_{};
  int fd_ = -1;
  std::string bind_;  // held() registry key while fd_ is open
  int open_handles_ = 0;
  std::string name_;
  size_t index_;
  bool tls_;
  Metrics& metrics_;
  prometheus::Counter* accepted_;
  TlsListenerMetrics tls_metrics_;
  AcceptFn on_accept_;
  PaceFn pace_;
  uint32_t pause_ms_ = 0;
  bool polling_ = false;
  bool closing_ = false;
};

}  // namespace lb
