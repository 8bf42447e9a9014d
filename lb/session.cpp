#include "lb/session.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>

#include "lb/clock.hpp"
#include "lb/listener.hpp"
#include "lb/log.hpp"
#include "lb/refusal.hpp"
#include "lb/server.hpp"
#include "lb/worker.hpp"
#include "mqtt/codec.hpp"
#include "net/address.hpp"
#include "proxy/proxy_protocol.hpp"

namespace lb {

namespace {

constexpr uint64_t kLingerMs = 2000;      // after a refusal CONNACK: let the client read it
constexpr uint64_t kRefusePeekMs = 2000;  // reading the CONNECT of a client we will refuse

// Per-connection log lines: at most one per second each, all workers.
LogLimiter g_takeover_log(1000);
LogLimiter g_refuse_log(1000);
LogLimiter g_tls_fail_log(1000);
LogLimiter g_bug_log(1000);
LogLimiter g_flap_log(1000);

}  // namespace

Session::Session(Worker& w, uint64_t id) : w_(w), id_(id) {}

Session::~Session() {
  Server& srv = w_.server();
  if (listener_) w_.session_gone(listener_);
  if (registered_) srv.registry().remove(key_, id_);
  if (ip_counted_) srv.release_ip(peer_ip());
  if (admitted_) {
    srv.release_global();
    srv.metrics().connections_active->Decrement();
  }
}

// A client or broker socket: watched by the worker's epoll set
// (net/fd_transport.hpp: 56 bytes, no libuv handle), or by a libuv TCP handle
// when the worker has no set.
net::Transport* Session::new_socket_transport() {
  Server& srv = w_.server();
  if (net::PollSet* ps = w_.polls()) return new net::FdTransport(*ps, this);  // charges srv.budget()
  return new net::TcpTransport(w_.loop(), w_.slab(), this, &srv.budget());
}

int Session::socket_open(net::Transport* t, int fd) {
  if (w_.polls()) return static_cast<net::FdTransport*>(t)->open(fd);
  return static_cast<net::TcpTransport*>(t)->open(fd);
}

int Session::socket_connect(net::Transport* t, const sockaddr* addr) {
  if (w_.polls()) return static_cast<net::FdTransport*>(t)->connect(addr);
  return static_cast<net::TcpTransport*>(t)->connect(addr);
}

void Session::socket_nodelay(net::Transport* t) {
  if (w_.polls())
    static_cast<net::FdTransport*>(t)->set_nodelay(true);
  else
    uv_tcp_nodelay(static_cast<net::TcpTransport*>(t)->tcp(), 1);
}

void Session::start(int fd, const sockaddr_storage& peer, Listener& listener) {
  Server& srv = w_.server();
  su_ = std::make_unique<Setup>();
  net::Transport* tcp = new_socket_transport();
  ++open_handles_;
  client_ = tcp;
  if (socket_open(tcp, fd) != 0) {
    ::close(fd);  // not adopted by the transport
    close(CloseReason::Error);
    return;
  }
  su_->accepted_ns = uv_hrtime();
  listener_ = &listener;
  ++listener.sessions;  // the listener lives until its last session is gone
  peer_ = peer;
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  su_->local = local;
  su_->snap = srv.snapshot();
  if (listener.tls()) {
    std::shared_ptr<tls::Context> ctx;
    if (auto it = su_->snap->listener_tls.find(listener.name()); it != su_->snap->listener_tls.end())
      ctx = it->second;
    if (!ctx) {
      close(CloseReason::Error);  // no usable certificate (logged at load)
      return;
    }
    // The engine holds its own reference on the SSL_CTX: a reload may replace
    // the listener's Context while this connection runs.
    tls_metrics_ = &listener.tls_metrics();
    client_tls_ = new net::TlsTransport(tcp, this, *ctx, tls::Role::Server, {}, this);
    client_ = client_tls_;
  }
  // A websocket listener (read from this snapshot: a reload applies to new
  // connections without re-binding the listener).
  for (const auto& l : su_->snap->cfg.listeners)
    if (l.name == listener.name() && l.websocket) wrap_websocket(*l.websocket);

  // Admission, before anything costs more than this accept.
  if (!w_.accepting() || srv.stopping()) return reject(Reject::ShuttingDown);
  if (!srv.budget().has_room()) return reject(Reject::MemoryBudget);
  if (!srv.admit_global()) return reject(Reject::MaxConnections);
  admitted_ = true;
  srv.metrics().connections_active->Increment();
  switch (srv.admission().admit(peer, steady_ms())) {  // connect rate, before any TLS
    case Admission::Verdict::Admit:
      break;
    case Admission::Verdict::GlobalRate:
      if (listener.tls()) return reject(Reject::RateGlobal);
      su_->refuse_after_peek = Reject::RateGlobal;  // a CONNACK 0x9F/0x03 makes devices back off
      break;
    case Admission::Verdict::IpRate:
      if (listener.tls()) return reject(Reject::RatePerIp);
      su_->refuse_after_peek = Reject::RatePerIp;
      break;
  }
  if (srv.admit_ip(peer_ip())) {
    ip_counted_ = true;
  } else if (listener.tls()) {
    return reject(Reject::MaxConnectionsPerIp);  // the handshake is the expensive part
  } else if (su_->refuse_after_peek == Reject::Count) {
    su_->refuse_after_peek = Reject::MaxConnectionsPerIp;  // cheap to read: answer with a CONNACK
  }
  socket_nodelay(tcp);
  su_->peek = std::make_unique<PeekStage>(su_->snap->cfg.limits.max_connect_bytes, &srv.budget());
  uint64_t ms = su_->snap->cfg.limits.connect_timeout_ms;
  if (su_->refuse_after_peek != Reject::Count && ms > kRefusePeekMs) ms = kRefusePeekMs;
  arm_timer(ms);
  client_->start_read();
}

bool Session::matches(const std::string& backend, const std::string& listener) const {
  if (!listener.empty() && (!listener_ || listener_->name() != listener)) return false;
  if (backend.empty()) return listener.empty() ? placed() : true;
  return forwarding_to(backend);
}

bool Session::forwarding_to(const std::string& backend) const {
  // A session still placing there fails over by itself (CONNACK timeout).
  return phase_ == Phase::Pump && count_ && count_.get()->name == backend;
}

// ---- stages ------------------------------------------------------------------

void Session::on_peek_bytes(const uint8_t* data, size_t len) {
  PeekStage::Outcome o = su_->peek->feed(data, len);
  switch (o.kind) {
    case PeekStage::Kind::NeedMore:
      return;
    case PeekStage::Kind::Invalid:
      return reject_connect(o.error);
    case PeekStage::Kind::Drop:
      return reject(o.reject);
    case PeekStage::Kind::Refuse:
      version_ = su_->peek->info().version;
      return refuse(o.reject);
    case PeekStage::Kind::Connect:
      break;
  }
  // Not a byte more until placement is over: what the client sent after the
  // CONNECT is in the peek buffer, or still in the socket / TLS engine.
  client_->stop_read();
  disarm_timer();
  Server& srv = w_.server();
  su_->connect_done_ns = uv_hrtime();
  srv.metrics().peek_seconds->Observe(static_cast<double>(su_->connect_done_ns - su_->accepted_ns) / 1e9);
  su_->info = std::make_unique<mqtt::ConnectInfo>(std::move(su_->peek->info()));
  version_ = su_->info->version;
  client_max_packet_ = su_->info->properties.maximum_packet_size;
  keep_alive_ = su_->info->keep_alive;
  const conf::Limits& lim = su_->snap->cfg.limits;
  idle_ms_ = su_->info->keep_alive == 0 ? uint64_t{lim.keepalive0_idle_cap_s} * 1000
                                    : uint64_t{su_->info->keep_alive} * 1500 + lim.idle_grace_ms;
  Metrics& m = srv.metrics();
  m.connects_by_version[version_ == mqtt::Version::V5    ? 2
                        : version_ == mqtt::Version::V31 ? 0
                                                         : 1]
      ->Increment();
  m.connects_clean[su_->info->clean_start ? 1 : 0]->Increment();
  m.keep_alive_seconds->Observe(su_->info->keep_alive);
  if (su_->refuse_after_peek != Reject::Count) return refuse(su_->refuse_after_peek);
  if (srv.stopping()) return refuse(Reject::ShuttingDown);
  if (client_tls_) {
    su_->ctls = std::make_unique<ClientTls>();
    su_->ctls->ssl.version = client_tls_->engine().protocol();
    su_->ctls->ssl.cert_verified = client_tls_->engine().peer_verified();
    if (su_->ctls->ssl.cert_verified)
      su_->ctls->ssl.cn = client_tls_->engine().peer_identity(tls::Engine::IdentityFrom::Cn);
    if (!check_identity()) return refuse(Reject::IdentityMismatch);
  }
  // The flapping-client penalty box, keyed by who the device is: its
  // certificate's identity when the listener rewrites to it.
  const std::string& who = su_->ctls && !su_->ctls->identity.empty() ? su_->ctls->identity : su_->info->client_id;
  if (!who.empty()) {
    int64_t penalty_ms = 0;
    auto f = srv.admission().flapping(client_key(who), steady_ms(), penalty_ms);
    if (f == Admission::Flap::JustPenalized) {
      uint64_t skipped = 0;
      if (g_flap_log.allow(steady_ms(), skipped))
        logf(LogLevel::Warn,
             "client id \"%s\" reconnects too often: refused for %lld s (%llu similar lines "
             "suppressed)",
             log_escape(who).c_str(), static_cast<long long>(penalty_ms / 1000),
             static_cast<unsigned long long>(skipped));
    }
    if (f != Admission::Flap::Ok) return refuse(Reject::Flapping);
  }
  begin_place();
}

// Listener tls.identity: the device is who its certificate says. Sets
// su_->ctls->identity when the CONNECT must be rewritten to it.
bool Session::check_identity() {
  const conf::ListenerTls* lt = nullptr;
  for (const auto& l : su_->snap->cfg.listeners)
    if (listener_ && l.name == listener_->name() && l.tls) lt = &*l.tls;
  if (!lt || lt->identity_enforce == conf::ListenerTls::Enforce::Off) return true;
  auto from = lt->identity_from == conf::ListenerTls::IdentityFrom::SanDns
                  ? tls::Engine::IdentityFrom::SanDns
              : lt->identity_from == conf::ListenerTls::IdentityFrom::SanUri
                  ? tls::Engine::IdentityFrom::SanUri
                  : tls::Engine::IdentityFrom::Cn;
  std::string id = client_tls_->engine().peer_identity(from);
  // No verified certificate, no such field, or not an MQTT string: no identity.
  if (id.empty() || id.size() > 0xFFFF || !mqtt::valid_mqtt_utf8(id)) return false;
  su_->ctls->ssl.cn = id;  // PROXY v2 tells brokers the identity (PP2_SUBTYPE_SSL_CN), whichever field
  if (lt->identity_enforce == conf::ListenerTls::Enforce::Match) return id == su_->info->client_id;
  su_->ctls->identity = std::move(id);  // rewrite (in begin_place, where the bytes are)
  return true;
}

void Session::begin_place() {
  Server& srv = w_.server();
  PlaceRequest req;
  req.client_id = su_->info->client_id;
  if (!su_->info->client_id.empty()) {
    key_ = client_key(su_->info->client_id);
    has_key_ = true;
  }
  req.key = key_;
  req.session_id = id_;
  req.version = version_;
  req.auth_method = su_->info->properties.authentication_method.has_value();
  affinity_ = su_->snap->cfg.balance.affinity == conf::Affinity::ClientId;
  if (affinity_) req.affinity = &srv.affinity();
  req.peer = peer_;
  req.local = su_->local;
  req.bytes = su_->peek->take_bytes();
  if (su_->ctls && !su_->ctls->identity.empty() && su_->ctls->identity != su_->info->client_id) {
    // tls.identity "rewrite": the only place mqttlb re-encodes a CONNECT —
    // the client id replaced, lengths recomputed, every other byte as sent.
    std::vector<uint8_t> out = mqtt::rewrite_client_id(req.bytes, *su_->info, su_->ctls->identity);
    if (out.empty()) return refuse(Reject::IdentityMismatch);
    req.bytes.swap(out);
    su_->info->client_id = su_->ctls->identity;
    key_ = client_key(su_->ctls->identity);
    req.key = key_;
    req.client_id = su_->info->client_id;
    has_key_ = true;
  }
  if (su_->ctls) req.tls = su_->ctls->ssl;
  req.proxy_in_transport = ws_backend_;  // the WebSocket client sends it, before its request
  req.budget = &srv.budget();
  req.workers = srv.worker_count();
  int route = match_route(su_->snap->cfg.routes, su_->info->client_id, su_->info->username,
                          listener_ ? listener_->name() : "", peer_);
  req.pool = pool_for(su_->snap->routes, route);
  su_->peek.reset();
  phase_ = Phase::Place;
  PlaceHost& host = *this;
  su_->place = std::make_unique<PlaceStage>(host, su_->snap, std::move(req), id_ ^ uv_hrtime());
  su_->place->start();  // may end placement at once (placed / place_failed)
}

void Session::placed(Placement p) {
  su_->place.reset();  // PlaceStage::answered() returns right after this call
  backend_ = p.backend;
  count_ = std::move(p.count);
  Server& srv = w_.server();
  if (p.answer == Placement::Answer::Accepted) {
    accepted_by_broker();
    using A = Placement::Affinity;
    Metrics& m = srv.metrics();
    if (p.affinity == A::Hit) m.affinity_hit->Increment();
    if (p.affinity == A::Miss) m.affinity_miss->Increment();
    if (p.affinity == A::Replaced) m.affinity_moved->Increment();
  }
  if (p.answer == Placement::Answer::Refused)
    logf(LogLevel::Debug, "session=%llu backend %s refused the client: CONNACK 0x%02x",
         static_cast<unsigned long long>(id_), count_.get()->name.c_str(), p.code);
  if (p.rb && p.rb->cfg.tls) {
    // Offer this TLS session to the next connections to the broker (the
    // ticket came before its CONNACK).
    tls::Session s = static_cast<net::TlsTransport*>(backend_)->session();
    if (s.resumable()) {
      std::lock_guard<std::mutex> g(count_.get()->tls_mu);
      count_.get()->tls_session = std::move(s);
    }
  }
  // Counted once, for the broker that answered (a retried CONNECT is not counted again).
  srv.metrics().bytes_c2b->Increment(static_cast<double>(p.forwarded));
  srv.metrics().bytes_b2c->Increment(static_cast<double>(p.to_client.size()));
  if (client_->write(p.to_client.data(), p.to_client.size()) != 0)
    return close(CloseReason::Client, true);
  const conf::Forwarding fwd = su_->snap->cfg.forwarding;  // as placed: a reload changes new sessions
  su_.reset();  // the snapshot, the CONNECT's details, the TLS identity
  w_.note_churn();
  // Nothing more is read from the client's certificate: its TLS 1.3 records
  // may move to mqttlb and OpenSSL's state be freed (docs/tls.md).
  if (client_tls_) {
    client_tls_->allow_handover();
    const tls::Engine& e = client_tls_->engine();
    if (tls_metrics_)
      (e.handed_over() || e.handover_pending() ? tls_metrics_->records_mqttlb
                                               : tls_metrics_->records_openssl)
          ->Increment();
  }
  phase_ = Phase::Pump;
  PumpHost& host = *this;
  pump_ = std::make_unique<Pump>(host, client_, backend_, w_.pump_counters(), idle_ms_,
                                 p.answer == Placement::Answer::Authenticating);
  if (fwd != conf::Forwarding::Userspace) {
    // docs/forwarding.md: joined in the kernel once idle, when it can be.
    if (SpliceEngine* e = SpliceEngine::get(nullptr))
      pump_->use_kernel(e);
    else
      pump_->count_fallback(SpliceFallback::Unavailable);
  }
  pump_->start();
}

void Session::accepted_by_broker() {
  Server& srv = w_.server();
  BackendState& b = *count_.get();
  placed_ns_ = uv_hrtime();
  placed_wall_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  b.metrics.sessions->Increment();
  srv.metrics().place_seconds->Observe(static_cast<double>(uv_hrtime() - su_->connect_done_ns) / 1e9);
  if (!has_key_) return;
  if (affinity_) srv.affinity().put(key_, b.name_hash, steady_ms());
  // Other replicas learn of it through the shared store (written behind).
  if (AffinityStore* st = srv.store()) st->placed(key_, b.name_hash);
  auto older = srv.registry().add(key_, {w_.index(), id_, b.name_hash});
  registered_ = true;
  if (!older) return;
  // Fleet-wide takeover: the broker would close the older session itself if
  // both were on one node; across nodes only the balancer can.
  srv.metrics().takeovers->Increment();
  uint64_t skipped = 0;
  if (g_takeover_log.allow(steady_ms(), skipped))
    logf(LogLevel::Info,
         "takeover: client id \"%s\" connected to %s; closing its older session on another "
         "backend (%llu similar lines suppressed)",
         su_ && su_->info ? log_escape(su_->info->client_id).c_str() : "?", b.name.c_str(),
         static_cast<unsigned long long>(skipped));
  srv.close_session(*older, CloseReason::Takeover);
}

void Session::end(CloseReason why, uint8_t reason, const std::string& server_reference,
                  bool disconnect_broker) {
  if (phase_ == Phase::Closing) return;
  if (phase_ != Phase::Pump || !pump_) return close(why);
  std::vector<uint8_t> to_client, to_backend;
  if (version_ == mqtt::Version::V5) {
    mqtt::Disconnect d;
    d.reason = reason;
    if (!server_reference.empty()) d.properties.server_reference = server_reference;
    mqtt::encode_disconnect(d, mqtt::Version::V5, to_client);
    // [MQTT-3.14.2-?]: a packet over the client's Maximum Packet Size is not sent.
    if (client_max_packet_ && to_client.size() > *client_max_packet_) {
      to_client.clear();
      mqtt::Disconnect bare;
      bare.reason = reason;
      mqtt::encode_disconnect(bare, mqtt::Version::V5, to_client);
    }
  }
  if (disconnect_broker) mqtt::encode_disconnect(mqtt::Disconnect{}, version_, to_backend);
  pump_->finish_with(std::move(to_client), std::move(to_backend), why);
}

void Session::append_proxy_header(std::vector<uint8_t>& out, conf::ProxyProtocol pp) const {
  if (pp == conf::ProxyProtocol::V1) proxy::append_v1(out, peer_, su_->local);
  if (pp != conf::ProxyProtocol::V2) return;
  if (!su_->ctls || su_->ctls->ssl.version.empty())
    proxy::append_v2(out, peer_, su_->local);
  else
    proxy::append_v2(out, peer_, su_->local, su_->ctls->ssl);
}

std::optional<Session::Info> Session::info() const {
  if (phase_ != Phase::Pump || !count_) return std::nullopt;
  Info i;
  i.backend = count_.get()->name;
  i.listener = listener_ ? listener_->name() : "";
  i.peer = net::endpoint_string(peer_);
  if (client_tls_) {
    i.tls_version = client_tls_->engine().protocol();
    i.tls_subject = client_tls_->engine().peer_subject();
    i.tls_record_layer = client_tls_->engine().handed_over() ? "mqttlb" : "openssl";
  }
  i.connected_since_ms = placed_wall_ms_;
  i.protocol_level = version_ == mqtt::Version::V5 ? 5 : version_ == mqtt::Version::V31 ? 3 : 4;
  i.keep_alive = keep_alive_;
  i.forwarding = pump_ && pump_->in_kernel() ? "kernel" : "userspace";
  return i;
}

void Session::place_failed(Reject why) {
  su_->place.reset();  // the stage returns right after this call
  uint64_t skipped = 0;
  if (why == Reject::NoBackend && g_refuse_log.allow(steady_ms(), skipped))
    logf(LogLevel::Warn,
         "no backend answered for client id \"%s\"; CONNACK refusal sent (%llu similar lines "
         "suppressed)",
         su_ && su_->info ? log_escape(su_->info->client_id).c_str() : "",
         static_cast<unsigned long long>(skipped));
  refuse(why);
}

void Session::connack_seen(uint8_t code) {
  if (!count_) return;
  count_.get()->connacks->count(code);
  bool ok = version_ == mqtt::Version::V5 ? code < 0x80 : code == 0;
  if (ok) accepted_by_broker();
}

void Session::pump_done(CloseReason why, bool reset) {
  close(why, reset);
}

// ---- PlaceHost -----------------------------------------------------------------

net::Transport* Session::connect_backend(const RuntimeBackend& rb, int& err) {
  if (rb.cfg.tls && !rb.tls_ctx) {
    err = UV_EINVAL;  // the snapshot could not build its TLS context (logged then): never plaintext
    return nullptr;
  }
  sockaddr_storage addr{};
  // to_backend "websocket": the broker's WebSocket port on the same host.
  const uint16_t port = ws_backend_ ? rb.cfg.websocket_port : rb.cfg.address.port;
  if (!net::to_sockaddr(rb.cfg.address.host, port, addr)) {
    err = UV_EINVAL;
    return nullptr;
  }
  net::Transport* tcp = new_socket_transport();
  ++open_handles_;
  net::Transport* t = tcp;
  if (rb.cfg.tls) {
    // SNI (and the name verified): tls.sni, else the address host.
    const std::string& sni = rb.cfg.tls->sni.empty() ? rb.cfg.address.host : rb.cfg.tls->sni;
    auto* tls = new net::TlsTransport(tcp, this, *rb.tls_ctx, tls::Role::Client, sni, nullptr);
    {
      std::lock_guard<std::mutex> g(rb.state->tls_mu);
      if (rb.state->tls_session.resumable()) tls->set_session(rb.state->tls_session);
    }
    // The PROXY header goes first, in plaintext on TCP, before the handshake.
    std::vector<uint8_t> preamble;
    append_proxy_header(preamble, rb.cfg.proxy_protocol);
    tls->set_preamble(std::move(preamble));
    t = tls;
  }
  if (ws_backend_) t = wrap_backend_websocket(t, rb);
  socket_nodelay(tcp);  // applied when the socket is created
  int r = socket_connect(tcp, reinterpret_cast<const sockaddr*>(&addr));
  if (r != 0) {
    err = r;
    t->close(true);  // freed in on_closed
    return nullptr;
  }
  return t;
}

void Session::retire(net::Transport* t) {
  t->close(true);  // closing transports report nothing but on_closed
}

GateLane& Session::lane(BackendState& b) {
  return *b.lanes[static_cast<size_t>(w_.index()) % b.lanes.size()];
}

// ---- refusals ------------------------------------------------------------------

void Session::reject(Reject why) {
  w_.server().metrics().rejected(why).Increment();
  logf(LogLevel::Debug, "reject session=%llu peer=%s reason=%s",
       static_cast<unsigned long long>(id_), peer_ip().c_str(), to_string(why));
  close(CloseReason::Error);
}

void Session::reject_connect(mqtt::ConnectError e) {
  w_.server().metrics().bad_connect(e).Increment();
  logf(LogLevel::Debug, "reject session=%llu peer=%s bad first packet: %s",
       static_cast<unsigned long long>(id_), peer_ip().c_str(), reject_label(e));
  close(CloseReason::Error);
}

void Session::refuse(Reject why) {
  w_.server().metrics().rejected(why).Increment();
  phase_ = Phase::Linger;
  su_.reset();
  std::vector<uint8_t> connack = refusal_connack(version_, why, client_max_packet_);
  if (client_->write(connack.data(), connack.size()) != 0) return close(CloseReason::Error);
  client_->shutdown();
  arm_timer(kLingerMs);
  // Keep reading (and discarding) so unread client bytes do not turn our close
  // into a reset that could destroy the CONNACK in flight.
  client_->start_read();
}

// ---- TransportSink routing ---------------------------------------------------------

void Session::on_read(net::Transport* t, const uint8_t* data, size_t len) {
  if (t == client_) {
    switch (phase_) {
      case Phase::Peek:
        return on_peek_bytes(data, len);
      case Phase::Pump:
        return pump_->on_read(t, data, len);
      case Phase::Linger:
      case Phase::Closing:
        return;  // discarded: the client was refused
      case Phase::Place: {
        // Impossible by the Transport contract (the client is not read while
        // placing). Never drop client bytes silently: end the session, loudly.
        uint64_t skipped = 0;
        if (g_bug_log.allow(steady_ms(), skipped))
          logf(LogLevel::Error, "bug: session=%llu client bytes while placing; closing",
               static_cast<unsigned long long>(id_));
        return close(CloseReason::Error, true);
      }
    }
  }
  if (phase_ == Phase::Place && su_ && su_->place) return su_->place->on_backend_read(t, data, len);
  if (phase_ == Phase::Pump && t == backend_) pump_->on_read(t, data, len);
}

void Session::on_eof(net::Transport* t) {
  if (t == client_) {
    switch (phase_) {
      case Phase::Peek:
        return reject(Reject::ClientClosed);
      case Phase::Pump:
        return pump_->on_eof(t);
      case Phase::Linger:
        return close(CloseReason::Client);
      default:
        return;
    }
  }
  if (phase_ == Phase::Place && su_ && su_->place) return su_->place->on_backend_closed(t, 0);
  if (phase_ == Phase::Pump && t == backend_) pump_->on_eof(t);
}

void Session::on_error(net::Transport* t, int err) {
  if (t == client_) {
    switch (phase_) {
      case Phase::Peek:
        // The WebSocket error page (or Close) is on its way: let the client read it.
        if (client_ws_ && err == net::WsTransport::kWsFailed) return linger(Reject::WebSocket);
        return reject(client_tls_ && err == net::TlsTransport::kTlsFailed ? Reject::TlsHandshake
                                                                          : Reject::ClientClosed);
      case Phase::Pump:
        return pump_->on_error(t, err);
      case Phase::Place:
        w_.server().metrics().rejected(Reject::ClientClosed).Increment();
        return close(CloseReason::Client, true);
      default:
        return close(CloseReason::Client);
    }
  }
  if (phase_ == Phase::Place && su_ && su_->place) return su_->place->on_backend_closed(t, err);
  if (phase_ == Phase::Pump && t == backend_) pump_->on_error(t, err);
}

void Session::on_connect(net::Transport* t, int status) {
  if (phase_ == Phase::Place && su_ && su_->place) su_->place->on_backend_connect(t, status);
}

void Session::on_drained(net::Transport* t) {
  if (phase_ == Phase::Pump) pump_->on_drained(t);
}

void Session::on_hangup(net::Transport* t) {
  if (phase_ == Phase::Pump && pump_ && (t == client_ || t == backend_)) pump_->on_hangup();
}

void Session::on_shutdown(net::Transport* t) {
  if (phase_ == Phase::Pump) pump_->on_shutdown(t);
}

void Session::on_closed(net::Transport* t) {
  if (t == client_) {
    client_ = nullptr;
    client_tls_ = nullptr;
    client_ws_ = nullptr;
  }
  if (t == backend_) backend_ = nullptr;
  delete t;  // after its last callback (TransportSink::on_closed contract)
  handle_closed();
}

// ---- TLS observer ------------------------------------------------------------------

void Session::on_tls_handshake(const tls::Engine& e, double seconds) {
  if (tls_metrics_) {
    (e.session_reused() ? tls_metrics_->resumed : tls_metrics_->full)->Increment();
    tls_metrics_->duration->Observe(seconds);
  }
  logf(LogLevel::Debug, "session=%llu peer=%s: TLS handshake done: %s %s%s",
       static_cast<unsigned long long>(id_), peer_ip().c_str(), e.protocol().c_str(),
       e.cipher().c_str(), e.session_reused() ? " (resumed)" : "");
}

void Session::on_tls_failure(net::TlsFail why, const std::string& detail, bool got_bytes) {
  if (tls_metrics_) tls_metrics_->failures[static_cast<size_t>(why)]->Increment();
  // A connection closed before sending anything is a port probe (load balancer
  // or orchestrator TCP check): counted, but not worth a warning.
  if (why == net::TlsFail::Closed && !got_bytes) {
    logf(LogLevel::Debug, "peer %s: closed before any TLS byte", peer_ip().c_str());
    return;
  }
  const char* d = detail.c_str();
  if (detail.empty())
    d = why == net::TlsFail::Timeout ? "no complete handshake within limits.connect_timeout_ms"
                                     : "connection closed during the handshake";
  uint64_t skipped = 0;
  if (g_tls_fail_log.allow(steady_ms(), skipped))
    logf(LogLevel::Warn, "peer %s: TLS handshake failed (%s): %s (%llu similar lines suppressed)",
         peer_ip().c_str(), net::to_string(why), d, static_cast<unsigned long long>(skipped));
}

// ---- timer and close -------------------------------------------------------------------

void Session::arm_timer(uint64_t ms) {
  if (phase_ == Phase::Closing) return;
  w_.timers().arm(*this, ms);
}

void Session::disarm_timer() {
  w_.timers().disarm(*this);
}

uint64_t Session::now_ms() const {
  return uv_now(w_.loop());
}

void Session::on_timer_due() {
  Session* s = this;
  switch (s->phase_) {
    case Phase::Peek:
      // Over a limit and silent: counted as that limit, not as a slow client.
      if (s->su_ && s->su_->refuse_after_peek != Reject::Count)
        return s->reject(s->su_->refuse_after_peek);
      // The TLS handshake counts against connect_timeout_ms too.
      if (s->client_tls_ && !s->client_tls_->handshake_done())
        s->client_tls_->count_failure(net::TlsFail::Timeout);
      else if (s->client_ws_)
        s->client_ws_->count_timeout();  // counted only if its handshake was not done
      return s->reject(Reject::ConnectTimeout);
    case Phase::Place:
      if (s->su_ && s->su_->place) s->su_->place->on_timer();
      return;
    case Phase::Pump:
      return s->pump_->on_timer();
    case Phase::Linger:
      return s->close(CloseReason::Client);
    case Phase::Closing:
      return;
  }
}

void Session::close(CloseReason why, bool reset) {
  if (phase_ == Phase::Closing) return;
  if (phase_ == Phase::Pump) {
    Metrics& m = w_.server().metrics();
    m.closed(why).Increment();
    if (why == CloseReason::Evacuated) m.evacuated->Increment();
    if (placed_ns_) m.session_seconds->Observe(static_cast<double>(uv_hrtime() - placed_ns_) / 1e9);
  }
  phase_ = Phase::Closing;
  disarm_timer();
  if (su_) su_->place.reset();  // retires its attempt, gives its gate slot back
  pump_.reset();
  if (su_) {
    su_->peek.reset();
    su_->info.reset();
  }
  if (client_) client_->close(reset);
  if (backend_) backend_->close(reset);
  count_.reset();
  su_.reset();  // the snapshot last
}

// Last statement of every close path: may destroy *this.
void Session::handle_closed() {
  --open_handles_;
  if (open_handles_ == 0 && phase_ == Phase::Closing) w_.destroy(id_);
}

}  // namespace lb
