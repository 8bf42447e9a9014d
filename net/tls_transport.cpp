#include "net/tls_transport.hpp"

#include <algorithm>
#include <cctype>
#include <span>

namespace net {

namespace {

// Decrypted bytes land here and go to the sink inside the same call, so one
// buffer per loop thread serves every TLS connection of that loop.
constexpr size_t kPlainSize = 16 * 1024;
thread_local uint8_t t_plain[kPlainSize];

bool has(const std::string& hay, const char* needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

const char* to_string(TlsFail f) {
  switch (f) {
    case TlsFail::NoSharedCipher:
      return "no_shared_cipher";
    case TlsFail::UnknownCa:
      return "unknown_ca";
    case TlsFail::BadCertificate:
      return "bad_certificate";
    case TlsFail::NoClientCert:
      return "no_client_cert";
    case TlsFail::NotTls:
      return "not_tls";
    case TlsFail::HttpRequest:
      return "http_request";
    case TlsFail::Timeout:
      return "timeout";
    case TlsFail::Closed:
      return "closed";
    default:
      return "other";
  }
}

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

TlsTransport::TlsTransport(Transport* inner, TransportSink* sink, tls::Context& ctx, tls::Role role,
                           std::string_view sni, TlsObserver* observer)
    : sink_(sink),
      engine_(ctx, role, sni),
      inner_(inner),
      observer_(observer),
      started_ns_(uv_hrtime()) {
  inner_->set_sink(this);
}

TlsTransport::~TlsTransport() {
  delete inner_;  // null unless the transport was never closed (owner error); see on_closed
}

void TlsTransport::count_failure(TlsFail why) {
  if (counted_ || engine_.role() != tls::Role::Server) return;
  counted_ = true;
  if (observer_) observer_->on_tls_failure(why, engine_.error(), got_bytes_);
}

// ---- Transport -------------------------------------------------------------

void TlsTransport::start_read() {
  if (closing_ || !inner_) return;
  want_read_ = true;
  if (delivering_) return;  // the delivery loop in progress sees the flag
  process();
}

void TlsTransport::stop_read() {
  want_read_ = false;
  // During the handshake the inner read stays on (the handshake must progress);
  // inside process() the loop stops the inner read itself.
  if (delivering_ || !inner_ || !handshake_seen_) return;
  inner_->stop_read();
}

int TlsTransport::write(const uint8_t* data, size_t len) {
  if (closing_ || !inner_) return UV_ECANCELED;
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
  return (inner_ ? inner_->pending() : 0) + engine_.pending_ciphertext();
}

void TlsTransport::shutdown() {
  if (closing_ || !inner_) return;
  engine_.shutdown();  // close_notify, then our FIN
  flush();
  inner_->shutdown();
}

void TlsTransport::close(bool reset) {
  if (closing_) return;
  closing_ = true;
  if (!inner_) return;
  if (!reset && engine_.handshake_done() && !engine_.failed() && !engine_.shutdown_sent()) {
    engine_.shutdown();
    flush();  // close_notify: best effort, a TCP write normally takes it at once
  }
  inner_->close(reset);
}

int TlsTransport::flush() {
  if (!engine_.want_write() || !inner_) return 0;
  std::vector<uint8_t> out;  // the engine's buffer, handed over in O(1)
  engine_.take_ciphertext(out);
  if (out.empty()) return 0;
  return inner_->write(out.data(), out.size());  // the inner transport copies what it queues
}

// ---- the read path ----------------------------------------------------------

void TlsTransport::take(const uint8_t* data, size_t len) {
  std::span<const uint8_t> in(data, len);
  if (backlog_.empty()) in = in.subspan(engine_.feed_ciphertext(in));
  // Bounded: the inner read is stopped at the end of process() while anything
  // waits, so at most the rest of this one read lands here.
  backlog_.insert(backlog_.end(), in.begin(), in.end());
}

void TlsTransport::process() {
  if (delivering_ || closing_ || !inner_) return;
  delivering_ = true;
  bool stuck = false;
  while (!closing_) {
    // Report the handshake before the first plaintext (a client-role sink must
    // hear on_connect before on_read).
    if (engine_.handshake_done() && !handshake_seen_) {
      handshake_completed();
      continue;
    }
    if (engine_.failed()) break;
    if (handshake_seen_) {
      if (!want_read_) {
        held_ = true;  // records stay encrypted in the engine until start_read()
        break;
      }
      size_t m = engine_.read_plaintext(std::span<uint8_t>(t_plain, kPlainSize));
      if (engine_.failed()) break;
      if (m > 0) {
        sink_->on_read(this, t_plain, m);
        continue;
      }
    }
    held_ = false;
    if (backlog_.empty()) break;
    size_t k = engine_.feed_ciphertext(backlog_);
    if (k == 0) {  // the engine took nothing and gave nothing: it cannot progress
      stuck = true;
      break;
    }
    backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<std::ptrdiff_t>(k));
  }
  delivering_ = false;
  if (closing_ || !inner_) return;
  if (engine_.failed()) return failed();
  if (stuck) {
    sink_->on_error(this, UV_ENOBUFS);
    return;
  }
  if (int r = flush(); r != 0) {  // handshake messages, alerts, tickets
    sink_->on_error(this, r);
    return;
  }
  if (held_ || !backlog_.empty() || (handshake_seen_ && !want_read_)) {
    inner_->stop_read();  // nothing more until the user reads again
    return;
  }
  if (engine_.peer_closed() || inner_eof_) {
    // close_notify (a clean end) or a TCP EOF without it (a truncation; MQTT
    // frames itself, so the user treats it as an ordinary end of stream).
    if (!eof_reported_) {
      eof_reported_ = true;
      inner_->stop_read();
      if (!engine_.handshake_done()) count_failure(TlsFail::Closed);
      sink_->on_eof(this);
    }
    return;
  }
  if (engine_.role() == tls::Role::Server || tcp_up_) inner_->start_read();
}

void TlsTransport::on_read(Transport*, const uint8_t* data, size_t len) {
  if (closing_) return;
  got_bytes_ = true;
  take(data, len);
  process();
}

void TlsTransport::handshake_completed() {
  handshake_seen_ = true;
  if (engine_.role() == tls::Role::Server) {
    if (observer_)
      observer_->on_tls_handshake(engine_, static_cast<double>(uv_hrtime() - started_ns_) / 1e9);
    return;
  }
  connected_ = true;
  sink_->on_connect(this, 0);
}

void TlsTransport::failed() {
  flush();  // the alert for the peer, if any
  if (engine_.role() == tls::Role::Server) {
    if (!handshake_seen_) count_failure(classify_tls_error(engine_.error()));
    sink_->on_error(this, kTlsFailed);
    return;
  }
  if (!connected_) {
    sink_->on_connect(this, kTlsFailed);
    return;
  }
  sink_->on_error(this, kTlsFailed);
}

// ---- inner transport events ---------------------------------------------------

void TlsTransport::on_eof(Transport*) {
  if (closing_ || eof_reported_) return;
  if (engine_.role() == tls::Role::Client && !connected_) {
    sink_->on_connect(this, UV_EOF);
    return;
  }
  inner_eof_ = true;
  process();  // reported once every held byte is out
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
  if (status == 0) status = begin_handshake();
  if (status != 0) sink_->on_connect(this, status);
}

int TlsTransport::begin_handshake() {
  if (closing_ || !inner_ || engine_.role() != tls::Role::Client || tcp_up_) return UV_EINVAL;
  tcp_up_ = true;
  // [HAProxy send-proxy + ssl] the PROXY header precedes the TLS handshake, in plaintext.
  if (!preamble_.empty()) {
    int r = inner_->write(preamble_.data(), preamble_.size());
    std::vector<uint8_t>().swap(preamble_);
    if (r != 0) return r;
  }
  inner_->start_read();
  return flush();  // the ClientHello
}

void TlsTransport::on_drained(Transport*) {
  if (!closing_) sink_->on_drained(this);
}

void TlsTransport::on_shutdown(Transport*) {
  if (!closing_) sink_->on_shutdown(this);
}

void TlsTransport::on_closed(Transport* t) {
  delete t;
  inner_ = nullptr;
  closing_ = true;
  sink_->on_closed(this);  // last action: the sink may delete this
}

}  // namespace net
