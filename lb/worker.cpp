#include "lb/worker.hpp"

#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <iterator>

#include "lb/log.hpp"
#include "lb/server.hpp"
#include "net/address.hpp"

// Under ASan/TSan the sanitizer owns the heap: glibc's malloc_trim would only
// confuse glibc's own (unused) arenas.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MQTTLB_HEAP_TRIM 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MQTTLB_HEAP_TRIM 0
#endif
#endif
#ifndef MQTTLB_HEAP_TRIM
#define MQTTLB_HEAP_TRIM 1
#endif

namespace lb {

Worker::Worker(Server& s, int index)
    : server_(s), index_(index), slab_(std::make_unique<net::Slab>()) {
  uv_loop_init(&loop_);
  mailbox_.init(&loop_);
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  uv_timer_init(&loop_, &trim_timer_);
  trim_timer_.data = this;
  uv_timer_start(&trim_timer_, trim_timer_cb, kTrimTickMs, kTrimTickMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&trim_timer_));  // never what keeps the loop alive
  timers_.init(&loop_);
  polls_ok_ = polls_.init(&loop_, slab_.get(), &server_.budget());
  if (!polls_ok_)
    logf(LogLevel::Warn, "worker %d: no epoll set (%s): sessions use libuv TCP handles", index,
         std::strerror(errno));
}

Worker::~Worker() {
  join();
  // The loop ran to completion (every handle closed) unless start() never ran.
  if (uv_loop_close(&loop_) == UV_EBUSY) {
    stop();
    run_loop();
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
    add(std::move(l));  // closed in stop_accepting() even on failure
    if (!ok) return false;
  }
  return true;
}

void Worker::adopt_listener(const conf::Listener& cfg, int fd) {
  auto l = std::make_unique<Listener>(
      &loop_, cfg.name, listeners_.size(), cfg.tls.has_value(), server_.metrics(),
      [this](Listener& ln, int fd, const sockaddr_storage& peer) { on_accept(ln, fd, peer); });
  l->adopt(fd, cfg.bind);
  add(std::move(l));
}

void Worker::add(std::unique_ptr<Listener> l) {
  if (l->tls()) l->set_pace([this] { return pace_tls(); });
  listeners_.push_back(std::move(l));
}

uint32_t Worker::pace_tls() {
  uint32_t rate = server_.snapshot()->cfg.limits.tls_handshake_rate;
  if (rate == 0) return 0;
  int64_t now = static_cast<int64_t>(uv_now(&loop_));
  if (rate != tls_rate_) {  // configured, or changed by a reload
    tls_rate_ = rate;
    tls_bucket_ = TokenBucket(rate, rate, now);
  }
  if (tls_bucket_.take(now)) return 0;
  return std::max<uint32_t>(1, 1000 / rate);
}

void Worker::run_loop() {
  if (polls_ok_)
    polls_.run();  // the worker's epoll set drives the loop, libuv's nested in it
  else
    uv_run(&loop_, UV_RUN_DEFAULT);
}

void Worker::start() {
  thread_ = std::thread([this] {
    run_loop();
    finished_.store(true);
  });
}

std::vector<std::pair<std::string, int>> Worker::listening_fds(uint32_t timeout_ms) {
  auto p = std::make_shared<std::promise<std::vector<std::pair<std::string, int>>>>();
  auto f = p->get_future();
  post([p](Worker& w) {
    std::vector<std::pair<std::string, int>> v;
    for (auto& l : w.listeners_)
      if (!l->closed() && l->fd() >= 0) v.emplace_back(l->name(), l->fd());
    p->set_value(std::move(v));
  });
  if (f.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) return {};
  return f.get();
}

void Worker::remove_listener(const std::string& name, uint32_t drain_ms) {
  for (auto& l : listeners_)
    if (l->name() == name && !l->closed()) l->close();
  // Its sessions may go on up to drain_ms; then they end, as in a shutdown.
  auto ev = std::make_shared<Evacuation>();
  ev->listener = name;
  ev->rate_per_s = 0;  // no pacing: only the deadline
  ev->deadline_ms = drain_ms;
  ev->reason = 0x8B;  // server shutting down (this address is)
  ev->workers_left.store(1);
  evacuate(ev);
  free_closed_listeners();
}

void Worker::retire(uint32_t drain_ms) {
  retiring_ = true;
  stop_accepting();
  auto ev = std::make_shared<Evacuation>();
  ev->rate_per_s = 0;
  ev->deadline_ms = drain_ms;
  ev->reason = 0x8B;
  ev->workers_left.store(1);
  evacuate(ev);
  if (sessions_.empty()) stop();
}

void Worker::session_gone(Listener* l) {
  if (l && --l->sessions == 0 && l->closed()) free_closed_listeners();
}

