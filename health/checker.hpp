// The active MQTT check of one backend, on the health thread's libuv loop.
//
// A check: TCP connect (+ PROXY header) → CONNECT (clean session, no will) →
// CONNACK within timeout_ms → PINGREQ → PINGRESP within timeout_ms. In
// persistent mode the connection is kept and later checks are one
// PINGREQ/PINGRESP on it; any failure closes it and the next check starts a new
// one. In reconnect mode every check ends with DISCONNECT and close.
//
// I/O: a net::TcpTransport, wrapped in a net::TlsTransport (client role) once
// TCP is up when the backend uses TLS; the PROXY header goes first, in
// plaintext (the TLS preamble).
//
// Thread: everything here runs on the loop's thread only.
// Ownership: a Checker is heap-allocated by create() and never moves; it owns
// two timers and its transports (the current one and any still closing), each
// freed in its on_closed. close() is idempotent; the Checker deletes itself
// after the last of its timers' close callbacks and its transports' on_closed
// has run. No result callback runs after close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "net/transport.hpp"

namespace net {
class TlsTransport;
}
namespace tls {
class Context;
}

namespace health {

// Why a check failed; the `reason` label of mqttlb_health_check_failures_total.
enum class FailKind : uint8_t {
  None,
  Resolve,         // the backend's host name does not resolve
  Connect,         // TCP connect failed (refused, unreachable)
  ConnectTimeout,  // no TCP connection within timeout_ms
  Tls,             // TLS handshake or record failure
  ConnackTimeout,  // connected, but no CONNACK within timeout_ms
  Refused,         // CONNACK with a non-zero code
  PingTimeout,     // no PINGRESP within timeout_ms
  Closed,          // the broker closed or reset the connection
  Protocol,        // garbage, malformed or unexpected packet
};
const char* to_string(FailKind k);  // metric label, e.g. "connack_timeout"

struct CheckResult {
  bool pass = false;
  FailKind kind = FailKind::None;  // None when pass (also for an accepted refusal)
  std::string detail;              // for logs: "timeout waiting for CONNACK (300 ms)"
  double seconds = 0;              // from the start of the check to its verdict
  bool scheduled = true;           // false: a kept connection died between checks
};

// What a CONNACK code means for the check.
enum class ConnackVerdict : uint8_t {
  Accepted,         // 0: the broker serves clients
  LivenessRefusal,  // broker alive, rejected the checker: bad credentials, not
                    // authorized, identifier rejected (3.1.1 0x02/0x04/0x05,
                    // 5.0 0x85/0x86/0x87); pass only with accept_refusal
  Failure,          // unavailable, busy, shutting down, anything else
};
ConnackVerdict classify_connack(uint8_t code, bool v5);
// "0x05 not authorized"
std::string connack_code_name(uint8_t code, bool v5);

// The check's MQTT client id: prefix + instance id + "-" + backend name, at most
// 23 bytes [MQTT-3.1.3-5]. When the name does not fit it is replaced by a
// truncated part of it plus a hash of the whole, so ids stay distinct per backend.
// Bytes outside [0-9A-Za-z_-] are replaced by '_'.
std::string make_client_id(std::string_view prefix, std::string_view instance_id,
                           std::string_view backend_name);

class Checker final : private net::TransportSink {
 public:
  using ResultFn = std::function<void(const CheckResult&)>;

  // Creates a Checker on `loop` (idle until start()); `slab` is the loop's read
  // slab, shared by every checker on it (it must outlive them). `on_result` is
  // called on the loop thread for every check verdict, and also when a kept
  // connection dies between checks (counted as one failed check).
  static Checker* create(uv_loop_t* loop, net::Slab* slab, const conf::Backend& backend,
                         const conf::Health& hc, std::string client_id, ResultFn on_result);

  // Runs the first check now, then one every interval_ms (measured from the
  // start of the previous check). Also resumes after pause().
  void start();
  // Stops checking and closes the connection (admin maint); no result of a
  // check in flight is reported.
  void pause();
  // Config reload: the backend's TLS files may have changed in place (a new CA
  // bundle at the same path). The TLS context is rebuilt from the files for
  // the next connection, and a kept connection is replaced at the next check,
  // as the data path does for new connections.
  void reload_tls();
  // Closes everything; the Checker frees itself once all handles are closed.
  void close();

  const std::string& client_id() const { return client_id_; }
  const std::string& name() const { return backend_.name; }

 private:
  Checker(uv_loop_t* loop, net::Slab* slab, const conf::Backend& backend, const conf::Health& hc,
          std::string client_id, ResultFn on_result);
  ~Checker() override;

  enum class Phase : uint8_t { Idle, Connecting, AwaitConnack, AwaitPingresp, Kept, Closing };

  // net::TransportSink, for the current connection (closing ones only report on_closed).
  void on_read(net::Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(net::Transport* t) override;
  void on_error(net::Transport* t, int err) override;
  void on_connect(net::Transport* t, int status) override;
  void on_drained(net::Transport*) override {}
  void on_shutdown(net::Transport*) override {}
  void on_closed(net::Transport* t) override;

  void run_check();
  void schedule_next();
  void new_connection();
  void on_tcp_connected();
  void on_bytes();  // consume complete packets from rbuf_
  void on_packet(uint8_t first_byte, const uint8_t* body, size_t len);
  void on_deadline();
  void send_connect();
  void send_pingreq();
  // MQTT bytes to the broker (through TLS when configured). A failed write
  // shows up as a read error or a timeout.
  void send(const std::vector<uint8_t>& bytes);
  bool tls_ready();  // builds the TLS client context once; false (and a result) on error
  // " before CONNACK" / " before PINGRESP" for the phase in flight.
  const char* phase_suffix() const;
  // Ends the check in flight (or reports a dead kept connection).
  void finish(bool pass, FailKind kind, std::string detail, bool keep_conn);
  void drop_conn();
  void arm_deadline();
  bool resolve();
  void release();  // one handle or transport fewer; deletes this after the last
  static void on_handle_closed(uv_handle_t* h);

  uv_loop_t* loop_;
  net::Slab* slab_;
  conf::Backend backend_;
  conf::Health hc_;
  std::string client_id_;
  ResultFn on_result_;

  uv_timer_t tick_;       // next check
  uv_timer_t deadline_;   // timeout of the phase in flight
  int open_handles_ = 0;  // timers + transports not yet closed
  bool closing_ = false;
  bool running_ = false;

  sockaddr_storage addr_{};
  bool resolved_ = false;
  std::unique_ptr<tls::Context> tls_ctx_;  // built on the first TLS check

  // The current connection: conn_ is what MQTT bytes go through (tcp_, or
  // tls_ over it); null between connections.
  net::Transport* conn_ = nullptr;
  net::TcpTransport* tcp_ = nullptr;
  net::TlsTransport* tls_ = nullptr;
  std::vector<uint8_t> rbuf_;  // bytes of an incomplete packet, <= 64 KiB
  Phase phase_ = Phase::Idle;
  bool in_check_ = false;         // a check is in flight (its verdict not reported yet)
  bool new_session_ = false;      // the check in flight opened its own connection
  bool session_keepable_ = true;  // false: 5.0 Server Keep Alive < 2 x interval
  bool tls_stale_ = false;        // reload_tls(): the kept connection uses an old context
  uint64_t check_start_ns_ = 0;
};

}  // namespace health
