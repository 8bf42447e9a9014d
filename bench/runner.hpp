// The load generator's engine: one libuv loop, many MQTT client connections.
//
// Ownership: Runner owns every Client (unique_ptr in `clients_`, never moved
// or freed before the loop has closed all handles). A Client's uv_tcp_t is
// initialised only when it starts connecting, so clients not yet launched hold
// no file descriptor. Runner is single-threaded: all callbacks run on its loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/histogram.hpp"
#include "bench/options.hpp"
#include "net/transport.hpp"

namespace tls {
class Context;
class Session;
}  // namespace tls

namespace bench {

class Client;

// Everything the report needs; filled by the Runner and its clients.
struct Stats {
  uint64_t planned = 0;  // connections to open
  uint64_t attempted = 0;
  uint64_t connected = 0;                    // CONNACK accepted
  uint64_t failed = 0;                       // connections that failed before or after CONNACK
  uint64_t lost = 0;                         // established connections closed by the peer mid-run
  std::map<std::string, uint64_t> failures;  // reason -> count
  Histogram tcp_connect;                     // connect() start -> TCP established (ns)
  Histogram handshake;                       // connect() start -> CONNACK (ns): includes TLS
  Histogram connack;                         // CONNECT written -> CONNACK (ns)
  uint64_t t_connect_first = 0, t_connect_last = 0;  // hrtime of first start / last CONNACK

  uint64_t sent = 0;           // PUBLISH written
  uint64_t acked = 0;          // PUBACK / PUBCOMP received
  uint64_t received = 0;       // PUBLISH received by subscribers (all copies)
  uint64_t unique = 0;         // of which first copies (by publisher sequence)
  uint64_t duplicates = 0;     // copies with a sequence already seen
  uint64_t gaps = 0;           // sequence numbers skipped (sub mode: loss estimate)
  uint64_t expected = 0;       // pubsub: copies the subscriptions promise
  uint64_t foreign = 0;        // received payloads too short to carry our header
  uint64_t unacked = 0;        // QoS > 0 PUBLISH still unacknowledged when the run ended
  uint64_t window_resets = 0;  // closed loop: windows reopened after a stall (QoS 0 loss)
  uint64_t behind = 0;         // open loop: sends that were late (window or socket full)
  Histogram latency;           // end-to-end PUBLISH latency (ns)
  Histogram ack_latency;       // PUBLISH -> PUBACK/PUBCOMP (ns)
  uint64_t t_run_start = 0, t_run_end = 0;  // publishing window
  uint64_t t_first_recv = 0, t_last_recv = 0;
  uint64_t tls_resumed = 0;
};

class Runner {
 public:
  explicit Runner(const Options& o);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Runs to completion. Returns the process exit status (see usage()).
  int run();
  const Stats& stats() const { return st_; }
  const std::string& error() const { return error_; }
  double elapsed_s() const;

  // ---- called by clients ----
  uv_loop_t* loop() { return &loop_; }
  net::Slab* slab() { return slab_.get(); }  // every client's reads land here
  const Options& opts() const { return o_; }
  Stats& st() { return st_; }
  uint64_t now() const { return uv_hrtime(); }
  const sockaddr* target() const { return reinterpret_cast<const sockaddr*>(&target_); }
  const sockaddr* source_for(uint32_t n) const;
  void on_connected(Client& c);
  void on_ready(Client& c);  // connected (and subscribed, for subscribers)
  // A client failed. `during_connect`: before CONNACK. `lost`: an established
  // connection closed by the peer or the network.
  void on_failure(Client& c, const std::string& reason, bool lost);
  void on_closed(Client& c);
  void on_delivered(uint32_t publisher, uint64_t sent_at);
  void schedule(Client& c);  // flush (and for publishers, refill) at the end of this loop turn
  bool publishing() const { return phase_ == Phase::Running; }
  bool closing() const { return phase_ >= Phase::Closing; }
  Client* publisher(uint32_t index);
  uint64_t stall_ns() const { return 2'000'000'000ull; }
  tls::Context* tls_ctx() { return tls_ctx_.get(); }
  tls::Session* tls_session() { return tls_session_.get(); }

 private:
  enum class Phase : uint8_t { Connecting, Running, Holding, Draining, Closing, Done };

  bool setup();
  void launch_more();
  void start_publishing();
  void stop_publishing();
  void begin_close(bool graceful);
  void tick();       // every second: progress, keep-alive, timeouts, stalls
  void rate_tick();  // open loop: send what is due
  uint32_t due_for(uint32_t publisher) const;  // open loop: messages due and not sent yet
  void check_drained();
  void check_settled();
  void progress_line();
  void finish_if_closed();

  static void on_check(uv_check_t* h);
  static void on_idle(uv_idle_t* h);
  static void on_tick(uv_timer_t* t);
  static void on_rate(uv_timer_t* t);
  static void on_launch(uv_timer_t* t);
  static void on_phase(uv_timer_t* t);
  static void on_signal(uv_signal_t* s, int sig);

  Options o_;
  Stats st_;
  uv_loop_t loop_{};
  uv_check_t check_{};
  uv_idle_t idle_{};  // active while publishers still have budget: keeps poll from blocking
  uv_timer_t tick_{}, rate_{}, launch_{}, phase_timer_{};
  uv_signal_t sigint_{}, sigterm_{};
  sockaddr_storage target_{};
  std::vector<sockaddr_storage> sources_;
  std::vector<std::unique_ptr<Client>> clients_;  // subscribers first, then publishers
  std::vector<Client*> publishers_;
  std::vector<Client*> dirty_;    // scheduled for a flush this loop turn
  std::vector<Client*> again_;    // scratch: publishers to run again next turn
  std::vector<uint32_t> fanout_;  // pubsub: subscribers per publisher
  std::unique_ptr<net::Slab> slab_;
  std::unique_ptr<tls::Context> tls_ctx_;
  std::unique_ptr<tls::Session> tls_session_;
  Phase phase_ = Phase::Connecting;
  uint32_t next_launch_ = 0;
  uint32_t pending_ = 0;       // connection attempts in progress
  uint32_t ready_ = 0;         // clients ready
  uint32_t failed_early_ = 0;  // clients that failed before becoming ready
  uint32_t live_ = 0;          // connected clients not yet closed
  uint32_t open_handles_ = 0;
  uint64_t t_start_ = 0;
  uint64_t t_phase_ = 0;        // start of the current phase
  uint64_t last_progress_ = 0;  // drain progress marker
  uint64_t last_received_ = 0;
  uint64_t last_acked_ = 0;
  uint64_t prev_sent_ = 0, prev_recv_ = 0;  // progress line deltas
  uint64_t launch_credit_base_ = 0;
  bool aborted_ = false;
  bool launching_ = false;  // launch_more() is on the stack
  bool loop_inited_ = false;
  bool interrupted_ = false;
  bool tty_ = false;
  std::string error_;
};

}  // namespace bench