void Worker::free_closed_listeners() {
  // A closed listener whose handles and sessions are all gone (its close
  // callbacks ran: freeable() checks); erased here, never from its callbacks.
  for (auto it = listeners_.begin(); it != listeners_.end();)
    it = (*it)->freeable() ? listeners_.erase(it) : std::next(it);
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
  for (const Due& d : drain_)  // evacuations in progress: this worker is done with them
    if (d.ev && d.session == 0) d.ev->workers_left.fetch_sub(1);
  drain_.clear();
  uv_timer_stop(&drain_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  uv_timer_stop(&trim_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&trim_timer_), nullptr);
  timers_.close();  // the sessions closed above disarmed theirs
  if (polls_ok_) polls_.close();  // after the on_closed of the sessions closed above
  mailbox_.close();
}

const Pump::Counters& Worker::pump_counters() {
  if (!pump_counters_) {
    Metrics& m = server_.metrics();
    Pump::Counters c{m.bytes_c2b,       m.bytes_b2c,    m.sessions_userspace,
                     m.sessions_kernel, m.kernel_joins, m.kernel_fallbacks};
    c.packets_c2b = m.kernel_packets_c2b;
    c.packets_b2c = m.kernel_packets_b2c;
    c.overreads = m.kernel_overreads;
    pump_counters_ = c;
  }
  return *pump_counters_;
}

void Worker::close_session(uint64_t id, CloseReason why) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) it->second->close(why);
}

void Worker::destroy(uint64_t id) {
  sessions_.erase(id);
  ++churn_;
  if (retiring_ && sessions_.empty()) stop();
}

void Worker::schedule(std::deque<Due> add) {
  std::sort(add.begin(), add.end());
  std::deque<Due> merged;  // merge with what is queued, keeping due-time order
  std::merge(drain_.begin(), drain_.end(), add.begin(), add.end(), std::back_inserter(merged));
  drain_.swap(merged);
  run_drain();
}

void Worker::shutdown_backend(const std::string& backend, uint32_t spread_ms) {
  if (stopping_) return;
  std::vector<uint64_t> ids;
  for (auto& [id, s] : sessions_)
    if (!s->closing() && s->forwarding_to(backend)) ids.push_back(id);
  if (ids.empty()) return;
  uint64_t now = uv_now(&loop_);
  std::deque<Due> add;
  for (size_t i = 0; i < ids.size(); ++i)
    add.push_back({now + uint64_t{spread_ms} * i / ids.size(), ids[i], nullptr});
  logf(LogLevel::Info, "backend %s: closing %zu sessions on worker %d over %u ms", backend.c_str(),
       ids.size(), index_, spread_ms);
  schedule(std::move(add));
}

void Worker::evacuate(std::shared_ptr<Evacuation> ev) {
  if (stopping_) {
    ev->workers_left.fetch_sub(1);
    return;
  }
  std::vector<uint64_t> ids;
  for (auto& [id, s] : sessions_)
    if (s->placed() && s->matches(ev->backend, ev->listener)) ids.push_back(id);
  if (ev->rate_per_s <= 0) ids.clear();  // only the deadline sweep
  ev->total.fetch_add(ids.size());
  const uint64_t now = uv_now(&loop_);
  const uint64_t deadline = now + ev->deadline_ms;
  // This worker's share of the rate is its share of the sessions to move (of
  // the backend's count over all workers): however unevenly the sessions are
  // spread over the workers, they all finish together and the whole
  // evacuation keeps rate_per_s. +-25 % jitter so clients do not come back in step.
  const double all = static_cast<double>(ev->backend.empty() ? server_.active_connections()
                                                             : server_.backend_active(ev->backend));
  const double share = all > 0 ? std::min(1.0, static_cast<double>(ids.size()) / all)
                               : 1.0 / static_cast<double>(server_.worker_count());
  const double rate = ev->rate_per_s * share;
  const double gap_ms = rate > 0 ? 1000.0 / rate : 0;
  uint64_t seed = (static_cast<uint64_t>(index_) << 32) ^ now;
  std::deque<Due> add;
  for (size_t i = 0; i < ids.size(); ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    double jitter =
        gap_ms * (static_cast<double>(seed >> 40) / static_cast<double>(1 << 24) - 0.5) / 2;
    double at = static_cast<double>(now) + gap_ms * static_cast<double>(i + 1) + jitter;
    uint64_t due = at < static_cast<double>(deadline) ? static_cast<uint64_t>(at) : deadline;
    add.push_back({due, ids[i], ev});
  }
  add.push_back({deadline, 0, ev});  // then whatever is left (placed since) goes at once
  logf(LogLevel::Info, "evacuation of %s: %zu sessions on worker %d at %.1f/s, deadline %llu s",
       ev->backend.empty() ? "all backends" : ev->backend.c_str(), ids.size(), index_, rate,
       static_cast<unsigned long long>(ev->deadline_ms / 1000));
  schedule(std::move(add));
}

