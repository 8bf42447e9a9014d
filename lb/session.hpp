// One client connection through the balancer: the owner of its transports and
// its one timer (a node of its worker's timer heap, lb/timer_heap.hpp), and
// the router of their events to the stage in charge:
//
//   Peek   accept (admission) -> [TLS handshake] -> one complete CONNECT
//          (lb/peek.hpp); then the client is not read until placement ends,
//          so every later byte waits, in order, in the socket or the TLS engine
//   Place  backend choice, connect gate, connect, CONNECT forwarded, the
//          broker's CONNACK (lb/place.hpp); only an accepting CONNACK
//          registers the client (affinity, takeover)
//   Pump   both directions with backpressure (lb/pump.hpp)
//   Linger a refusal CONNACK was sent: drain the client until EOF or a timer
//   Closing
//
// Owned by its Worker's session table (unique_ptr) and used only on that
// worker's loop thread. Every transport it creates (the client's, each
// backend attempt's) is freed in on_closed; the Worker erases the session
// only after the last handle reported closed (open_handles_ == 0). The counts
// it takes (admission, backend, registry) are dropped exactly once, in the
// destructor or by the RAII BackendCount.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "lb/client_key.hpp"
#include "lb/outcome.hpp"
#include "lb/peek.hpp"
#include "lb/place.hpp"
#include "lb/pump.hpp"
#include "lb/runtime.hpp"
#include "lb/timer_heap.hpp"
#include "net/address.hpp"
#include "net/tls_transport.hpp"
#include "net/transport.hpp"
#include "net/ws_transport.hpp"

