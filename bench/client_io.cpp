// The transport side of a bench client (bench/client.hpp): connect, TLS,
// reads, the once-per-turn flush, the graceful and the abrupt close.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "bench/client.hpp"
#include "bench/runner.hpp"
#include "mqtt/codec.hpp"
#include "net/tls_transport.hpp"

namespace bench {

namespace {

std::string err_name(int status) {
  return std::string(uv_err_name(status)) + " (" + uv_strerror(status) + ")";
}

}  // namespace

Client::~Client() = default;

void Client::start() {
  t_start_ = r_.now();
  state_ = State::Connecting;
  tcp_ = new net::TcpTransport(r_.loop(), r_.slab(), this);
  t_ = tcp_;  // freed in on_closed, whatever happens from here on
  if (const sockaddr* src = r_.source_for(slot_)) {
    if (int rc = open_bound_socket(src); rc < 0)
      return fail("bind source address: " + err_name(rc), false);
  }
  if (int rc = tcp_->connect(r_.target()); rc < 0) return fail("connect: " + err_name(rc), false);
}

int Client::open_bound_socket(const sockaddr* src) {
  int fd = ::socket(r_.target()->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
    // Let connect() pick the port per 4-tuple, so each source address gives a
    // full ephemeral range instead of one bind()-reserved port per socket.
#ifdef IP_BIND_ADDRESS_NO_PORT
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
  socklen_t len = src->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  int rc = ::bind(fd, src, len) == 0 ? 0 : uv_translate_sys_error(errno);
  if (rc == 0) rc = tcp_->open(fd);  // the transport owns fd from here on
  if (rc < 0) ::close(fd);
  return rc;
}

void Client::on_connect(net::Transport* t, int status) {
  if (closing_ || t != t_) return;
  if (t == tcp_ && state_ == State::Connecting) {
    if (status < 0) return fail("connect: " + err_name(status), false);
    return on_tcp_connected();
  }
  if (t != tls_ || state_ != State::Handshaking) return;
  // The TLS handshake ended.
  if (status == net::TlsTransport::kTlsFailed) return fail("tls: " + tls_->error_detail(), false);
  if (status < 0) return on_error(t, status);
  if (tls_->engine().session_reused()) r_.st().tls_resumed++;
  send_connect();
}

void Client::on_tcp_connected() {
  t_tcp_ = r_.now();
  r_.st().tcp_connect.record(t_tcp_ - t_start_);
  uv_tcp_nodelay(tcp_->tcp(), 1);
  if (!r_.opts().tls) {
    tcp_->start_read();
    return send_connect();
  }
  tls_ = new net::TlsTransport(tcp_, this, *r_.tls_ctx(), tls::Role::Client, r_.opts().host);
  t_ = tls_;  // owns tcp_ from here on
  if (r_.opts().resume && r_.tls_session()->resumable()) tls_->set_session(*r_.tls_session());
  state_ = State::Handshaking;
  if (int rc = tls_->begin_handshake(); rc < 0) return on_error(tls_, rc);
  tls_->start_read();  // after begin_handshake (the ClientHello goes out there); holds nothing yet
}

void Client::on_read(net::Transport* t, const uint8_t* data, size_t len) {
  if (closing_ || t != t_) return;
  on_bytes(std::span<const uint8_t>(data, len));
}

void Client::on_eof(net::Transport* t) {
  on_error(t, UV_EOF);
}

void Client::on_error(net::Transport* t, int err) {
  if (closing_ || t != t_) return;
  if (close_after_write_ || r_.closing()) return close();
  if (t == tls_ && err == net::TlsTransport::kTlsFailed)
    return fail("tls: " + tls_->error_detail(), state_ == State::Ready);
  bool lost = state_ == State::Ready || state_ == State::AwaitSuback;
  std::string why = err == UV_EOF ? "closed by peer" : err_name(err);
  if (!lost) why += state_ == State::AwaitConnack ? " before CONNACK" : " during handshake";
  fail(why, lost);
}

void Client::flush() {
  if (t_ == nullptr || closing_ || state_ == State::Connecting || state_ == State::Handshaking)
    return;
  // While the transport's queue is above its low-water mark the batch keeps
  // growing in out_ (bounded by kHighWater, see can_send); on_drained flushes
  // it then, so a full socket gets a few large writes, not one per turn.
  if (t_->pending() > net::TcpTransport::kLowWater) return;
  if (!out_.empty()) {
    // One write per loop turn: the kernel takes what it can, the transport
    // queues a copy of the rest; out_ keeps its capacity for the next turn.
    int rc = t_->write(out_.data(), out_.size());
    if (rc < 0) return fail("write: " + err_name(rc), state_ == State::Ready);
    out_.clear();
    t_last_send_ = r_.now();
  }
  if (close_after_write_ && out_.empty() && !shut_) {
    // The DISCONNECT is in the kernel already (the usual case): close now
    // (TLS: close_notify first). Otherwise half-close after the queued bytes
    // and close in on_shutdown.
    if (t_->pending() == 0) return close();
    shut_ = true;
    t_->shutdown();
  }
}

void Client::on_drained(net::Transport* t) {
  // The queue fell to the low-water mark: refill the window (at the end of this turn).
  if (!closing_ && t == t_) r_.schedule(*this);
}

void Client::on_shutdown(net::Transport* t) {
  if (t == t_) close();  // the DISCONNECT reached the kernel
}

void Client::disconnect() {
  if (closing_ || close_after_write_ || t_ == nullptr) return;
  if (state_ == State::Connecting || state_ == State::Handshaking) return close();
  mqtt::encode_disconnect(mqtt::Disconnect{}, static_cast<mqtt::Version>(r_.opts().version), out_);
  close_after_write_ = true;
  flush();
}

void Client::fail(const std::string& reason, bool lost) {
  if (closing_) return;
  r_.on_failure(*this, reason, lost);
  close();
}

void Client::close() {
  if (closing_) return;
  closing_ = true;
  state_ = State::Closed;
  if (t_ != nullptr) t_->close(false);
}

void Client::on_closed(net::Transport* t) {
  delete t;  // a TlsTransport has deleted its TcpTransport already
  t_ = nullptr;
  tcp_ = nullptr;
  tls_ = nullptr;
  r_.on_closed(*this);
}

}  // namespace bench
