#include "health/checker.hpp"

#include <netdb.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "mqtt/codec.hpp"
#include "mqtt/frame.hpp"
#include "net/address.hpp"
#include "net/tls_transport.hpp"
#include "proxy/proxy_protocol.hpp"
#include "tls/context.hpp"

namespace health {

namespace {

// A check exchanges a handful of tiny packets; anything bigger than this in
// the receive buffer is garbage (bounded buffer, never grows past it).
constexpr size_t kMaxBuffered = 64 * 1024;

std::string ms_str(double seconds) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f ms", seconds * 1000.0);
  return b;
}

}  // namespace

Checker* Checker::create(uv_loop_t* loop, net::Slab* slab, const conf::Backend& backend,
                         const conf::Health& hc, std::string client_id, ResultFn on_result) {
  return new Checker(loop, slab, backend, hc, std::move(client_id), std::move(on_result));
}

Checker::Checker(uv_loop_t* loop, net::Slab* slab, const conf::Backend& backend,
                 const conf::Health& hc, std::string client_id, ResultFn on_result)
    : loop_(loop),
      slab_(slab),
      backend_(backend),
      hc_(hc),
      client_id_(std::move(client_id)),
      on_result_(std::move(on_result)) {
  uv_timer_init(loop_, &tick_);
  uv_timer_init(loop_, &deadline_);
  tick_.data = this;
  deadline_.data = this;
  open_handles_ = 2;
}

Checker::~Checker() = default;

void Checker::release() {
  if (--open_handles_ == 0) delete this;
}

void Checker::on_handle_closed(uv_handle_t* h) {
  static_cast<Checker*>(h->data)->release();
}

void Checker::on_closed(net::Transport* t) {
  delete t;  // a TlsTransport has deleted its TcpTransport already
  release();
}

void Checker::close() {
  if (closing_) return;
  closing_ = true;
  running_ = false;
  in_check_ = false;
  drop_conn();
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), on_handle_closed);
}

void Checker::start() {
  if (closing_ || running_) return;
  running_ = true;
  uv_timer_start(
      &tick_, [](uv_timer_t* t) { static_cast<Checker*>(t->data)->run_check(); }, 0, 0);
}

void Checker::pause() {
  if (closing_) return;
  running_ = false;
  in_check_ = false;
  uv_timer_stop(&tick_);
  uv_timer_stop(&deadline_);
  drop_conn();
}

bool Checker::resolve() {
  if (resolved_) return true;
  const std::string& host = backend_.address.host;
  if (net::to_sockaddr(host, backend_.address.port, addr_)) {
    resolved_ = true;
    return true;
  }
  // A host name: resolved on the health thread (never a data-plane thread);
  // retried at each check until it succeeds.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return false;
  std::memset(&addr_, 0, sizeof addr_);
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (addr_.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&addr_)->sin_port = htons(backend_.address.port);
  else
    reinterpret_cast<sockaddr_in6*>(&addr_)->sin6_port = htons(backend_.address.port);
  resolved_ = true;
  return true;
}

void Checker::schedule_next() {
  if (!running_ || closing_) return;
  uint64_t elapsed_ms = (uv_hrtime() - check_start_ns_) / 1'000'000;
  uint64_t delay = hc_.interval_ms > elapsed_ms ? hc_.interval_ms - elapsed_ms : 0;
  uv_timer_start(
      &tick_, [](uv_timer_t* t) { static_cast<Checker*>(t->data)->run_check(); }, delay, 0);
}

void Checker::arm_deadline() {
  uv_timer_start(
      &deadline_, [](uv_timer_t* t) { static_cast<Checker*>(t->data)->on_deadline(); },
      hc_.timeout_ms, 0);
}

void Checker::reload_tls() {
  if (!backend_.tls) return;
  tls_ctx_.reset();  // engines in use keep their own reference on the SSL_CTX
  tls_stale_ = true;
}

void Checker::run_check() {
  if (!running_ || closing_ || in_check_) return;
  in_check_ = true;
  check_start_ns_ = uv_hrtime();
  if (tls_stale_) {
    tls_stale_ = false;
    drop_conn();  // verified with the old files: check again with the new ones
  }
  if (conn_ != nullptr && phase_ == Phase::Kept) {
    new_session_ = false;
    phase_ = Phase::AwaitPingresp;
    arm_deadline();
    send_pingreq();
    return;
  }
  drop_conn();
  new_session_ = true;
  new_connection();
}

