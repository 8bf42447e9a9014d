#include "lb/worker.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "lb/log.hpp"
#include "lb/server.hpp"

namespace lb {

Worker::Worker(Server& s, int index) : server_(s), index_(index), slab_(std::make_unique<Slab>()) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, async_cb);
  async_.data = this;
  async_open_ = true;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
}

Worker::~Worker() {
  join();
  // The loop ran to completion (every handle closed) unless start() never ran.
  if (uv_loop_close(&loop_) == UV_EBUSY) {
    stop();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

namespace {
// The listener's numeric bind address (the loader has validated its form).
bool bind_address(const conf::Listener& l, sockaddr_storage& addr, std::string& err) {
  if (uv_ip4_addr(l.bind.host.c_str(), l.bind.port, reinterpret_cast<sockaddr_in*>(&addr)) == 0 ||
      uv_ip6_addr(l.bind.host.c_str(), l.bind.port, reinterpret_cast<sockaddr_in6*>(&addr)) == 0)
    return true;
  err = "listener " + l.name + ": bad address " + l.bind.str();
  return false;
}
}  // namespace

bool Worker::check_free(const std::vector<conf::Listener>& listeners, std::string& err) {
  for (const auto& l : listeners) {
    sockaddr_storage addr{};
    if (!bind_address(l, addr, err)) return false;
    // No SO_REUSEPORT here: bind fails if anyone (even another mqttlb) holds the port.
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              bind(fd, reinterpret_cast<sockaddr*>(&addr),
                   addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)) == 0;
    int e = errno;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      err = "listener " + l.name + ": cannot bind " + l.bind.str() + ": " + std::strerror(e);
      return false;
    }
  }
  return true;
}

bool Worker::listen(const std::vector<conf::Listener>& listeners, std::string& err) {
  for (const auto& l : listeners) {
    sockaddr_storage addr{};
    if (!bind_address(l, addr, err)) return false;
    // libuv 1.44 cannot set SO_REUSEPORT itself: build the socket, then adopt it.
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, reinterpret_cast<sockaddr*>(&addr),
             addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)) != 0) {
      err = "listener " + l.name + ": cannot bind " + l.bind.str() + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return false;
    }
    auto ctx = std::make_unique<ListenerCtx>();
    ctx->worker = this;
    ctx->name = l.name;
    ctx->accepted = server_.metrics().accepted(l.name);
    ctx->index = listeners_.size();
    ctx->tls = l.tls.has_value();
    if (ctx->tls) ctx->tls_metrics = server_.metrics().tls_listener(l.name);
    uv_tcp_init(&loop_, &ctx->tcp);
    ctx->tcp.data = ctx.get();
    int r = uv_tcp_open(&ctx->tcp, fd);
    if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(&ctx->tcp), 4096, on_connection);
    listeners_.push_back(std::move(ctx));  // closed in stop_accepting() even on failure
    if (r != 0) {
      err = "listener " + l.name + ": cannot listen on " + l.bind.str() + ": " + uv_strerror(r);
      return false;
    }
  }
  return true;
}

void Worker::start() {
  thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::post(std::function<void(Worker&)> fn) {
  std::lock_guard<std::mutex> g(mu_);
  if (!async_open_) return;
  queue_.push_back(std::move(fn));
  uv_async_send(&async_);
}

void Worker::async_cb(uv_async_t* a) {
  auto* w = static_cast<Worker*>(a->data);
  std::vector<std::function<void(Worker&)>> q;
  {
    std::lock_guard<std::mutex> g(w->mu_);
    q.swap(w->queue_);
  }
  for (auto& fn : q) fn(*w);
}

void Worker::on_connection(uv_stream_t* s, int status) {
  auto* l = static_cast<ListenerCtx*>(s->data);
  Worker* w = l->worker;
  if (status < 0) {
    logf(LogLevel::Warn, "listener %s: accept error: %s", l->name.c_str(), uv_strerror(status));
    return;
  }
  uint64_t id = w->server_.next_session_id();
  auto sess = std::make_unique<Session>(*w, id);
  Session* raw = sess.get();
  w->sessions_.emplace(id, std::move(sess));
  raw->start(s, *l);  // may begin closing at once (limits); erased after its close callbacks
}

void Worker::stop_accepting() {
  accepting_ = false;
  for (auto& l : listeners_) {
    if (l->closed) continue;
    l->closed = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp), nullptr);
  }
}

void Worker::stop() {
  if (stopping_) return;
  stopping_ = true;
  stop_accepting();
  std::vector<Session*> all;
  for (auto& [id, s] : sessions_) all.push_back(s.get());
  for (Session* s : all) s->close(CloseReason::Shutdown);
  drain_.clear();
  uv_timer_stop(&drain_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  {
    std::lock_guard<std::mutex> g(mu_);
    async_open_ = false;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

void Worker::close_session(uint64_t id, CloseReason why) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) it->second->close(why);
}

void Worker::destroy(uint64_t id) {
  sessions_.erase(id);
}

void Worker::shutdown_backend(const std::string& backend, uint32_t spread_ms) {
  if (stopping_) return;
  std::vector<uint64_t> ids;
  for (auto& [id, s] : sessions_)
    if (!s->closing() && s->forwarding_to(backend)) ids.push_back(id);
  if (ids.empty()) return;
  uint64_t now = uv_now(&loop_);
  std::deque<std::pair<uint64_t, uint64_t>> add;
  for (size_t i = 0; i < ids.size(); ++i)
    add.emplace_back(now + uint64_t{spread_ms} * i / ids.size(), ids[i]);
  // Merge with what an earlier call queued, keeping due-time order.
  std::deque<std::pair<uint64_t, uint64_t>> merged;
  std::merge(drain_.begin(), drain_.end(), add.begin(), add.end(), std::back_inserter(merged));
  drain_.swap(merged);
  logf(LogLevel::Info, "backend %s: closing %zu sessions on worker %d over %u ms", backend.c_str(),
       ids.size(), index_, spread_ms);
  run_drain();
}

void Worker::drain_timer_cb(uv_timer_t* t) {
  static_cast<Worker*>(t->data)->run_drain();
}

void Worker::run_drain() {
  uint64_t now = uv_now(&loop_);
  while (!drain_.empty() && drain_.front().first <= now) {
    close_session(drain_.front().second, CloseReason::BackendShutdown);
    drain_.pop_front();
  }
  if (!drain_.empty()) uv_timer_start(&drain_timer_, drain_timer_cb, drain_.front().first - now, 0);
}

}  // namespace lb