namespace lb {

class Worker;
class Listener;

class Session final : public net::TransportSink,
                      private PlaceHost,
                      private PumpHost,
                      private net::TlsObserver,
                      private net::WsObserver,
                      private TimerNode {
 public:
  Session(Worker& w, uint64_t id);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Takes over an accepted socket (closing it on any failure).
  void start(int fd, const sockaddr_storage& peer, Listener& listener);
  // Closes everything (idempotent). reset: RST both sides instead of FIN.
  void close(CloseReason why, bool reset = false);

  // Ends a placed session gracefully, at MQTT packet boundaries (lb/pump.hpp
  // finish_with): the client gets DISCONNECT `reason` (5.0 only, with Server
  // Reference when given; 3.x clients are just closed), and, when
  // `disconnect_broker`, the broker gets a normal DISCONNECT so it does not
  // publish the will of a client that is only moving. Not placed yet: closed.
  void end(CloseReason why, uint8_t reason, const std::string& server_reference,
           bool disconnect_broker);

  // What the admin API shows of a placed session.
  struct Info {
    std::string backend, listener, peer, tls_version, tls_subject;
    std::string forwarding;  // "kernel" while joined (docs/forwarding.md), else "userspace"
    const char* tls_record_layer = "";  // "mqttlb" once handed over (docs/tls.md), else "openssl"
    int64_t connected_since_ms = 0;     // wall clock, ms since the epoch
    int protocol_level = 0;
    uint16_t keep_alive = 0;
  };
  std::optional<Info> info() const;

  uint64_t id() const { return id_; }
  bool forwarding_to(const std::string& backend) const;
  bool placed() const { return phase_ == Phase::Pump; }
  // On `backend` (any, when empty) and accepted on `listener` (any, when empty).
  // A session not placed yet matches only a listener filter.
  bool matches(const std::string& backend, const std::string& listener) const;
  bool closing() const { return phase_ == Phase::Closing; }

  // TransportSink: every transport of this session reports here.
  void on_read(net::Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(net::Transport* t) override;
  void on_error(net::Transport* t, int err) override;
  void on_connect(net::Transport* t, int status) override;
  void on_drained(net::Transport* t) override;
  void on_shutdown(net::Transport* t) override;
  void on_closed(net::Transport* t) override;
  void on_hangup(net::Transport* t) override;  // a stream joined in the kernel ended

 private:
  enum class Phase : uint8_t { Peek, Place, Pump, Linger, Closing };

  // StageTimer
  void arm_timer(uint64_t ms) override;
  void disarm_timer() override;
  uint64_t now_ms() const override;
  // PlaceHost
  net::Transport* connect_backend(const RuntimeBackend& b, int& err) override;
  void retire(net::Transport* t) override;
  GateLane& lane(BackendState& b) override;
  void placed(Placement p) override;
  void place_failed(Reject why) override;
  // PumpHost
  void pump_done(CloseReason why, bool reset) override;
  void connack_seen(uint8_t code) override;
  // TlsObserver (client side of a TLS listener)
  void on_tls_handshake(const tls::Engine& e, double seconds) override;
  void on_tls_failure(net::TlsFail why, const std::string& detail, bool got_bytes) override;
  // WsObserver (lb/session_ws.cpp)
  void on_ws_handshake(net::ws::Role role, net::ws::Result r) override;
  void on_ws_protocol_error(net::ws::Role role, net::ws::FrameError e) override;
  // A websocket listener: the client's transport becomes a WebSocket server.
  void wrap_websocket(const conf::ListenerWebSocket& ws);
  // to_backend "websocket": a WebSocket client over `t` (the PROXY header,
  // on plain TCP, goes first as its preamble).
  net::Transport* wrap_backend_websocket(net::Transport* t, const RuntimeBackend& rb);
  // The WebSocket handshake was refused (its error page sent) or the frames
  // broke the protocol: drain the client until EOF or a timer, counted as `why`.
  void linger(Reject why);

  // The plain TCP transport under every client and broker connection, and
  // what the session does with its socket (lb/session.cpp).
  net::Transport* new_socket_transport();
  int socket_open(net::Transport* t, int fd);
  int socket_connect(net::Transport* t, const sockaddr* addr);
  void socket_nodelay(net::Transport* t);

  std::string peer_ip() const { return net::ip_string(peer_); }
  // The PROXY header a backend with `pp` gets (nothing for None).
  void append_proxy_header(std::vector<uint8_t>& out, conf::ProxyProtocol pp) const;

  void on_peek_bytes(const uint8_t* data, size_t len);
  bool check_identity();
  void begin_place();
  void accepted_by_broker();
  void reject(Reject why);                    // close now, counted
  void reject_connect(mqtt::ConnectError e);  // close now, counted by parse error
  void refuse(Reject why);                    // CONNACK refusal, then Linger
  void on_timer_due() override;               // TimerNode: the worker's timer heap
  void handle_closed();                       // may destroy *this

  Worker& w_;
  const uint64_t id_;
  Phase phase_ = Phase::Peek;
  int open_handles_ = 0;

  net::Transport* client_ = nullptr;
  net::TlsTransport* client_tls_ = nullptr;  // client_ when the listener terminates TLS
  net::WsTransport* client_ws_ = nullptr;    // client_ on a websocket listener (over TCP or TLS)
  bool ws_backend_ = false;                  // websocket.to_backend "websocket"
  net::Transport* backend_ = nullptr;        // the placed broker connection
  TlsListenerMetrics* tls_metrics_ = nullptr;

  net::CompactAddr peer_;    // the client (28 bytes: held for the session's life)
  bool admitted_ = false;    // counted in max_connections
  bool ip_counted_ = false;  // counted in max_connections_per_ip

  // TLS listeners, until placed: the client's TLS version and certificate CN
  // (PROXY v2 TLV), and the identity the CONNECT is rewritten to (tls.identity
  // rewrite). Null on plain listeners.
  struct ClientTls {
    proxy::SslInfo ssl;
    std::string identity;
  };
  // What only the peek and the placement need: one allocation from start()
  // until the session is placed, refused or closed (an idle placed session
  // does not carry it). Null afterwards.
  struct Setup {
    std::shared_ptr<const Snapshot> snap;
    std::unique_ptr<PeekStage> peek;
    std::unique_ptr<mqtt::ConnectInfo> info;  // while placing
    std::unique_ptr<PlaceStage> place;
    std::unique_ptr<ClientTls> ctls;
    net::CompactAddr local;  // the listener address it connected to (PROXY headers)
    Reject refuse_after_peek = Reject::Count;
    uint64_t accepted_ns = 0;
    uint64_t connect_done_ns = 0;
  };
  std::unique_ptr<Setup> su_;
  std::unique_ptr<Pump> pump_;

  BackendCount count_;  // the placed backend
  ClientKey key_;
  bool has_key_ = false;
  bool registered_ = false;  // in the takeover registry
  bool affinity_ = false;    // balance.affinity is client-id (as placed)
  mqtt::Version version_ = mqtt::Version::V311;
  std::optional<uint32_t> client_max_packet_;
  uint64_t idle_ms_ = 0;
  uint16_t keep_alive_ = 0;
  int64_t placed_wall_ms_ = 0;
  uint64_t placed_ns_ = 0;  // when a broker accepted the client (0: not yet)
  Listener* listener_ = nullptr;  // outlives its sessions (Listener::sessions counts them)
};

}  // namespace lb
