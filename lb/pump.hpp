// The pump stage: both directions of a placed session, byte for byte.
//
// Backpressure: reading a side stops when the other side's write queue passes
// kHighWater and resumes when it drains to the transport's low-water mark, so
// a slow reader never makes mqttlb buffer more than about kHighWater per
// direction. Half-close propagates after the queued bytes (EOF on one side ->
// shutdown of the other); the session ends when both directions ended, on a
// reset (propagated as a reset), or after the idle timeout (1.5 x keep-alive +
// grace, measured from the last byte either way).
//
// The broker->client stream is scanned for packet boundaries (a few bytes of
// state), so a packet can be injected there (5.0 DISCONNECT) later; during 5.0
// enhanced authentication it is also watched for the CONNACK.
//
// Thread: the session's worker loop. Owns no transport: the session does; the
// pump only uses the two it was given and reports its end through PumpHost.
#pragma once

#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "lb/kernel_splice.hpp"
#include "lb/outcome.hpp"
#include "lb/stage.hpp"
#include "mqtt/frame.hpp"
#include "net/transport.hpp"

namespace prometheus {
class Counter;
class Gauge;
}  // namespace prometheus

namespace lb {

class PumpHost : public StageTimer {
 public:
  // The session is over: close both sides (reset: RST instead of FIN). The
  // pump's last action.
  virtual void pump_done(CloseReason why, bool reset) = 0;
  // Enhanced authentication ended with this CONNACK (watch_connack only).
  virtual void connack_seen(uint8_t code) = 0;
};

// Finds the first CONNACK in a byte stream and its return/reason code, across
// any segmentation, with a few bytes of state. Pure.
class ConnackWatch {
 public:
  // Returns the code once the CONNACK's code byte has been fed; nullopt before
  // (and after: it reports once). Malformed input: never reports.
  std::optional<uint8_t> feed(const uint8_t* data, size_t len);

 private:
  enum class St : uint8_t { Type, Length, Body, Done };
  St st_ = St::Type;
  uint8_t first_ = 0;
  uint32_t len_ = 0, mult_ = 1, pos_ = 0;
  uint8_t len_bytes_ = 0;
};

class Pump {
 public:
  static constexpr size_t kHighWater = 64 * 1024;
  struct Counters {
    prometheus::Counter* c2b = nullptr;
    prometheus::Counter* b2c = nullptr;
    // mqttlb_sessions_forwarding{path} and mqttlb_kernel_fallbacks_total{reason}
    prometheus::Gauge* on_userspace = nullptr;
    prometheus::Gauge* on_kernel = nullptr;
    prometheus::Counter* joins = nullptr;
    std::array<prometheus::Counter*, static_cast<size_t>(SpliceFallback::Count)> fallbacks{};
    // MQTT packets the kernel forwarded, by direction (mqttlb_kernel_packets_total)
    prometheus::Counter* packets_c2b = nullptr;
    prometheus::Counter* packets_b2c = nullptr;
    prometheus::Counter* overreads = nullptr;  // mqttlb_kernel_overreads_total
  };

  // `counters` outlives the pump (one per worker).
  Pump(PumpHost& host, net::Transport* client, net::Transport* backend, const Counters& counters,
       uint64_t idle_ms, bool watch_connack);
  Pump(PumpHost&, net::Transport*, net::Transport*, Counters&&, uint64_t, bool) = delete;
  ~Pump();
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;

  // Before start(): join the two sockets in the kernel once the pump is idle
  // (lb/pump_kernel.cpp, docs/forwarding.md). Unset: userspace only.
  void use_kernel(SpliceEngine* engine) {
    k_ = std::make_unique<KernelPath>();
    k_->engine = engine;
  }
  bool in_kernel() const { return kstate() == KState::Joined; }
  // Counted once per session that asked for the kernel path and does not get it.
  void count_fallback(SpliceFallback why);

  void start();  // reads both sides, arms the idle timer
  void on_read(net::Transport* t, const uint8_t* data, size_t len);
  void on_eof(net::Transport* t);
  void on_error(net::Transport* t, int err);
  void on_drained(net::Transport* t);
  void on_hangup() { kernel_event(); }  // a joined stream ended (watch_ends)
  void on_shutdown(net::Transport* t);
  void on_timer();

  // Ends the session at packet boundaries: `to_client` goes to the client at
  // the next broker->client packet boundary, `to_backend` to the broker at the
  // next client->broker boundary (either may be empty: then that side is just
  // half-closed there). Bytes after a boundary are dropped, both sides are
  // half-closed, and pump_done(why) follows once both FINs went out — or
  // after kFinishMs whatever the peers do (a slow or mid-packet peer).
  void finish_with(std::vector<uint8_t> to_client, std::vector<uint8_t> to_backend,
                   CloseReason why);
  static constexpr uint64_t kFinishMs = 2000;

