#include "lb/session.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "lb/log.hpp"
#include "lb/server.hpp"
#include "lb/tls_transport.hpp"
#include "lb/worker.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/connect.hpp"
#include "proxy/proxy_protocol.hpp"

namespace lb {

namespace {

constexpr uint64_t kLingerMs = 2000;  // after a refusal CONNACK: let the client read it

// Per-connection warnings, at most one line per second each (all workers).
LogLimiter g_no_backend_log(1000);
LogLimiter g_connect_fail_log(1000);

std::string ip_string(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET)
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&ss), buf, sizeof buf);
  return buf;
}

// A CONNACK refusal with session present 0 [MQTT-3.2.2-4/6]: a 3.x return
// code, or a 5.0 reason code with no properties.
std::vector<uint8_t> refusal_connack(bool v5, uint8_t code) {
  mqtt::Connack c;
  c.code = code;
  std::vector<uint8_t> out;
  mqtt::encode_connack(c, v5 ? mqtt::Version::V5 : mqtt::Version::V311, out);
  return out;
}

}  // namespace

Session::Session(Worker& w, uint64_t id) : w_(w), id_(id) {}

Session::~Session() {
  release_backend();
  Server& srv = w_.server();
  if (registered_) srv.unregister_client(client_id_, id_);
  if (admitted_) {
    srv.release(peer_ip_);
    srv.metrics().connections_active->Decrement();
  }
}

void Session::start(uv_stream_t* server, const ListenerCtx& listener) {
  Server& srv = w_.server();
  TcpTransport* tcp = nullptr;
  std::shared_ptr<tls::Context> tls_ctx;
  if (listener.tls) {
    auto snap = srv.snapshot();
    if (listener.index < snap->listener_tls.size()) tls_ctx = snap->listener_tls[listener.index];
  }
  if (tls_ctx) {
    // The engine takes its own reference on the SSL_CTX: a reload may replace
    // the listener's Context while this connection runs.
    client_tls_ = new TlsTransport(w_.loop(), w_.slab(), this, *tls_ctx, tls::Role::Server, {},
                                   &listener.tls_metrics);
    client_ = client_tls_;
    tcp = client_tls_->tcp();
  } else {
    tcp = new TcpTransport(w_.loop(), w_.slab(), this);
    client_ = tcp;
  }
  ++open_handles_;
  uv_timer_init(w_.loop(), &timer_);
  timer_.data = this;
  ++open_handles_;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(tcp->tcp())) != 0) {
    close(CloseReason::Error);
    return;
  }
  listener.accepted->Increment();
  accepted_at_ns_ = uv_hrtime();
  int len = sizeof peer_;
  uv_tcp_getpeername(tcp->tcp(), reinterpret_cast<sockaddr*>(&peer_), &len);
  len = sizeof local_;
  uv_tcp_getsockname(tcp->tcp(), reinterpret_cast<sockaddr*>(&local_), &len);
  peer_ip_ = ip_string(peer_);
  if (client_tls_) client_tls_->set_label("listener " + listener.name + ", peer " + peer_ip_);

  if (!w_.accepting() || srv.stopping()) {
    reject(Reject::ShuttingDown);
    return;
  }
  if (auto why = srv.admit(peer_ip_)) {
    reject(*why);
    return;
  }
  admitted_ = true;
  srv.metrics().connections_active->Increment();
  snap_ = srv.snapshot();
  uv_tcp_nodelay(tcp->tcp(), 1);
  arm_timer(snap_->cfg.limits.connect_timeout_ms);
  client_->start_read();
}

bool Session::forwarding_to(const std::string& backend) const {
  return (phase_ == Phase::Forwarding || phase_ == Phase::Connecting) && backend_state_ &&
         backend_state_->name == backend;
}

void Session::reject(Reject why) {
  w_.server().metrics().rejected(why).Increment();
  logf(LogLevel::Debug, "reject session=%llu peer=%s reason=%d",
       static_cast<unsigned long long>(id_), peer_ip_.c_str(), static_cast<int>(why));
  close(CloseReason::Error);
}

void Session::reject_connect(mqtt::ConnectError e) {
  w_.server().metrics().bad_connect(e).Increment();
  logf(LogLevel::Debug, "reject session=%llu peer=%s bad first packet: %s",
       static_cast<unsigned long long>(id_), peer_ip_.c_str(), reject_label(e));
  close(CloseReason::Error);
}

