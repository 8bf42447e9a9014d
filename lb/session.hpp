// One client connection through the balancer, owned by its Worker's session
// table (unique_ptr) and used only on that worker's loop thread.
//
// Phases: Peek (read until one complete CONNECT, bounded by size and time)
// -> Connecting (backend attempts, up to 1 + retries) -> Forwarding (both
// directions pumped with backpressure) ; or Linger (a refusal CONNACK was sent:
// drain the client until EOF or a short timer) ; then Closing.
//
// Handles: the client transport, zero or one live backend transport (plus
// closing ones from failed attempts), and one timer. The session is erased by
// the worker only after the last of them reported closed (open_handles_ == 0).
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lb/metrics.hpp"
#include "lb/runtime.hpp"
#include "lb/transport.hpp"
#include "mqtt/frame.hpp"
#include "mqtt/types.hpp"

namespace lb {

class Worker;
class TlsTransport;
struct ListenerCtx;

class Session final : public TransportSink {
 public:
  Session(Worker& w, uint64_t id);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Called once after construction: accepts from the listener's server handle.
  void start(uv_stream_t* server, const ListenerCtx& listener);
  // Closes everything (idempotent). reset: RST both sides instead of FIN.
  void close(CloseReason why, bool reset = false);

  uint64_t id() const { return id_; }
  bool forwarding_to(const std::string& backend) const;
  bool closing() const { return phase_ == Phase::Closing; }

  // TransportSink
  void on_read(Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(Transport* t) override;
  void on_error(Transport* t, int err) override;
  void on_connect(Transport* t, int status) override;
  void on_drained(Transport* t) override;
  void on_shutdown(Transport* t) override;
  void on_closed(Transport* t) override;

  static constexpr size_t kHighWater = 64 * 1024;  // stop reading the other side above this

 private:
  enum class Phase : uint8_t { Peek, Connecting, Forwarding, Linger, Closing };

  void reject(Reject why);
  void reject_connect(mqtt::ConnectError e);
  void on_connect_complete();
  void try_next_backend();
  void refuse_and_linger(const std::vector<uint8_t>& connack);
  void start_forwarding();
  void forward(Transport* from, Transport* to, const uint8_t* data, size_t len);
  void maybe_finish();
  void release_backend();
  void arm_timer(uint64_t ms);
  static void timer_cb(uv_timer_t* t);
  static void timer_close_cb(uv_handle_t* h);
  void handle_closed();

  Worker& w_;
  const uint64_t id_;
  Phase phase_ = Phase::Peek;
  int open_handles_ = 0;

  // The client side is only seen through the Transport seam: on a TLS listener
  // it is a TlsTransport wrapping the TcpTransport (client_tls_ then points at
  // it too, only to count a handshake timeout). Same for the backend side.
  Transport* client_ = nullptr;
  TlsTransport* client_tls_ = nullptr;
  Transport* backend_ = nullptr;       // the live attempt / forwarding peer
  bool backend_tls_ = false;           // backend_ is a TlsTransport (PROXY header already sent)
  bool backend_session_kept_ = false;  // its TLS session was offered to the next connections
  uv_timer_t timer_;
  bool timer_closed_ = false;

  // Peer identity, for limits, PROXY headers and logs.
  sockaddr_storage peer_{};
  sockaddr_storage local_{};
  std::string peer_ip_;
  bool admitted_ = false;  // counted in the global and per-IP limits

  // Peek state: the CONNECT and anything pipelined after it. Freed once sent.
  std::vector<uint8_t> inbuf_;
  uint64_t accepted_at_ns_ = 0;
  std::string client_id_;
  mqtt::Version version_ = mqtt::Version::V311;
  uint64_t idle_ms_ = 0;
  uint64_t last_activity_ms_ = 0;

  // Placement.
  std::shared_ptr<const Snapshot> snap_;  // held while Connecting only
  std::vector<bool> tried_;               // per snapshot backend index
  int attempts_ = 0;
  std::shared_ptr<BackendState> backend_state_;
  conf::ProxyProtocol proxy_ = conf::ProxyProtocol::None;
  bool backend_counted_ = false;  // backend_state_->active taken
  bool registered_ = false;       // in the server's takeover registry

  // Forwarding state.
  bool client_eof_ = false, backend_eof_ = false;
  bool client_shut_ = false, backend_shut_ = false;      // our half-close done
  bool client_paused_ = false, backend_paused_ = false;  // reading stopped by backpressure
  mqtt::StreamScanner b2c_scan_;  // packet boundaries broker->client (for DISCONNECT injection)
  CloseReason close_reason_ = CloseReason::Error;
};

}  // namespace lb
