// One MQTT client connection of the load generator.
//
// I/O path: socket <-> [optional tls::Engine] <-> MQTT bytes. Outgoing MQTT
// bytes accumulate in `out_` during a loop turn and are flushed once (the
// Runner's uv_check callback), so many PUBLISH/PUBACK packets share one write.
// At most one uv_write is in flight; it owns `wbuf_` until its callback.
// Incoming bytes are parsed straight from the Runner's read slab; only an
// incomplete trailing packet is copied into `rbuf_`.
//
// Lifetime: owned by the Runner; the handle is closed with close() (idempotent)
// and the object is destroyed only after the loop has run every close callback.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace tls {
class Engine;
}

namespace bench {

class Runner;

class Client {
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
  ~Client();
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

  void flush();            // write out_ (Runner calls this once per loop turn)
  bool scheduled = false;  // in the Runner's dirty list

  Role role() const { return role_; }
  State state() const { return state_; }
  uint32_t index() const { return index_; }
  bool idle_publisher() const;
  bool wants_to_send()
      const;  // closed loop: could publish more right now  // nothing in flight, nothing buffered
  uint32_t in_flight() const { return inflight_count_; }
  uint64_t sent() const { return seq_; }

 private:
  struct Inflight {
    uint64_t sent_at = 0;
    bool used = false;
    bool released = false;  // QoS 2: PUBREC received, PUBREL sent
  };

  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);

  void fail(const std::string& reason, bool lost);
  void on_bytes(std::span<const uint8_t> data);  // plaintext MQTT bytes
  void on_ciphertext(std::span<const uint8_t> data);
  size_t parse(std::span<const uint8_t> data);  // returns bytes consumed
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
  bool inited_ = false;
  bool closing_ = false;
  bool writing_ = false;
  bool close_after_write_ = false;
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  std::vector<uint8_t> out_;   // MQTT bytes not yet handed to the socket / TLS
  std::vector<uint8_t> wbuf_;  // bytes owned by the write in flight
  std::vector<uint8_t> rbuf_;  // incomplete packet carried to the next read
  std::unique_ptr<tls::Engine> tls_;
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