void Session::arm_timer(uint64_t ms) {
  if (phase_ == Phase::Closing) return;
  uv_timer_start(&timer_, timer_cb, ms, 0);
}

void Session::timer_cb(uv_timer_t* t) {
  auto* s = static_cast<Session*>(t->data);
  switch (s->phase_) {
    case Phase::Peek:
      // The TLS handshake counts against connect_timeout_ms too.
      if (s->client_tls_ && !s->client_tls_->handshake_done())
        s->client_tls_->count_failure(TlsFail::Timeout);
      s->reject(Reject::ConnectTimeout);
      return;
    case Phase::Connecting: {
      // Backend connect timeout: give up on this attempt, try the next best.
      if (s->backend_state_) {
        s->backend_state_->metrics.connect_failures->Increment();
        uint64_t skipped = 0;
        if (g_connect_fail_log.allow(steady_ms(), skipped))
          logf(LogLevel::Warn, "backend %s: connect timed out (%llu similar lines suppressed)",
               s->backend_state_->name.c_str(), static_cast<unsigned long long>(skipped));
      }
      if (s->backend_) s->backend_->close(true);
      s->backend_ = nullptr;
      s->release_backend();
      s->try_next_backend();
      return;
    }
    case Phase::Forwarding: {
      uint64_t now = uv_now(s->w_.loop());
      uint64_t quiet = now - s->last_activity_ms_;
      if (quiet >= s->idle_ms_) {
        s->close(CloseReason::IdleTimeout);
      } else {
        s->arm_timer(s->idle_ms_ - quiet);
      }
      return;
    }
    case Phase::Linger:
      s->close(CloseReason::Client);
      return;
    case Phase::Closing:
      return;
  }
}

void Session::on_read(Transport* t, const uint8_t* data, size_t len) {
  if (t == client_) {
    switch (phase_) {
      case Phase::Peek: {
        inbuf_.insert(inbuf_.end(), data, data + len);
        const uint32_t max = snap_->cfg.limits.max_connect_bytes;
        mqtt::ConnectResult r = mqtt::parse_connect(inbuf_, max);
        if (r.status == mqtt::ParseStatus::NeedMore) {
          // The parser caps the packet; this only guards a parser that would not.
          if (inbuf_.size() > max + Slab::kSize) reject_connect(mqtt::ConnectError::TooLarge);
          return;
        }
        if (r.status == mqtt::ParseStatus::Error) {
          if (r.error == mqtt::ConnectError::UnsupportedLevel) {
            // [MQTT-3.1.2-2] 3.1.1: CONNACK 0x01 then close; 5.0: reason 0x84.
            w_.server().metrics().rejected(Reject::UnsupportedLevel).Increment();
            bool v5 = r.info.protocol_level >= 5;
            refuse_and_linger(refusal_connack(
                v5, v5 ? static_cast<uint8_t>(mqtt::Reason::UnsupportedProtocolVersion)
                       : static_cast<uint8_t>(mqtt::ConnackCode3::UnacceptableProtocolVersion)));
            return;
          }
          reject_connect(r.error);
          return;
        }
        client_->stop_read();
        client_id_ = std::move(r.info.client_id);
        version_ = r.info.version;
        const auto& lim = snap_->cfg.limits;
        idle_ms_ = r.info.keep_alive == 0 ? uint64_t{lim.keepalive0_idle_cap_s} * 1000
                                          : uint64_t{r.info.keep_alive} * 1500 + lim.idle_grace_ms;
        w_.server().metrics().peek_seconds->Observe(
            static_cast<double>(uv_hrtime() - accepted_at_ns_) / 1e9);
        phase_ = Phase::Connecting;
        tried_.assign(snap_->backends.size(), false);
        try_next_backend();
        return;
      }
      case Phase::Forwarding:
        forward(client_, backend_, data, len);
        return;
      default:
        return;  // Linger: discard
    }
  }
  if (t == backend_ && phase_ == Phase::Forwarding) {
    if (backend_tls_ && !backend_session_kept_) {
      // The broker's first bytes (CONNACK) come after its TLS 1.3 ticket.
      backend_session_kept_ = true;
      tls::Session s = static_cast<TlsTransport*>(backend_)->session();
      if (s.resumable()) {
        std::lock_guard<std::mutex> g(backend_state_->tls_mu);
        backend_state_->tls_session = std::move(s);
      }
    }
    b2c_scan_.feed(std::span<const uint8_t>(data, len));
    forward(backend_, client_, data, len);
  }
}