void Worker::fire(const Due& d) {
  if (!d.ev) return close_session(d.session, CloseReason::BackendShutdown);
  Evacuation& ev = *d.ev;
  if (ev.cancelled.load()) {
    if (d.session == 0) ev.workers_left.fetch_sub(1);
    return;
  }
  // A backend's evacuation moves clients (no will: the broker gets a normal
  // DISCONNECT); draining a listener or worker ends them as a shutdown would.
  const bool moving = ev.listener.empty() && !retiring_;
  auto end = [&ev, moving](Session& s) {
    s.end(moving ? CloseReason::Evacuated : CloseReason::Shutdown, ev.reason, ev.server_reference,
          /*disconnect_broker=*/moving);
  };
  if (d.session != 0) {
    auto it = sessions_.find(d.session);
    if (it != sessions_.end() && it->second->placed() &&
        it->second->matches(ev.backend, ev.listener))
      end(*it->second);
    ev.moved.fetch_add(1);  // ended now, or gone by itself: off the backend either way
    if (!ev.backend.empty() && ev.listener.empty()) sweep_soon(d.ev);
    return;
  }
  // The deadline: every session still on the backend, including ones placed
  // there since the start.
  std::vector<Session*> left;
  for (auto& [id, s] : sessions_)
    if (!s->closing() && s->matches(ev.backend, ev.listener)) left.push_back(s.get());
  for (Session* s : left) end(*s);
  ev.workers_left.fetch_sub(1);
}

// A backend evacuation whose last paced session on this worker just went:
// the backend takes no new clients (the admin API drained it), so the sweep
// need not wait for the deadline — only for the sessions still finishing
// (at most Pump::kFinishMs). Then the evacuation reads "done" when it is.
void Worker::sweep_soon(const std::shared_ptr<Evacuation>& ev) {
  for (const Due& x : drain_)
    if (x.ev == ev && x.session != 0) return;  // more to move first
  auto snap = server_.snapshot();
  for (const auto& b : snap->backends)  // back in rotation meanwhile: the deadline sweeps
    if (b.cfg.name == ev->backend && b.state->status->accepts_new()) return;
  auto it = std::find_if(drain_.begin(), drain_.end(),
                         [&ev](const Due& x) { return x.ev == ev && x.session == 0; });
  const uint64_t soon = uv_now(&loop_) + Pump::kFinishMs + 500;
  if (it == drain_.end() || it->due_ms <= soon) return;
  Due sweep = std::move(*it);
  drain_.erase(it);
  sweep.due_ms = soon;
  // Kept in due order; run_drain (our caller) re-arms the timer for the front.
  drain_.insert(std::upper_bound(drain_.begin(), drain_.end(), sweep), std::move(sweep));
}

std::optional<Session::Info> Worker::session_info(uint64_t id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second->info();
}

bool Worker::kick(uint64_t id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || !it->second->placed()) return false;
  it->second->end(CloseReason::Kicked, 0x98, "",
                  /*disconnect_broker=*/false);  // administrative action
  return true;
}

// A burst of connections (a reconnect storm, a load test) leaves free heap
// pages behind: what the handshakes, peeks and placements allocated and
// freed. Once a burst is over (churn in the previous tick, none in the last),
// they go back to the kernel: an idle fleet's RSS is what its sessions hold.
void Worker::trim_timer_cb(uv_timer_t* t) {
  auto* w = static_cast<Worker*>(t->data);
  const uint64_t churn = w->churn_;
  if (churn != w->churn_trimmed_ && churn == w->churn_last_tick_) {
    const uint64_t events = churn - w->churn_trimmed_;  // placements and ends since the last trim
    w->churn_trimmed_ = churn;
    const uint64_t t0 = uv_hrtime();
#if MQTTLB_HEAP_TRIM
    ::malloc_trim(0);
#endif
    logf(LogLevel::Debug, "worker %d: heap trimmed after %llu placements and session ends (%.2f ms)",
         w->index_, static_cast<unsigned long long>(events), static_cast<double>(uv_hrtime() - t0) / 1e6);
  }
  w->churn_last_tick_ = churn;
}

void Worker::drain_timer_cb(uv_timer_t* t) {
  static_cast<Worker*>(t->data)->run_drain();
}

void Worker::run_drain() {
  uint64_t now = uv_now(&loop_);
  while (!drain_.empty() && drain_.front().due_ms <= now) {
    Due d = std::move(drain_.front());
    drain_.pop_front();
    fire(d);
  }
  if (!drain_.empty())
    uv_timer_start(&drain_timer_, drain_timer_cb, drain_.front().due_ms - now, 0);
}

}  // namespace lb
