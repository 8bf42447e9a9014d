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
#include "net/address.hpp"

namespace lb {

Worker::Worker(Server& s, int index)
    : server_(s), index_(index), slab_(std::make_unique<net::Slab>()) {
  uv_loop_init(&loop_);
  mailbox_.init(&loop_);
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

bool Worker::check_free(const std::vector<conf::Listener>& listeners, std::string& err) {
  for (const auto& l : listeners) {
    sockaddr_storage addr{};
    if (!net::to_sockaddr(l.bind.host, l.bind.port, addr)) {
      err = "listener " + l.name + ": bad address " + l.bind.str();
      return false;
    }
    // No SO_REUSEPORT here: bind fails if anyone (even another mqttlb) holds the port.
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              bind(fd, reinterpret_cast<sockaddr*>(&addr), net::sockaddr_len(addr)) == 0;
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
  for (size_t i = 0; i < listeners.size(); ++i) {
    const conf::Listener& cfg = listeners[i];
    auto l = std::make_unique<Listener>(
        &loop_, cfg.name, i, cfg.tls.has_value(), server_.metrics(),
        [this](Listener& ln, int fd, const sockaddr_storage& peer) { on_accept(ln, fd, peer); });
    bool ok = l->open(cfg.bind, kListenBacklog, err);
    listeners_.push_back(std::move(l));  // closed in stop_accepting() even on failure
    if (!ok) return false;
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
  mailbox_.post([this, f = std::move(fn)] { f(*this); });
}

void Worker::on_accept(Listener& l, int fd, const sockaddr_storage& peer) {
  uint64_t id = server_.next_session_id();
  auto sess = std::make_unique<Session>(*this, id);
  Session* raw = sess.get();
  sessions_.emplace(id, std::move(sess));
  raw->start(fd, peer, l);  // may begin closing at once (limits); erased after its close callbacks
}

void Worker::stop_accepting() {
  accepting_ = false;
  for (auto& l : listeners_) l->close();
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
  mailbox_.close();
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