void Session::forward(Transport* from, Transport* to, const uint8_t* data, size_t len) {
  last_activity_ms_ = uv_now(w_.loop());
  Metrics& m = w_.server().metrics();
  (from == client_ ? m.bytes_c2b : m.bytes_b2c)->Increment(static_cast<double>(len));
  if (to->write(data, len) != 0) {
    close(from == client_ ? CloseReason::Backend : CloseReason::Client, true);
    return;
  }
  if (to->pending() > kHighWater) {
    from->stop_read();
    (from == client_ ? client_paused_ : backend_paused_) = true;
  }
}

void Session::on_drained(Transport* t) {
  if (phase_ != Phase::Forwarding) return;
  if (t == backend_ && client_paused_) {
    client_paused_ = false;
    if (!client_eof_) client_->start_read();
  } else if (t == client_ && backend_paused_) {
    backend_paused_ = false;
    if (!backend_eof_) backend_->start_read();
  }
}

void Session::on_eof(Transport* t) {
  if (t == client_) {
    if (phase_ == Phase::Peek) return reject(Reject::ClientClosed);
    if (phase_ == Phase::Linger) return close(CloseReason::Client);
    if (phase_ != Phase::Forwarding) return;
    client_eof_ = true;
    if (!backend_eof_) close_reason_ = CloseReason::Client;
    backend_->shutdown();  // half-close propagates after the queued bytes
    maybe_finish();
    return;
  }
  if (t == backend_ && phase_ == Phase::Forwarding) {
    backend_eof_ = true;
    if (!client_eof_) close_reason_ = CloseReason::Backend;
    client_->shutdown();
    maybe_finish();
  }
}

void Session::on_shutdown(Transport* t) {
  if (t == client_) client_shut_ = true;
  if (t == backend_) backend_shut_ = true;
  maybe_finish();
}

void Session::maybe_finish() {
  if (phase_ == Phase::Forwarding && client_eof_ && backend_eof_ && client_shut_ && backend_shut_)
    close(close_reason_);
}

void Session::on_error(Transport* t, int err) {
  if (t == client_) {
    if (phase_ == Phase::Peek)
      return reject(client_tls_ && err == TlsTransport::kTlsFailed ? Reject::TlsHandshake
                                                                   : Reject::ClientClosed);
    if (phase_ == Phase::Forwarding) {
      logf(LogLevel::Debug, "session=%llu client error: %s", static_cast<unsigned long long>(id_),
           uv_strerror(err));
      return close(CloseReason::Client, true);  // propagate the reset to the broker
    }
    return close(CloseReason::Client);
  }
  if (t == backend_ && phase_ == Phase::Forwarding) {
    logf(LogLevel::Debug, "session=%llu backend error: %s", static_cast<unsigned long long>(id_),
         uv_strerror(err));
    close(CloseReason::Backend, true);
  }
}

void Session::release_backend() {
  if (!backend_counted_) return;
  backend_counted_ = false;
  backend_state_->active.fetch_sub(1, std::memory_order_relaxed);
  backend_state_->metrics.active->Decrement();
}