void Checker::new_connection() {
  if (!resolve()) {
    finish(false, FailKind::Resolve, "cannot resolve " + backend_.address.host, false);
    return;
  }
  if (backend_.tls && !tls_ready()) return;
  tcp_ = new net::TcpTransport(loop_, slab_, this);
  ++open_handles_;  // until its on_closed
  conn_ = tcp_;
  phase_ = Phase::Connecting;
  arm_deadline();
  int rc = tcp_->connect(reinterpret_cast<const sockaddr*>(&addr_));
  if (rc != 0) finish(false, FailKind::Connect, std::string("connect: ") + uv_strerror(rc), false);
}

void Checker::on_connect(net::Transport* t, int status) {
  if (t != conn_) return;
  if (t == tcp_ && phase_ == Phase::Connecting) {
    if (status < 0) {
      finish(false, FailKind::Connect, std::string("connect: ") + uv_strerror(status), false);
      return;
    }
    on_tcp_connected();
    return;
  }
  if (t != tls_ || phase_ != Phase::AwaitConnack) return;
  // The TLS handshake ended.
  if (status == 0) {
    send_connect();
  } else if (status == net::TlsTransport::kTlsFailed) {
    finish(false, FailKind::Tls, "TLS: " + tls_->error_detail(), false);
  } else {
    on_error(t, status);  // closed or reset during the handshake
  }
}

void Checker::on_tcp_connected() {
  uv_tcp_nodelay(tcp_->tcp(), 1);
  phase_ = Phase::AwaitConnack;  // the deadline armed at connect covers TLS and CONNACK too
  std::vector<uint8_t> hdr;
  if (backend_.proxy_protocol != conf::ProxyProtocol::None) {
    // The checker speaks for itself: source = our socket, destination = the broker.
    sockaddr_storage src{}, dst{};
    int ls = sizeof src, ld = sizeof dst;
    uv_tcp_getsockname(tcp_->tcp(), reinterpret_cast<sockaddr*>(&src), &ls);
    uv_tcp_getpeername(tcp_->tcp(), reinterpret_cast<sockaddr*>(&dst), &ld);
    if (backend_.proxy_protocol == conf::ProxyProtocol::V1)
      proxy::append_v1(hdr, src, dst);
    else
      proxy::append_v2(hdr, src, dst);
  }
  if (!backend_.tls) {
    send(hdr);  // PROXY first
    conn_->start_read();
    send_connect();
    return;
  }
  // A reload since new_connection() dropped the context: this connection
  // uses the rebuilt one (or fails the check if the files are bad now).
  if (!tls_ready()) return;
  const std::string& sni = backend_.tls->sni.empty() ? backend_.address.host : backend_.tls->sni;
  tls_ = new net::TlsTransport(tcp_, this, *tls_ctx_, tls::Role::Client, sni);
  conn_ = tls_;  // owns tcp_ from here on; still counted once in open_handles_
  tls_->set_preamble(std::move(hdr));  // PROXY precedes the TLS handshake, in plaintext
  if (int rc = tls_->begin_handshake(); rc != 0) return on_error(tls_, rc);
  // After begin_handshake: reading first would send the ClientHello before the
  // preamble. CONNECT follows the handshake (on_connect).
  tls_->start_read();
}

