// TLS over a TcpTransport: a Transport that the session uses exactly like a
// TcpTransport, carrying plaintext, while a tls::Engine (memory BIOs, tls/)
// turns it into ciphertext on the wrapped TCP connection.
//
// Server role (a TLS listener): the handshake runs on the first reads; the
// session sees plaintext only after it completed, so its CONNECT timer bounds
// the handshake too. A failure is counted by reason, logged (rate-limited),
// its alert is sent, and the session hears on_error(kTlsFailed).
// Client role (mqttlb -> backend): connect() writes an optional plaintext
// preamble (the PROXY header) on TCP, then the handshake; the session hears
// on_connect(0) only once the handshake completed (a certificate the backend
// fails to verify is a failed connect: the session tries the next backend).
//
// Ownership: a heap object that never moves, one loop thread. It owns the inner
// TcpTransport until that one's on_closed; then it reports on_closed(this) to
// its sink as its last action (the sink may delete it there). Buffers: the
// engine's limits; plaintext is decrypted into a per-thread buffer and handed
// to the sink at once; ciphertext is handed to the TcpTransport at once (its
// pending() is what backpressure sees). An idle connection holds no buffers.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lb/metrics.hpp"
#include "lb/transport.hpp"
#include "tls/context.hpp"
#include "tls/engine.hpp"

namespace lb {

class TlsTransport final : public Transport, private TransportSink {
 public:
  // Error reported through on_error / on_connect when TLS failed.
  static constexpr int kTlsFailed = UV_EPROTO;

  // metrics: the listener's TLS series (server role), or null.
  TlsTransport(uv_loop_t* loop, Slab* slab, TransportSink* sink, tls::Context& ctx, tls::Role role,
               std::string_view sni, const TlsListenerMetrics* metrics);
  ~TlsTransport() override;

  TcpTransport* tcp() { return tcp_; }  // accept into it / getpeername; null once closed
  // For logs: "listener mqtts, peer 1.2.3.4" or "backend b1".
  void set_label(std::string label) { label_ = std::move(label); }
  // Client role: connect, write `preamble` in plaintext on TCP (PROXY header), then handshake.
  int connect(const sockaddr* addr, std::vector<uint8_t> preamble);

  bool handshake_done() const { return engine_.handshake_done(); }
  // Client role resumption: offer `s` (call before connect); after some data was
  // read, session() is worth keeping for the next connection.
  void set_session(const tls::Session& s) { engine_.set_session(s); }
  tls::Session session() const { return engine_.get_session(); }
  bool session_reused() const { return engine_.session_reused(); }
  // Counts a failed handshake once (e.g. Timeout from the session's CONNECT timer).
  void count_failure(TlsFail why);

  // Transport
  void start_read() override;
  void stop_read() override;
  int write(const uint8_t* data, size_t len) override;
  size_t pending() const override;
  void shutdown() override;
  void close(bool reset) override;
  bool closing() const override { return closing_; }
  std::string error_detail() const override { return engine_.error(); }

 private:
  // TransportSink, for the inner TcpTransport.
  void on_read(Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(Transport* t) override;
  void on_error(Transport* t, int err) override;
  void on_connect(Transport* t, int status) override;
  void on_drained(Transport* t) override;
  void on_shutdown(Transport* t) override;
  void on_closed(Transport* t) override;

  int flush();  // pending ciphertext -> TCP
  void handshake_completed();
  void failed();  // the engine failed: send its alert, count, tell the sink

  TransportSink* sink_;
  tls::Engine engine_;
  TcpTransport* tcp_;  // owned; deleted in on_closed
  const TlsListenerMetrics* metrics_;
  std::string label_;
  std::vector<uint8_t> preamble_;
  uint64_t started_ns_;
  bool connected_ = false;  // client role: on_connect(this, 0) reported
  bool handshake_seen_ = false;
  bool counted_ = false;  // a handshake failure was counted
  bool eof_reported_ = false;
  bool got_bytes_ = false;  // any ciphertext received (for log levels)
  bool closing_ = false;
};

// Maps an engine error ("TLS handshake failed: no shared cipher") to a reason.
TlsFail classify_tls_error(std::string_view error);

}  // namespace lb