void Session::try_next_backend() {
  Server& srv = w_.server();
  const Snapshot& snap = *snap_;
  const bool v5 = version_ == mqtt::Version::V5;
  if (static_cast<uint32_t>(attempts_) > snap.cfg.balance.retries) {
    srv.metrics().rejected(Reject::NoBackend).Increment();
    return refuse_and_linger(
        refusal_connack(v5, v5 ? static_cast<uint8_t>(mqtt::Reason::ServerUnavailable)
                               : static_cast<uint8_t>(mqtt::ConnackCode3::ServerUnavailable)));
  }
  const int64_t now = steady_ms();
  std::vector<Candidate> cands(snap.backends.size());
  for (size_t i = 0; i < snap.backends.size(); ++i) {
    const auto& b = snap.backends[i];
    cands[i].name = b.cfg.name;
    cands[i].weight = b.cfg.weight * b.state->status->weight_factor(now);
    cands[i].active = b.state->active.load(std::memory_order_relaxed);
    cands[i].eligible = !tried_[i] && b.state->status->accepts_new();
  }
  int choice = -1;
  const bool use_affinity =
      snap.cfg.balance.affinity == conf::Affinity::ClientId && !client_id_.empty();
  if (use_affinity && attempts_ == 0) {
    if (auto last = srv.affinity().get(client_id_, now)) {
      for (size_t i = 0; i < cands.size(); ++i)
        if (cands[i].eligible && cands[i].name == *last) choice = static_cast<int>(i);
    }
  }
  if (choice < 0) {
    // Empty client id: no affinity; the session id spreads consistent-hash keys.
    std::string key = client_id_.empty() ? std::to_string(id_) : client_id_;
    choice = snap.balancer->pick(cands, key);
  }
  if (choice < 0) {
    srv.metrics().rejected(Reject::NoBackend).Increment();
    uint64_t skipped = 0;
    if (g_no_backend_log.allow(now, skipped))
      logf(LogLevel::Warn,
           "no healthy backend for client id \"%s\" (attempt %d); CONNACK refusal sent "
           "(%llu similar lines suppressed)",
           client_id_.c_str(), attempts_ + 1, static_cast<unsigned long long>(skipped));
    return refuse_and_linger(
        refusal_connack(v5, v5 ? static_cast<uint8_t>(mqtt::Reason::ServerUnavailable)
                               : static_cast<uint8_t>(mqtt::ConnackCode3::ServerUnavailable)));
  }
  tried_[choice] = true;
  ++attempts_;
  const RuntimeBackend& rb = snap.backends[choice];
  backend_state_ = rb.state;
  backend_state_->active.fetch_add(1, std::memory_order_relaxed);
  backend_state_->metrics.active->Increment();
  backend_counted_ = true;
  proxy_ = rb.cfg.proxy_protocol;

  sockaddr_storage addr{};
  int r = uv_ip4_addr(rb.cfg.address.host.c_str(), rb.cfg.address.port,
                      reinterpret_cast<sockaddr_in*>(&addr));
  if (r != 0)
    r = uv_ip6_addr(rb.cfg.address.host.c_str(), rb.cfg.address.port,
                    reinterpret_cast<sockaddr_in6*>(&addr));
  backend_tls_ = rb.cfg.tls.has_value();
  if (backend_tls_ && !rb.tls_ctx) {
    // The snapshot could not build the backend's TLS context (logged then):
    // never fall back to plaintext. Same path as a refused connect.
    backend_ = new TcpTransport(w_.loop(), w_.slab(), this);
    ++open_handles_;
    on_connect(backend_, UV_EINVAL);
    return;
  }
  if (backend_tls_) {
    // SNI (and the name verified): tls.sni, else the address host.
    const std::string& sni = rb.cfg.tls->sni.empty() ? rb.cfg.address.host : rb.cfg.tls->sni;
    auto* t =
        new TlsTransport(w_.loop(), w_.slab(), this, *rb.tls_ctx, tls::Role::Client, sni, nullptr);
    t->set_label("backend " + rb.cfg.name);
    {
      std::lock_guard<std::mutex> g(backend_state_->tls_mu);
      if (backend_state_->tls_session.resumable()) t->set_session(backend_state_->tls_session);
    }
    uv_tcp_nodelay(t->tcp()->tcp(), 1);  // applied when the socket is created
    // The PROXY header goes first, in plaintext on TCP, before the handshake.
    std::vector<uint8_t> preamble;
    if (proxy_ == conf::ProxyProtocol::V1) proxy::append_v1(preamble, peer_, local_);
    if (proxy_ == conf::ProxyProtocol::V2) proxy::append_v2(preamble, peer_, local_);
    backend_ = t;
    ++open_handles_;
    if (r == 0) r = t->connect(reinterpret_cast<const sockaddr*>(&addr), std::move(preamble));
  } else {
    auto* t = new TcpTransport(w_.loop(), w_.slab(), this);
    uv_tcp_nodelay(t->tcp(), 1);  // applied when the socket is created
    backend_ = t;
    ++open_handles_;
    if (r == 0) r = t->connect(reinterpret_cast<const sockaddr*>(&addr));
  }
  if (r != 0) {
    // Synchronous failure (e.g. out of descriptors): same path as a refused connect,
    // bounded by the attempt count.
    on_connect(backend_, r);
    return;
  }
  arm_timer(snap.cfg.balance.backend_connect_timeout_ms);
}

