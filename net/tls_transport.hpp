// TLS over any inner Transport (normally a TcpTransport): a Transport that its
// user treats exactly like the inner one, carrying plaintext, while a
// tls::Engine (memory BIOs, tls/) turns it into ciphertext on the inner one.
//
// Reading: ciphertext from one inner read is handed to the engine whole (what
// the engine cannot take yet waits in a backlog of at most one inner read).
// Plaintext reaches the sink only while the user reads: after stop_read() the
// records already received stay encrypted in the engine and the inner read is
// stopped, so nothing is lost and nothing is buffered beyond that one read;
// start_read() delivers them — synchronously, from inside start_read() — and
// then resumes the inner read. A close_notify (or a TCP EOF) is reported after
// every byte before it. While the handshake runs, the inner read stays on
// whatever the user does (the handshake must progress).
//
// Server role: the handshake runs on the first reads; the user sees plaintext
// only after it completed. A failure is reported to the observer (reason,
// detail), its alert is sent, and the sink hears on_error(kTlsFailed).
// Client role: set_preamble() bytes (the PROXY header) go out in plaintext as
// soon as the inner transport connects, then the ClientHello; the sink hears
// on_connect(0) only once the handshake completed.
//
// Ownership: a heap object that never moves, one loop thread. It owns the inner
// transport (and becomes its sink) until that one's on_closed; then it reports
// on_closed(this) to its sink as its last action (the sink may delete it then).
// An idle connection holds no buffers (engine rule; the backlog is empty).
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net/transport.hpp"
#include "tls/context.hpp"
#include "tls/engine.hpp"

namespace net {

// Why a server-role handshake failed (the `reason` label of
// mqttlb_tls_handshake_failures_total, docs/metrics.md).
enum class TlsFail : uint8_t {
  NoSharedCipher,  // no common protocol version / cipher suite / signature algorithm
  UnknownCa,       // client certificate from an unknown CA, or the client refused ours
  BadCertificate,  // other certificate verification failures (expired, bad signature...)
  NoClientCert,    // verify_client required and the client sent none
  NotTls,          // the first bytes are not a TLS record (e.g. plain MQTT)
  HttpRequest,     // the first bytes are an HTTP request
  Timeout,         // not done in time (reported by the user, see count_failure)
  Closed,          // the client closed or reset the connection during the handshake
  Other,
  Count
};
const char* to_string(TlsFail f);
// Maps an engine error ("TLS handshake failed: no shared cipher") to a reason.
TlsFail classify_tls_error(std::string_view error);

// Server-role notifications, for metrics and logs. Called on the loop thread.
class TlsObserver {
 public:
  virtual ~TlsObserver() = default;
  virtual void on_tls_handshake(const tls::Engine& e, double seconds) = 0;
  // got_bytes: the peer sent anything at all (a bare TCP probe sends nothing).
  virtual void on_tls_failure(TlsFail why, const std::string& detail, bool got_bytes) = 0;
};

class TlsTransport final : public Transport, private TransportSink {
 public:
  // Error reported through on_error / on_connect when TLS failed.
  static constexpr int kTlsFailed = UV_EPROTO;

  // Takes ownership of `inner` and becomes its sink. observer may be null.
  TlsTransport(Transport* inner, TransportSink* sink, tls::Context& ctx, tls::Role role,
               std::string_view sni = {}, TlsObserver* observer = nullptr);
  ~TlsTransport() override;

  Transport* inner() { return inner_; }  // null once closed
  // Client role: plaintext sent on the inner transport before the handshake.
  void set_preamble(std::vector<uint8_t> preamble) { preamble_ = std::move(preamble); }
  // Client role over an inner transport the user connected itself (it was the
  // inner's sink until this object was built: e.g. to time the TCP connect, or
  // to build the preamble from the socket's own addresses): sends the preamble
  // and the ClientHello now, as the inner's on_connect(0) would have. Returns 0
  // or a uv error (then nothing is reported to the sink; the user closes). The
  // end of the handshake is reported as usual: on_connect(this, 0 | error).
  int begin_handshake();

  const tls::Engine& engine() const { return engine_; }
  // Server role: see tls::Engine::allow_handover (the record layer moves to
  // mqttlb once nothing more is read from the client's certificate).
  void allow_handover() { engine_.allow_handover(); }
  bool handshake_done() const { return engine_.handshake_done(); }
  // Client role resumption: offer `s` before connecting; after data was read,
  // session() is worth keeping for the next connection.
  void set_session(const tls::Session& s) { engine_.set_session(s); }
  tls::Session session() const { return engine_.get_session(); }
  // Server role: reports a failed handshake to the observer, once (e.g.
  // Timeout, from the user's deadline).
  void count_failure(TlsFail why);

  // Transport
  void set_sink(TransportSink* sink) override { sink_ = sink; }
  void start_read() override;
  void stop_read() override;
  int write(const uint8_t* data, size_t len) override;
  size_t pending() const override;
  void shutdown() override;
  void close(bool reset) override;
  bool closing() const override { return closing_; }
  std::string error_detail() const override { return engine_.error(); }

 private:
  // TransportSink, for the inner transport.
  void on_read(Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(Transport* t) override;
  void on_error(Transport* t, int err) override;
  void on_connect(Transport* t, int status) override;
  void on_drained(Transport* t) override;
  void on_shutdown(Transport* t) override;
  void on_closed(Transport* t) override;

  void take(const uint8_t* data, size_t len);  // ciphertext -> engine (rest -> backlog)
  void process();  // engine -> plaintext -> sink while reading; then handshake/flush/EOF
  int flush();     // pending ciphertext -> inner
  void handshake_completed();
  void failed();  // the engine failed: send its alert, count, tell the sink

  TransportSink* sink_;
  tls::Engine engine_;
  Transport* inner_;  // owned; deleted in on_closed
  TlsObserver* observer_;
  std::vector<uint8_t> preamble_;
  std::vector<uint8_t> backlog_;  // ciphertext the engine could not take yet
  uint64_t started_ns_;
  bool want_read_ = false;   // the user reads (start_read without a later stop_read)
  bool delivering_ = false;  // inside process(): re-entrant calls only set flags
  bool held_ = false;        // plaintext may wait in the engine (the user paused)
  bool inner_eof_ = false;   // TCP EOF seen, to report once the held bytes are out
  bool tcp_up_ = false;      // client role: the inner transport connected
  bool connected_ = false;   // client role: on_connect(this, 0) reported
  bool handshake_seen_ = false;
  bool counted_ = false;  // a handshake failure was reported
  bool eof_reported_ = false;
  bool got_bytes_ = false;  // any ciphertext received (for log levels)
  bool closing_ = false;
};

}  // namespace net
