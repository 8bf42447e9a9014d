// Session: MQTT over WebSocket (docs/websocket.md). A websocket listener's
// client transport is a net::WsTransport (over TCP or TLS) that hides the
// framing, so the stages (peek, place, pump) see the MQTT stream as on any
// listener; with to_backend "websocket" the broker connection is one too.
#include <arpa/inet.h>

#include "lb/clock.hpp"
#include "lb/listener.hpp"
#include "lb/log.hpp"
#include "lb/server.hpp"
#include "lb/session.hpp"
#include "lb/worker.hpp"
#include "proxy/proxy_protocol.hpp"

namespace lb {

namespace {

constexpr uint64_t kLingerMs = 2000;  // let the client read the error page or Close

LogLimiter g_ws_fail_log(1000);

}  // namespace

void Session::wrap_websocket(const conf::ListenerWebSocket& ws) {
  net::WsServerOptions o;
  o.path = ws.path;
  o.max_handshake_bytes = ws.max_handshake_bytes;
  client_ws_ = new net::WsTransport(client_, this, std::move(o), this);
  client_ = client_ws_;
  ws_backend_ = ws.to_backend == conf::ListenerWebSocket::ToBackend::WebSocket;
}

net::Transport* Session::wrap_backend_websocket(net::Transport* t, const RuntimeBackend& rb) {
  net::WsClientOptions o;
  const conf::Endpoint& a = rb.cfg.address;
  const bool v6 = a.host.find(':') != std::string::npos;
  o.host = (v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(rb.cfg.websocket_port);
  // What the client asked for (path and query) and the subprotocol it got;
  // its other headers (cookies, Authorization, Origin) are not forwarded.
  if (client_ws_) {
    o.target = client_ws_->target();
    o.protocol = client_ws_->subprotocol();
  }
  if (o.protocol.empty()) o.protocol = "mqtt";
  o.headers.emplace_back("X-Forwarded-For", peer_ip());
  o.headers.emplace_back("X-Forwarded-Proto", client_tls_ ? "https" : "http");
  if (!rb.cfg.tls) {  // over TLS the PROXY header is the TLS preamble (connect_backend)
    append_proxy_header(o.preamble, rb.cfg.proxy_protocol);
  }
  return new net::WsTransport(t, this, std::move(o), this);
}

void Session::linger(Reject why) {
  w_.server().metrics().rejected(why).Increment();
  logf(LogLevel::Debug, "reject session=%llu peer=%s reason=%s: %s",
       static_cast<unsigned long long>(id_), peer_ip().c_str(), to_string(why),
       client_ ? client_->error_detail().c_str() : "");
  phase_ = Phase::Linger;
  su_.reset();
  arm_timer(kLingerMs);
  // Reading (and discarding) so unread bytes do not turn our close into a
  // reset that could destroy the answer in flight; the client's EOF ends it.
  client_->start_read();
}

void Session::on_ws_handshake(net::ws::Role role, net::ws::Result r) {
  const size_t side = role == net::ws::Role::Server ? 0 : 1;
  w_.server().metrics().ws_handshakes[side][static_cast<size_t>(r)]->Increment();
  if (r == net::ws::Result::Ok) return;
  uint64_t skipped = 0;
  if (side == 0 && r == net::ws::Result::Closed) return;  // the client left: its business
  if (!g_ws_fail_log.allow(steady_ms(), skipped)) return;
  if (side == 0)
    logf(LogLevel::Warn,
         "peer %s: WebSocket handshake failed on listener %s (%s) (%llu similar lines "
         "suppressed)",
         peer_ip().c_str(), listener_ ? listener_->name().c_str() : "?", net::ws::to_string(r),
         static_cast<unsigned long long>(skipped));
  else
    logf(LogLevel::Warn,
         "session=%llu: a broker refused the WebSocket upgrade (%s): is websocket_port its "
         "WebSocket listener? (%llu similar lines suppressed)",
         static_cast<unsigned long long>(id_), net::ws::to_string(r),
         static_cast<unsigned long long>(skipped));
}

void Session::on_ws_protocol_error(net::ws::Role role, net::ws::FrameError e) {
  const size_t side = role == net::ws::Role::Server ? 0 : 1;
  w_.server().metrics().ws_protocol_errors[side][static_cast<size_t>(e)]->Increment();
  uint64_t skipped = 0;
  if (g_ws_fail_log.allow(steady_ms(), skipped))
    logf(LogLevel::Info,
         "%s %s: WebSocket protocol error (%s): closed (%llu similar lines suppressed)",
         side == 0 ? "peer" : "broker of session",
         side == 0 ? peer_ip().c_str() : std::to_string(id_).c_str(), net::ws::to_string(e),
         static_cast<unsigned long long>(skipped));
}

}  // namespace lb