void Session::on_connect(Transport* t, int status) {
  if (t != backend_ || phase_ != Phase::Connecting) return;
  if (status != 0) {
    backend_state_->metrics.connect_failures->Increment();
    uint64_t skipped = 0;
    if (g_connect_fail_log.allow(steady_ms(), skipped)) {
      std::string detail = backend_->error_detail();
      if (backend_tls_ && status == UV_EINVAL && detail.empty()) detail = "no TLS context";
      logf(LogLevel::Warn, "backend %s: connect failed: %s (%llu similar lines suppressed)",
           backend_state_->name.c_str(), detail.empty() ? uv_strerror(status) : detail.c_str(),
           static_cast<unsigned long long>(skipped));
    }
    backend_->close(false);
    backend_ = nullptr;
    release_backend();
    try_next_backend();
    return;
  }
  on_connect_complete();
}

void Session::on_connect_complete() {
  Server& srv = w_.server();
  uv_timer_stop(&timer_);
  phase_ = Phase::Forwarding;

  // PROXY header (if any), then the client's original bytes exactly: the
  // CONNECT and anything pipelined after it. Never re-encoded.
  // (With backend TLS the PROXY header already went out before the handshake.)
  std::vector<uint8_t> out;
  if (!backend_tls_ && proxy_ == conf::ProxyProtocol::V1) proxy::append_v1(out, peer_, local_);
  if (!backend_tls_ && proxy_ == conf::ProxyProtocol::V2) proxy::append_v2(out, peer_, local_);
  out.insert(out.end(), inbuf_.begin(), inbuf_.end());
  std::vector<uint8_t>().swap(inbuf_);  // an idle session owns no buffer
  srv.metrics().bytes_c2b->Increment(static_cast<double>(out.size()));
  if (backend_->write(out.data(), out.size()) != 0) {
    close(CloseReason::Backend, true);
    return;
  }
  backend_state_->metrics.sessions->Increment();
  const bool use_affinity =
      snap_->cfg.balance.affinity == conf::Affinity::ClientId && !client_id_.empty();
  if (use_affinity) srv.affinity().put(client_id_, backend_state_->name, steady_ms());
  if (!client_id_.empty()) {
    auto older = srv.register_client(client_id_, {w_.index(), id_, backend_state_->name});
    registered_ = true;
    if (older) {
      // Fleet-wide takeover: the broker would close the older session itself if
      // both were on one node; across nodes only the balancer can.
      srv.metrics().takeovers->Increment();
      logf(LogLevel::Info,
           "takeover: client id \"%s\" moved from %s to %s; closing the older session",
           client_id_.c_str(), older->backend.c_str(), backend_state_->name.c_str());
      srv.close_session(*older, CloseReason::Takeover);
    }
  }
  logf(LogLevel::Debug, "session=%llu peer=%s client_id=\"%s\" backend=%s",
       static_cast<unsigned long long>(id_), peer_ip_.c_str(), client_id_.c_str(),
       backend_state_->name.c_str());
  snap_.reset();
  std::vector<bool>().swap(tried_);
  last_activity_ms_ = uv_now(w_.loop());
  arm_timer(idle_ms_);
  client_->start_read();
  backend_->start_read();
}

void Session::refuse_and_linger(const std::vector<uint8_t>& connack) {
  phase_ = Phase::Linger;
  std::vector<uint8_t>().swap(inbuf_);
  if (client_->write(connack.data(), connack.size()) != 0) return close(CloseReason::Error);
  client_->shutdown();
  // Keep reading (and discarding) so unread client bytes do not turn our close
  // into a reset that could destroy the CONNACK in flight.
  client_->start_read();
  arm_timer(kLingerMs);
}

void Session::close(CloseReason why, bool reset) {
  if (phase_ == Phase::Closing) return;
  if (phase_ == Phase::Forwarding) w_.server().metrics().closed(why).Increment();
  phase_ = Phase::Closing;
  close_reason_ = why;
  if (!timer_closed_) {
    timer_closed_ = true;
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), timer_close_cb);
  }
  if (client_) client_->close(reset);
  if (backend_) backend_->close(reset);
  release_backend();
  snap_.reset();
}

void Session::timer_close_cb(uv_handle_t* h) {
  static_cast<Session*>(h->data)->handle_closed();
}

void Session::on_closed(Transport* t) {
  if (t == client_) {
    client_ = nullptr;
    client_tls_ = nullptr;
  }
  if (t == backend_) backend_ = nullptr;
  delete t;  // after its last callback (TransportSink::on_closed contract)
  handle_closed();
}

// Last statement of every close path: may destroy *this.
void Session::handle_closed() {
  --open_handles_;
  if (open_handles_ == 0 && phase_ == Phase::Closing) w_.destroy(id_);
}

}  // namespace lb