void Checker::send_connect() {
  mqtt::ConnectInfo ci;
  bool v5 = hc_.protocol_level == 5;
  ci.version = v5 ? mqtt::Version::V5 : mqtt::Version::V311;
  ci.protocol_level = v5 ? 5 : 4;
  ci.clean_start = true;  // no session state left on the broker by checks
  // A broker drops a client silent for 1.5 x keep-alive [MQTT-3.1.2-24]: announce
  // at least 2 x interval so a kept session is never dropped between PINGREQs.
  uint64_t min_ka = (2 * uint64_t{hc_.interval_ms} + 999) / 1000;
  ci.keep_alive = static_cast<uint16_t>(
      std::min<uint64_t>(65'535, std::max<uint64_t>(hc_.keep_alive_s, min_ka)));
  ci.client_id = client_id_;
  ci.username = hc_.username;
  ci.password = hc_.password;
  std::vector<uint8_t> out;
  mqtt::encode_connect(ci, out);
  send(std::move(out));
}

void Checker::send_pingreq() {
  std::vector<uint8_t> out;
  mqtt::encode_pingreq(out);
  send(std::move(out));
}

bool Checker::tls_ready() {
  if (tls_ctx_) return true;
  std::string err;
  tls_ctx_ = tls::Context::client(tls::client_options(*backend_.tls), err);
  if (tls_ctx_) return true;
  finish(false, FailKind::Tls, "TLS client context: " + err, false);
  return false;
}

void Checker::send(const std::vector<uint8_t>& bytes) {
  if (conn_ != nullptr && !bytes.empty()) conn_->write(bytes.data(), bytes.size());
}

const char* Checker::phase_suffix() const {
  if (phase_ == Phase::AwaitConnack) return " before CONNACK";
  if (phase_ == Phase::AwaitPingresp) return " before PINGRESP";
  return "";
}

void Checker::on_read(net::Transport* t, const uint8_t* data, size_t len) {
  if (t != conn_) return;
  if (rbuf_.size() + len > kMaxBuffered) {
    finish(false, FailKind::Protocol, "broker sent more than 64 KiB without a packet end", false);
    return;
  }
  rbuf_.insert(rbuf_.end(), data, data + len);
  on_bytes();
}

void Checker::on_eof(net::Transport* t) {
  if (t != conn_) return;
  finish(false, FailKind::Closed, std::string("connection closed by the broker") + phase_suffix(),
         false);
}

void Checker::on_error(net::Transport* t, int err) {
  if (t != conn_) return;
  if (t == tls_ && err == net::TlsTransport::kTlsFailed) {
    finish(false, FailKind::Tls, "TLS: " + tls_->error_detail(), false);
    return;
  }
  if (err == UV_EOF) return on_eof(t);
  finish(false, FailKind::Closed,
         std::string("connection error: ") + uv_strerror(err) + phase_suffix(), false);
}

void Checker::on_bytes() {
  // Bounded: each pass consumes one packet from a buffer of <= kMaxBuffered bytes.
  // A verdict drops the connection (and rbuf_): the loop ends then.
  while (conn_ != nullptr && !rbuf_.empty()) {
    // Only a few packet types can legitimately arrive; judge the first byte at
    // once so garbage (an HTTP server, a TLS port) fails now, not at the timeout.
    uint8_t type = rbuf_[0] >> 4;
    bool expected = type == static_cast<uint8_t>(mqtt::PacketType::Disconnect) ||
                    (phase_ == Phase::AwaitConnack &&
                     type == static_cast<uint8_t>(mqtt::PacketType::Connack)) ||
                    (phase_ == Phase::AwaitPingresp &&
                     type == static_cast<uint8_t>(mqtt::PacketType::Pingresp));
    if (!expected) {
      char b[64];
      std::snprintf(b, sizeof b, "unexpected bytes from the broker (first byte 0x%02X)", rbuf_[0]);
      finish(false, FailKind::Protocol, b, false);
      return;
    }
    mqtt::FrameResult fr = mqtt::peek_frame(rbuf_);
    if (fr.status == mqtt::DecodeStatus::Malformed) {
      finish(false, FailKind::Protocol, "garbage from the broker (not an MQTT packet)", false);
      return;
    }
    if (fr.status == mqtt::DecodeStatus::NeedMore) return;
    size_t total = fr.header.total_length();
    if (total > kMaxBuffered) {
      finish(false, FailKind::Protocol, "oversized packet from the broker", false);
      return;
    }
    if (rbuf_.size() < total) return;
    std::vector<uint8_t> pkt(rbuf_.begin(), rbuf_.begin() + static_cast<ptrdiff_t>(total));
    rbuf_.erase(rbuf_.begin(), rbuf_.begin() + static_cast<ptrdiff_t>(total));
    on_packet(fr.header.first_byte, pkt.data() + fr.header.header_length,
              total - fr.header.header_length);
  }
}

void Checker::on_packet(uint8_t first_byte, const uint8_t* body, size_t len) {
  bool v5 = hc_.protocol_level == 5;
  mqtt::Version ver = v5 ? mqtt::Version::V5 : mqtt::Version::V311;
  std::span<const uint8_t> b(body, len);
  auto type = static_cast<mqtt::PacketType>(first_byte >> 4);

  if (type == mqtt::PacketType::Disconnect) {
    mqtt::Disconnect d;
    std::string what = "broker sent DISCONNECT";
    if (v5 && mqtt::decode_disconnect(first_byte, b, ver, d).ok) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02X", d.reason);
      what += std::string(" reason ") + code;
    }
    finish(false, FailKind::Closed, what, false);
    return;
  }

  switch (phase_) {
    case Phase::AwaitConnack: {
      if (type != mqtt::PacketType::Connack) {
        finish(false, FailKind::Protocol,
               "expected CONNACK, got packet type " + std::to_string(first_byte >> 4), false);
        return;
      }
      mqtt::Connack ack;
      mqtt::Result r = mqtt::decode_connack(first_byte, b, ver, ack);
      if (!r.ok) {
        finish(false, FailKind::Protocol, std::string("malformed CONNACK: ") + r.what, false);
        return;
      }
      switch (classify_connack(ack.code, v5)) {
        case ConnackVerdict::Accepted:
          // MQTT 5 Server Keep Alive overrides ours [MQTT-3.2.2-21]; if the
          // broker would drop a silent session before the next check, the
          // session is not kept (each check reconnects).
          session_keepable_ =
              !(ack.properties.server_keep_alive &&
                uint64_t{*ack.properties.server_keep_alive} * 1000 < 2 * uint64_t{hc_.interval_ms});
          send_pingreq();
          phase_ = Phase::AwaitPingresp;
          arm_deadline();
          return;
        case ConnackVerdict::LivenessRefusal:
          if (hc_.accept_refusal) {
            finish(true, FailKind::None,
                   "CONNACK refused " + connack_code_name(ack.code, v5) +
                       " (broker alive; counted as pass by accept_refusal)",
                   false);
          } else {
            finish(false, FailKind::Refused,
                   "CONNACK refused " + connack_code_name(ack.code, v5) +
                       " (broker alive but rejects the checker: fix health.username/password "
                       "or set health.accept_refusal)",
                   false);
          }
          return;
        case ConnackVerdict::Failure:
          finish(false, FailKind::Refused, "CONNACK refused " + connack_code_name(ack.code, v5),
                 false);
          return;
      }
      return;
    }
    case Phase::AwaitPingresp: {
      if (type != mqtt::PacketType::Pingresp || !mqtt::decode_empty(first_byte, b).ok) {
        finish(false, FailKind::Protocol,
               "expected PINGRESP, got packet type " + std::to_string(first_byte >> 4), false);
        return;
      }
      double secs = static_cast<double>(uv_hrtime() - check_start_ns_) / 1e9;
      if (hc_.mode == conf::CheckMode::Reconnect || !session_keepable_) {
        // Polite end of a one-shot check session: DISCONNECT (2 bytes, taken
        // by the socket at once when possible), then close (with TLS: the
        // close_notify follows the DISCONNECT).
        std::vector<uint8_t> out;
        mqtt::encode_disconnect(mqtt::Disconnect{}, ver, out);
        send(out);
        finish(true, FailKind::None, "CONNACK 0 + PINGRESP in " + ms_str(secs), false);
      } else {
        finish(true, FailKind::None,
               (new_session_ ? "CONNACK 0 + PINGRESP in " : "PINGRESP in ") + ms_str(secs), true);
      }
      return;
    }
    default:
      finish(false, FailKind::Protocol,
             "unexpected packet type " + std::to_string(first_byte >> 4) + " from the broker",
             false);
      return;
  }
}

void Checker::on_deadline() {
  std::string t = std::to_string(hc_.timeout_ms) + " ms";
  switch (phase_) {
    case Phase::Connecting:
      finish(false, FailKind::ConnectTimeout, "timeout: no TCP connection within " + t, false);
      return;
    case Phase::AwaitConnack:
      if (tls_ != nullptr && !tls_->handshake_done()) {
        finish(false, FailKind::Tls, "timeout: TLS handshake not done within " + t, false);
        return;
      }
      finish(false, FailKind::ConnackTimeout, "timeout: no CONNACK within " + t, false);
      return;
    case Phase::AwaitPingresp:
      finish(false, FailKind::PingTimeout, "timeout: no PINGRESP within " + t, false);
      return;
    default:
      return;
  }
}

void Checker::finish(bool pass, FailKind kind, std::string detail, bool keep_conn) {
  uv_timer_stop(&deadline_);
  bool scheduled = in_check_;
  in_check_ = false;
  if (keep_conn) {
    phase_ = Phase::Kept;
  } else {
    drop_conn();
  }
  CheckResult r;
  r.pass = pass;
  r.kind = pass ? FailKind::None : kind;
  r.detail = std::move(detail);
  r.scheduled = scheduled;
  r.seconds = scheduled ? static_cast<double>(uv_hrtime() - check_start_ns_) / 1e9 : 0.0;
  if (scheduled) schedule_next();
  if (on_result_ && !closing_) on_result_(r);
}

void Checker::drop_conn() {
  phase_ = Phase::Idle;
  rbuf_.clear();
  net::Transport* t = conn_;
  conn_ = nullptr;
  tcp_ = nullptr;
  tls_ = nullptr;
  // A closing transport reports nothing but on_closed, which frees it.
  if (t != nullptr) t->close(false);
}

}  // namespace health