  bool b2c_at_boundary() const { return b2c_.at_boundary(); }
  bool finishing() const { return finishing_; }
  net::Transport* client() const { return client_; }
  net::Transport* backend() const { return backend_; }

 private:
  void forward(net::Transport* from, net::Transport* to, const uint8_t* data, size_t len);
  void maybe_finish();
  // finish_with: the direction into `to` ends here (inject, then half-close).
  void end_direction(net::Transport* to);
  void on_read_finishing(net::Transport* t, const uint8_t* data, size_t len);

  // In-kernel forwarding (lb/pump_kernel.cpp). Joined: the kernel forwards and
  // every pump event (bytes the verdict left to userspace, EOF, finish_with)
  // starts a take-back; TakingBack: both sockets pass to userspace, the events
  // are held until the kernel's backlog reached the peers (drained), then
  // replayed in order; Back: userspace for good.
  enum class KState : uint8_t { Off, Joined, TakingBack, Back };
  void maybe_join();
  // While joined the pump does not read (each redirected skb would wake the
  // loop for nothing): each transport watches its own socket for the peer's
  // FIN, a reset or an error only (Transport::watch_hangup: EPOLLRDHUP in the
  // worker's epoll set, no second descriptor), and the sync timer looks for
  // skbs the verdict left to userspace. Undone at the take-back. A transport
  // that cannot watch so (a worker without an epoll set) keeps reading.
  void watch_ends();
  void unwatch_ends();
  void kernel_event();
  void take_back(SpliceFallback why);
  void kernel_timer();
  void finish_take_back();
  void sync_kernel(bool final);
  // An EOF on t is the stream's end (KernelSplice::received); else the pump
  // reads t itself until it is (poll_eof_wait).
  bool overread(net::Transport* t);  // true: the session ended
  bool eof_is_final(net::Transport* t);
  void poll_eof_wait();
  static constexpr uint64_t kSyncMs = 1000;  // counters and idle check while joined
  static constexpr uint64_t kDrainPollMs = 1;

  // Everything of the kernel path, allocated only for a session that may take
  // it (use_kernel): a userspace session does not pay for it (idle memory,
  // docs/benchmarks.md).
  struct KernelPath {
    SpliceEngine* engine = nullptr;
    bool ends_watched = false;  // watch_ends() stopped the reading of both
    std::unique_ptr<KernelSplice> kernel;
    KState kstate = KState::Off;
    uint64_t k_c2b = 0, k_b2c = 0, k_pk_c2b = 0, k_pk_b2c = 0;  // already accounted
    uint64_t k_pkm_c2b = 0, k_pkm_b2c = 0;                      // packets in the metric
    std::vector<uint8_t> held_client, held_backend;             // read during a take-back
    bool held_client_eof = false, held_backend_eof = false;
    uint64_t us_read_c = 0, us_read_b = 0;  // read by the pump since the join
    bool replaying = false;                 // finish_take_back() re-delivers held bytes
    bool eof_wait_c = false, eof_wait_b = false;
    bool held_finish = false;  // finish_with() asked while joined: its arguments
    std::vector<uint8_t> held_to_client, held_to_backend;
    CloseReason held_why = CloseReason::Error;
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // false once destroyed
  };
  std::unique_ptr<KernelPath> k_;
  KState kstate() const { return k_ ? k_->kstate : KState::Off; }
  bool fallback_counted_ = false;

  PumpHost& host_;
  net::Transport* client_;
  net::Transport* backend_;
  const Counters* counters_;
  uint64_t idle_ms_;
  uint64_t last_activity_ms_ = 0;
  mqtt::StreamScanner b2c_;  // broker -> client packet boundaries
  mqtt::StreamScanner c2b_;  // client -> broker packet boundaries
  // finish_with() state.
  bool finishing_ = false;
  bool to_client_done_ = false, to_backend_done_ = false;
  // What finish_with() injects at each boundary: allocated only then (an idle
  // session does not carry two empty vectors).
  struct Inject {
    std::vector<uint8_t> to_client, to_backend;
  };
  std::unique_ptr<Inject> inject_;
  std::optional<ConnackWatch> watch_;
  CloseReason reason_ = CloseReason::Error;
  bool done_ = false;
  bool client_eof_ = false, backend_eof_ = false;
  bool client_shut_ = false, backend_shut_ = false;      // our half-close reached the kernel
  bool client_paused_ = false, backend_paused_ = false;  // reading stopped by backpressure
};

}  // namespace lb
