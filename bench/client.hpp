// One MQTT client connection of the load generator.
//
// I/O path: net::TcpTransport [+ net::TlsTransport over it] <-> MQTT bytes.
// Outgoing MQTT bytes accumulate in `out_` during a loop turn and are handed to
// the transport once (flush(), from the Runner's uv_check callback), so many
// PUBLISH/PUBACK packets share one write; what the kernel does not take at
// once the transport queues, and pending() is what backpressure sees.
// Incoming bytes are parsed straight from the Runner's read slab (TLS: the
// transport's plaintext buffer); only an incomplete trailing packet is copied
// into `rbuf_`. The transport may deliver from inside start_read() (TLS): the
// client calls it only once its state is ready for packets.
//
// Split: client.cpp is the MQTT side (packets, windows, publishing),
// client_io.cpp the transport side (connect, TLS, read, flush, close).
//
// Lifetime: owned by the Runner; its transport is closed with close()
// (idempotent) and freed in on_closed, after which the Runner hears
// on_closed(*this); the object is destroyed only after that.
#pragma once

#include <uv.h>

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/transport.hpp"

namespace net {
class TlsTransport;
}

namespace bench {

class Runner;

class Client final : private net::TransportSink {
 public:
  enum class Role : uint8_t { Conn, Pub, Sub };
  enum class State : uint8_t {
    Idle,
    Connecting,
    Handshaking,
    AwaitConnack,
    AwaitSuback,
    Ready,
    Closed
  };

  Client(Runner& r, Role role, uint32_t index, uint32_t slot);
  ~Client() override;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void start();  // TCP connect (uses a file descriptor from here on)
  // Graceful: DISCONNECT, then close once written. Otherwise close at once.
  void disconnect();
  // Closes the handle at once (idempotent); failures go through fail() first.
  void close();

  // Publisher side.
  void set_topic(const std::string& topic);
  void set_filters(std::vector<std::string> filters) { filters_ = std::move(filters); }
  void pump();                    // closed loop: send while the window allows
  uint32_t send_due(uint32_t n);  // open loop: send up to n now; returns how many were sent
  void on_delivered() {
    delivered_++;
    last_delivery_ = 0;
  }
  void check_stall(uint64_t now);
  void keepalive(uint64_t now);
  void check_connect_timeout(uint64_t now, uint64_t timeout_ns);

  void flush();            // out_ -> transport (Runner calls this once per loop turn)
  bool scheduled = false;  // in the Runner's dirty list

  Role role() const { return role_; }
  State state() const { return state_; }
  uint32_t index() const { return index_; }
  bool idle_publisher() const;
  bool wants_to_send() const;  // closed loop: could publish more right now
  uint32_t in_flight() const { return inflight_count_; }
  uint64_t sent() const { return seq_; }

 private:
  struct Inflight {
    uint64_t sent_at = 0;
    bool used = false;
    bool released = false;  // QoS 2: PUBREC received, PUBREL sent
  };

  // net::TransportSink: the TcpTransport's until TCP is up, then (TLS) the TlsTransport's.
  void on_read(net::Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(net::Transport* t) override;
  void on_error(net::Transport* t, int err) override;
  void on_connect(net::Transport* t, int status) override;
  void on_drained(net::Transport* t) override;
  void on_shutdown(net::Transport* t) override;
  void on_closed(net::Transport* t) override;

  int open_bound_socket(const sockaddr* src);  // --source-addresses
  void on_tcp_connected();
  void fail(const std::string& reason, bool lost);
  void on_bytes(std::span<const uint8_t> data);  // plaintext MQTT bytes
  size_t parse(std::span<const uint8_t> data);   // returns bytes consumed
  bool handle_packet(uint8_t first, std::span<const uint8_t> body);
  void handle_connack(uint8_t first, std::span<const uint8_t> body);
  void handle_suback(uint8_t first, std::span<const uint8_t> body);
  void handle_publish(uint8_t first, std::span<const uint8_t> body);
  void handle_ack(uint8_t type, std::span<const uint8_t> body);
  void send_connect();
  void send_subscribe();
  void publish_one(uint64_t now);
  void send_small(uint8_t first, uint16_t pid);  // PUBACK/PUBREC/PUBREL/PUBCOMP
  bool can_send() const;
  void after_connected();

  Runner& r_;
  Role role_;
  State state_ = State::Idle;
  uint32_t index_;  // publisher / subscriber / connection index
  uint32_t slot_;   // position in the launch order (source address choice)
  bool closing_ = false;
  bool close_after_write_ = false;  // graceful end: DISCONNECT, then half-close, then close
  bool shut_ = false;               // the half-close was asked for
  net::Transport* t_ = nullptr;     // the connection (tcp_, or tls_ over it); owned
  net::TcpTransport* tcp_ = nullptr;
  net::TlsTransport* tls_ = nullptr;
  std::vector<uint8_t> out_;   // MQTT bytes not yet handed to the transport
  std::vector<uint8_t> rbuf_;  // incomplete packet carried to the next read
  uint64_t t_start_ = 0, t_tcp_ = 0, t_connect_sent_ = 0, t_last_send_ = 0;

  // Publisher state.
  std::vector<uint8_t> pub_header_;  // topic length + topic, pre-encoded
  uint64_t seq_ = 0;                 // next sequence number == messages sent
  uint64_t delivered_ = 0;           // copies delivered to our subscribers (pubsub)
  uint64_t delivered_base_ = 0;      // window reopened after a stall
  uint64_t last_delivery_ = 0;       // stall detection: ticks without delivery
  uint32_t window_ = 0;              // effective window (Receive Maximum applied)
  std::vector<Inflight> slots_;      // index = packet id (1..window)
  std::vector<uint16_t> free_ids_;
  uint32_t inflight_count_ = 0;
  uint32_t fanout_ = 0;

  // Subscriber state.
  std::vector<std::string> filters_;
  uint32_t subacks_pending_ = 0;
  std::unordered_map<uint32_t, uint32_t> last_seq_;  // publisher -> last sequence + 1

 public:
  void set_fanout(uint32_t f) { fanout_ = f; }
};

}  // namespace bench
