#include "lb/listener.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>

#include "lb/clock.hpp"
#include "lb/log.hpp"
#include "net/address.hpp"

namespace lb {

namespace {
LogLimiter g_accept_log(1000);  // all listeners, all workers

// Addresses with an open listening socket in this process (a multiset: every
// worker has its own SO_REUSEPORT socket per listener).
std::mutex g_held_mu;
std::unordered_multiset<std::string> g_held;

void release(const std::string& bind) {
  std::lock_guard<std::mutex> g(g_held_mu);
  if (auto it = g_held.find(bind); it != g_held.end()) g_held.erase(it);
}

AcceptError classify(int err) {
  switch (err) {
    case EMFILE:
      return AcceptError::Emfile;
    case ENFILE:
      return AcceptError::Enfile;
    case ENOBUFS:
      return AcceptError::Enobufs;
    case ENOMEM:
      return AcceptError::Enomem;
    default:
      return AcceptError::Other;
  }
}
}  // namespace

Listener::Listener(uv_loop_t* loop, std::string name, size_t index, bool tls, Metrics& m,
                   AcceptFn fn)
    : loop_(loop),
      name_(std::move(name)),
      index_(index),
      tls_(tls),
      metrics_(m),
      accepted_(m.accepted(name_)),
      on_accept_(std::move(fn)) {
  if (tls_) tls_metrics_ = m.tls_listener(name_);
}

Listener::~Listener() {
  // The Worker frees listeners only after its loop ran every close callback.
  if (open_handles_ == 0) close_fd();
}

void Listener::close_fd() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  release(bind_);
}

void Listener::hold(const conf::Endpoint& bind) {
  std::lock_guard<std::mutex> g(g_held_mu);
  g_held.insert(bind.str());
}

void Listener::close_socket(int fd, const conf::Endpoint& bind) {
  ::close(fd);
  release(bind.str());
}

bool Listener::held(const conf::Endpoint& bind) {
  std::lock_guard<std::mutex> g(g_held_mu);
  return g_held.count(bind.str()) > 0;
}

int Listener::open_socket(const conf::Endpoint& bind, int backlog, std::string& err) {
  sockaddr_storage addr{};
  if (!net::to_sockaddr(bind.host, bind.port, addr)) {
    err = "bad address " + bind.str();
    return -1;
  }
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), net::sockaddr_len(addr)) != 0 ||
      ::listen(fd, backlog) != 0) {
    err = "cannot listen on " + bind.str() + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return -1;
  }
  hold(bind);
  return fd;
}

void Listener::adopt(int fd, const conf::Endpoint& bind) {
  fd_ = fd;
  bind_ = bind.str();  // counted in held() already: open_socket() or hold()
  uv_poll_init_socket(loop_, &poll_, fd_);
  poll_.data = this;
  uv_timer_init(loop_, &pause_timer_);
  pause_timer_.data = this;
  open_handles_ = 2;
  uv_poll_start(&poll_, UV_READABLE, poll_cb);
  polling_ = true;
}

bool Listener::open(const conf::Endpoint& bind, int backlog, std::string& err) {
  int fd = open_socket(bind, backlog, err);
  if (fd < 0) {
    err = "listener " + name_ + ": " + err;
    return false;
  }
  adopt(fd, bind);
  return true;
}

void Listener::close() {
  if (closing_) return;
  closing_ = true;
  if (open_handles_ == 0) return;  // never opened
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), close_cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&pause_timer_), close_cb);
}

void Listener::close_cb(uv_handle_t* h) {
  auto* l = static_cast<Listener*>(h->data);
  if (--l->open_handles_ == 0) l->close_fd();  // uv_poll never closes the descriptor it watches
}

void Listener::poll_cb(uv_poll_t* p, int status, int) {
  auto* l = static_cast<Listener*>(p->data);
  if (status < 0) {
    logf(LogLevel::Warn, "listener %s: poll error: %s", l->name_.c_str(), uv_strerror(status));
    return l->pause(ENOBUFS);
  }
  l->accept_some();
}

void Listener::accept_some() {
  for (int i = 0; i < kAcceptsPerWakeup && !closing_; ++i) {
    if (tls_ && pace_) {
      if (uint32_t ms = pace_()) return wait(ms);
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;  // that one is gone
      return pause(e);
    }
    pause_ms_ = 0;
    accepted_->Increment();
    on_accept_(*this, fd, peer);
  }
}

void Listener::pause(int err) {
  metrics_.accept_error(classify(err)).Increment();
  pause_ms_ = pause_ms_ == 0 ? 50 : (pause_ms_ * 2 > 1000 ? 1000 : pause_ms_ * 2);
  uint64_t skipped = 0;
  if (g_accept_log.allow(steady_ms(), skipped))
    logf(LogLevel::Warn,
         "listener %s: accept failed: %s (%s); pausing accepts for %u ms (%llu similar lines "
         "suppressed)",
         name_.c_str(), std::strerror(err),
         err == EMFILE   ? "EMFILE"
         : err == ENFILE ? "ENFILE"
                         : "",
         pause_ms_, static_cast<unsigned long long>(skipped));
  if (polling_) {
    uv_poll_stop(&poll_);
    polling_ = false;
  }
  uv_timer_start(&pause_timer_, pause_cb, pause_ms_, 0);
}

void Listener::wait(uint32_t ms) {
  metrics_.tls_paced->Increment();
  if (polling_) {
    uv_poll_stop(&poll_);
    polling_ = false;
  }
  uv_timer_start(&pause_timer_, pause_cb, ms, 0);
}

void Listener::pause_cb(uv_timer_t* t) {
  auto* l = static_cast<Listener*>(t->data);
  if (l->closing_) return;
  uv_poll_start(&l->poll_, UV_READABLE, poll_cb);
  l->polling_ = true;
  l->accept_some();
}

}  // namespace lb
