#include "lb/tls_transport.hpp"

#include <algorithm>
#include <cctype>
#include <span>

#include "lb/log.hpp"
#include "lb/server.hpp"

namespace lb {

namespace {

// Decrypted bytes land here and go to the sink inside the same callback, so
// one buffer per loop thread serves every TLS connection of that loop.
constexpr size_t kPlainSize = 16 * 1024;
thread_local uint8_t t_plain[kPlainSize];

// Handshake failures can repeat per connection (a scanner, a fleet with a
// stale CA): at most one line per second, all workers.
LogLimiter g_tls_fail_log(1000);

bool has(const std::string& hay, const char* needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

TlsFail classify_tls_error(std::string_view error) {
  std::string e(error);
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  if (has(e, "http request") || has(e, "https proxy request")) return TlsFail::HttpRequest;
  if (has(e, "wrong version number") || has(e, "unknown protocol") ||
      has(e, "packet length too long") || has(e, "record layer failure") ||
      has(e, "record length mismatch"))
    return TlsFail::NotTls;
  if (has(e, "no shared cipher") || has(e, "no suitable signature") ||
      has(e, "unsupported protocol") || has(e, "no protocols available") ||
      has(e, "version too low") || has(e, "protocol version") || has(e, "handshake failure"))
    return TlsFail::NoSharedCipher;
  if (has(e, "did not return a certificate") || has(e, "certificate required"))
    return TlsFail::NoClientCert;
  if (has(e, "unknown ca") || has(e, "unable to get local issuer") ||
      has(e, "self-signed certificate") || has(e, "self signed certificate"))
    return TlsFail::UnknownCa;
  if (has(e, "certificate")) return TlsFail::BadCertificate;
  return TlsFail::Other;
}

TlsTransport::TlsTransport(uv_loop_t* loop, Slab* slab, TransportSink* sink, tls::Context& ctx,
                           tls::Role role, std::string_view sni, const TlsListenerMetrics* metrics)
    : sink_(sink),
      engine_(ctx, role, sni),
      tcp_(new TcpTransport(loop, slab, this)),
      metrics_(metrics),
      started_ns_(uv_hrtime()) {}

TlsTransport::~TlsTransport() {
  delete tcp_;  // null unless the transport was never closed (owner error); see on_closed
}

int TlsTransport::connect(const sockaddr* addr, std::vector<uint8_t> preamble) {
  preamble_ = std::move(preamble);
  return tcp_->connect(addr);
}

void TlsTransport::count_failure(TlsFail why) {
  if (counted_ || engine_.role() != tls::Role::Server) return;
  counted_ = true;
  if (metrics_) metrics_->failures[static_cast<size_t>(why)]->Increment();
  // A connection closed before sending anything is a port probe (load
  // balancer or orchestrator TCP check): counted, but not worth a warning.
  if (why == TlsFail::Closed && !got_bytes_) {
    logf(LogLevel::Debug, "%s: closed before any TLS byte", label_.c_str());
    return;
  }
  const char* detail = engine_.error().c_str();
  if (engine_.error().empty())
    detail = why == TlsFail::Timeout ? "no complete handshake within limits.connect_timeout_ms"
                                     : "connection closed during the handshake";
  uint64_t skipped = 0;
  if (g_tls_fail_log.allow(steady_ms(), skipped))
    logf(LogLevel::Warn, "%s: TLS handshake failed (%s): %s (%llu similar lines suppressed)",
         label_.c_str(), to_string(why), detail, static_cast<unsigned long long>(skipped));
}

// ---- Transport -------------------------------------------------------------

void TlsTransport::start_read() {
  if (!closing_ && tcp_) tcp_->start_read();
}

void TlsTransport::stop_read() {
  // Client role: the handshake must progress even if the owner is not reading yet.
  if (engine_.role() == tls::Role::Client && !connected_) return;
  if (tcp_) tcp_->stop_read();
}

int TlsTransport::write(const uint8_t* data, size_t len) {
  if (closing_ || !tcp_) return UV_ECANCELED;
  std::span<const uint8_t> rest(data, len);
  while (!rest.empty()) {
    size_t k = engine_.write_plaintext(rest);
    if (int r = flush(); r != 0) return r;
    if (k == 0) return engine_.failed() ? kTlsFailed : UV_ENOBUFS;  // flushed: room was free
    rest = rest.subspan(k);
  }
  return 0;
}

size_t TlsTransport::pending() const {
  return (tcp_ ? tcp_->pending() : 0) + engine_.pending_ciphertext();
}

void TlsTransport::shutdown() {
  if (closing_ || !tcp_) return;
  engine_.shutdown();  // close_notify, then our FIN
  flush();
  tcp_->shutdown();
}

void TlsTransport::close(bool reset) {
  if (closing_) return;
  closing_ = true;
  if (!tcp_) return;
  if (!reset && engine_.handshake_done() && !engine_.failed() && !engine_.shutdown_sent()) {
    engine_.shutdown();
    flush();  // close_notify: best effort, uv_try_write normally takes it at once
  }
  tcp_->close(reset);
}

int TlsTransport::flush() {
  if (!engine_.want_write() || !tcp_) return 0;
  std::vector<uint8_t> out;  // the engine's buffer, handed over in O(1)
  engine_.take_ciphertext(out);
  if (out.empty()) return 0;
  return tcp_->write(out.data(), out.size());  // TcpTransport copies what it queues
}

// ---- inner TcpTransport events -----------------------------------------------

void TlsTransport::on_read(Transport*, const uint8_t* data, size_t len) {
  if (closing_) return;
  got_bytes_ = true;
  std::span<const uint8_t> in(data, len);
  while (!in.empty()) {
    size_t k = engine_.feed_ciphertext(in);
    in = in.subspan(k);
    // Drain all plaintext after every feed (tls::Engine rule): the engine then
    // never holds more than a partial record, so the next feed fits.
    for (;;) {
      size_t m = engine_.read_plaintext(std::span<uint8_t>(t_plain, kPlainSize));
      // Report the handshake before the first plaintext (a client-role sink
      // must hear on_connect before on_read).
      if (engine_.handshake_done() && !handshake_seen_) {
        handshake_completed();
        if (closing_) return;
      }
      if (m == 0) break;
      sink_->on_read(this, t_plain, m);
      if (closing_) return;
    }
    if (engine_.failed()) return failed();
    if (k == 0 && !in.empty()) {
      logf(LogLevel::Warn, "%s: TLS input not consumed; closing", label_.c_str());
      sink_->on_error(this, UV_ENOBUFS);
      return;
    }
  }
  if (engine_.handshake_done() && !handshake_seen_) {
    handshake_completed();
    if (closing_) return;
  }
  if (int r = flush(); r != 0) {
    sink_->on_error(this, r);
    return;
  }
  if (engine_.peer_closed() && !eof_reported_) {
    eof_reported_ = true;  // close_notify: a clean end of the plaintext stream
    tcp_->stop_read();
    sink_->on_eof(this);
  }
}

void TlsTransport::handshake_completed() {
  handshake_seen_ = true;
  if (engine_.role() == tls::Role::Server) {
    if (metrics_) {
      (engine_.session_reused() ? metrics_->resumed : metrics_->full)->Increment();
      metrics_->duration->Observe(static_cast<double>(uv_hrtime() - started_ns_) / 1e9);
    }
    logf(LogLevel::Debug, "%s: TLS handshake done: %s %s%s", label_.c_str(),
         engine_.protocol().c_str(), engine_.cipher().c_str(),
         engine_.session_reused() ? " (resumed)" : "");
    return;
  }
  connected_ = true;
  sink_->on_connect(this, 0);
}

void TlsTransport::failed() {
  flush();  // the alert for the peer, if any
  if (engine_.role() == tls::Role::Server) {
    if (!handshake_seen_)
      count_failure(classify_tls_error(engine_.error()));
    else
      logf(LogLevel::Debug, "%s: %s", label_.c_str(), engine_.error().c_str());
    sink_->on_error(this, kTlsFailed);
    return;
  }
  if (!connected_) {
    sink_->on_connect(this, kTlsFailed);
    return;
  }
  sink_->on_error(this, kTlsFailed);
}

void TlsTransport::on_eof(Transport*) {
  if (closing_ || eof_reported_) return;
  if (engine_.role() == tls::Role::Client && !connected_) {
    sink_->on_connect(this, UV_EOF);
    return;
  }
  if (!engine_.handshake_done()) count_failure(TlsFail::Closed);
  // A TCP EOF without close_notify is a truncation; MQTT frames itself, so the
  // session treats it as an ordinary end of stream.
  eof_reported_ = true;
  sink_->on_eof(this);
}

void TlsTransport::on_error(Transport*, int err) {
  if (closing_) return;
  if (engine_.role() == tls::Role::Client && !connected_) {
    sink_->on_connect(this, err);
    return;
  }
  if (!engine_.handshake_done()) count_failure(TlsFail::Closed);
  sink_->on_error(this, err);
}

void TlsTransport::on_connect(Transport*, int status) {
  if (status != 0) {
    sink_->on_connect(this, status);
    return;
  }
  // [HAProxy send-proxy + ssl] the PROXY header precedes the TLS handshake, in plaintext.
  if (!preamble_.empty()) {
    int r = tcp_->write(preamble_.data(), preamble_.size());
    std::vector<uint8_t>().swap(preamble_);
    if (r != 0) {
      sink_->on_connect(this, r);
      return;
    }
  }
  tcp_->start_read();
  if (int r = flush(); r != 0) sink_->on_connect(this, r);  // the ClientHello
}

void TlsTransport::on_drained(Transport*) {
  if (!closing_) sink_->on_drained(this);
}

void TlsTransport::on_shutdown(Transport*) {
  if (!closing_) sink_->on_shutdown(this);
}

void TlsTransport::on_closed(Transport* t) {
  delete t;
  tcp_ = nullptr;
  closing_ = true;
  sink_->on_closed(this);  // last action: the sink may delete this
}

}  // namespace lb
