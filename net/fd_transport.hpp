// A plain-TCP Transport without a libuv stream handle: the socket is watched
// by its loop's PollSet, one epoll set per loop, so a connection costs the 56
// bytes of this object instead of a 248-byte uv_tcp_t plus its transport (the
// balancer's sessions hold two).
//
// The PollSet also drives the loop (run(), instead of uv_run): it waits on its
// own set, in which libuv's epoll set is nested, and runs libuv's phases only
// when libuv has something to do (its set is readable, a timer is due, a
// callback or close is pending). A turn that only moves bytes costs one
// epoll_wait, as with libuv alone. (Nesting the other way round, the set
// polled through a uv_poll_t, cost two: libuv's and the set's.)
// The balancer uses it for every client and broker socket; the health checker
// and the load generator keep net::TcpTransport.
//
// Same contract as every Transport (net/transport.hpp): no read event after
// stop_read(); EOF after every byte; write() sends what the kernel takes at
// once and queues a copy of the rest (charged to the budget); on_drained when
// pending() falls to kLowWater. Like libuv, it never calls its sink from inside
// a call the sink made: on_connect, on_shutdown and on_closed are delivered
// from the loop (the PollSet delivers them after each batch of events and
// after libuv's callbacks), so close() returns before on_closed, which comes
// exactly once and last.
//
// The epoll set is level-triggered and only holds what the transport waits
// for: EPOLLIN while reading, EPOLLOUT while connecting or while bytes are
// queued, EPOLLRDHUP alone while a stopped reader watches for the peer's end
// (watch_hangup: a socket joined in the kernel); a socket waiting for nothing
// is not in the set (epoll always reports errors and hang-ups, which would
// otherwise spin).
//
// Ownership: the PollSet is a member of its worker, outlives every transport
// on it, and is closed once they were all closed (close() waits for the
// pending on_closed calls). Loop thread only.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "net/transport.hpp"

namespace net {

class FdTransport;

class PollSet {
 public:
  PollSet() = default;
  PollSet(const PollSet&) = delete;
  PollSet& operator=(const PollSet&) = delete;
  ~PollSet();
  // Once, on the loop thread or before the loop runs. False (errno set) when
  // no epoll set could be made; FdTransport then cannot be used on this loop,
  // which runs with uv_run as usual. budget (optional) is charged with the
  // bytes its transports queue.
  bool init(uv_loop_t* loop, Slab* slab, MemoryBudget* budget = nullptr);
  // Runs the loop until it has nothing left, as uv_run(UV_RUN_DEFAULT) would
  // (nothing left: every handle closed, close() included).
  void run();
  // One turn: waits for events (at most max_wait_ms; -1: until libuv's next
  // timer or forever), dispatches them, runs libuv's phases if they are due
  // and delivers the deferred callbacks. False once the loop has nothing left.
  bool turn(int max_wait_ms);
  // Closes its loop handle once every transport's on_closed went out; run()
  // returns when the loop's other handles are closed too.
  void close();
  uv_loop_t* loop() const { return loop_; }
  Slab* slab() const { return slab_; }
  // Events dispatched since init (tests: a socket that waits for nothing is
  // never reported, whatever happens to it).
  uint64_t dispatched() const { return dispatched_; }
  // Turns that ran libuv's phases (tests: not the turns that only move bytes).
  uint64_t uv_runs() const { return uv_runs_; }

 private:
  friend class FdTransport;
  void defer(FdTransport* t);
  void deliver_deferred();
  void maybe_close_handles();

  uv_loop_t* loop_ = nullptr;
  Slab* slab_ = nullptr;
  MemoryBudget* budget_ = nullptr;
  int epfd_ = -1;
  uv_async_t alive_{};  // never sent: an active handle, so the loop lives until close()
  std::vector<FdTransport*> deferred_;  // each at most once (FdTransport::deferred_)
  uint64_t dispatched_ = 0;
  uint64_t uv_runs_ = 0;
  bool closing_ = false;
  bool handles_closed_ = false;
};

class FdTransport final : public Transport {
 public:
  FdTransport(PollSet& set, TransportSink* sink);
  ~FdTransport() override;
  FdTransport(const FdTransport&) = delete;
  FdTransport& operator=(const FdTransport&) = delete;

  // Adopts an accepted, connected socket (made non-blocking). 0 or a uv error;
  // on an error the descriptor is not adopted (the caller closes it).
  int open(int fd);
  // A non-blocking connect; 0 (on_connect follows) or a uv error (nothing
  // follows; close() the transport). Writes before on_connect are queued.
  int connect(const sockaddr* addr);
  // TCP_NODELAY, now or when connect() creates the socket.
  void set_nodelay(bool on);
  int fd() const { return fd_; }  // -1 before open/connect and once closed

  void set_sink(TransportSink* sink) override { sink_ = sink; }
  void start_read() override;
  void stop_read() override;
  int write(const uint8_t* data, size_t len) override;
  size_t pending() const override { return pending_; }
  void shutdown() override;
  void close(bool reset) override;
  bool closing() const override { return closing_; }
  int native_fd() const override { return closing_ ? -1 : fd_; }
  bool watch_hangup(bool on) override;

  static constexpr size_t kLowWater = TcpTransport::kLowWater;

 private:
  friend class PollSet;
  struct Chunk;
  enum Deferred : uint8_t { kConnect = 1, kShutdown = 2, kClosed = 4 };

  void on_events(uint32_t ev);
  void on_deferred();
  void read_once();
  void flush();
  void fail_write(int err);  // drops the queue; on_error
  void drop_queue();
  void do_shutdown();
  void watch();  // brings the epoll registration in line with what we wait for
  void defer(uint8_t what);

  enum Watched : uint8_t { kIn = 1, kOut = 2, kRdHup = 4 };
  Chunk* head() const;  // the oldest queued chunk, or null

  // 56 bytes: an idle session holds two of these.
  PollSet& set_;
  TransportSink* sink_;
  Chunk* tail_ = nullptr;  // queued bytes: a ring, tail_->next is the oldest
  size_t pending_ = 0;
  int fd_ = -1;
  int16_t connect_status_ = 0;  // a uv error (or 0) delivered with kConnect
  uint8_t watched_ = 0;         // Watched bits registered in the epoll set (0: not in it)
  uint8_t deferred_ = 0;        // Deferred bits waiting for the loop
  bool reading_ : 1 = false;
  bool connecting_ : 1 = false;
  bool shut_ : 1 = false;          // shutdown() asked
  bool shut_pending_ : 1 = false;  // ... and waits for the queue to drain
  bool closing_ : 1 = false;
  bool nodelay_ : 1 = false;
  bool write_failed_ : 1 = false;
  bool hangup_ : 1 = false;  // watch_hangup(true), not reported yet
};

}  // namespace net
