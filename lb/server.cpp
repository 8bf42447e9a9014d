#include "lb/server.hpp"

#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "lb/log.hpp"
#include "lb/worker.hpp"

namespace lb {

uint64_t raise_nofile_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  return rl.rlim_cur == RLIM_INFINITY ? 1'048'576 : static_cast<uint64_t>(rl.rlim_cur);
}

uint32_t default_max_connections(uint64_t nofile) {
  constexpr uint64_t kReserve = 128;  // listeners, metrics, health checks, logs
  if (nofile <= kReserve + 2) return 1;
  uint64_t n = (nofile - kReserve) / 2;
  return static_cast<uint32_t>(n > 10'000'000 ? 10'000'000 : n);
}

namespace {
size_t worker_count_for(const conf::Config& cfg) {
  unsigned n = cfg.workers ? cfg.workers : std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}
}  // namespace

Server::Server(const conf::Config& cfg, prometheus::Registry& registry)
    : metrics_(registry),
      n_workers_(worker_count_for(cfg)),
      affinity_(cfg.balance.affinity_max_entries, cfg.balance.affinity_max_bytes,
                int64_t{cfg.balance.affinity_ttl_s} * 1000),
      budget_(cfg.limits.memory_budget_bytes),
      listeners_(cfg.listeners),
      workers_cfg_(cfg.workers) {
  snap_ = build(cfg);
  for (size_t i = 0; i < n_workers_; ++i)
    workers_.push_back(std::make_unique<Worker>(*this, static_cast<int>(i)));
}

Server::~Server() {
  for (auto& w : workers_) w->post([](Worker& w) { w.stop(); });
  join();
  workers_.clear();
}

std::shared_ptr<Snapshot> Server::build(const conf::Config& cfg) {
  // Called with snap_mu_ held or before any worker runs.
  auto s = std::make_shared<Snapshot>();
  cfg_ = cfg;
  s->cfg = cfg;
  for (auto& b : s->cfg.backends) {  // operator overrides (admin API)
    if (auto it = weight_override_.find(b.name); it != weight_override_.end()) b.weight = it->second;
    if (auto it = admin_override_.find(b.name); it != admin_override_.end()) b.admin = it->second;
  }
  s->generation = ++generation_;
  for (const auto& b : s->cfg.backends) {
    auto& st = states_[b.name];
    if (!st) {
      st = std::make_shared<BackendState>(b.name);
      st->metrics = metrics_.backend(b.name);
      st->connacks = std::make_unique<ConnackCounters>(metrics_.connacks_family(), b.name);
      for (size_t w = 0; w < n_workers_; ++w)
        st->lanes.push_back(std::make_unique<GateLane>(st->metrics.connecting, st->metrics.queued));
    }
    std::shared_ptr<tls::Context> ctx;
    if (b.tls) {
      std::string err;
      ctx = tls::Context::client(tls::client_options(*b.tls), err);
      if (!ctx) logf(LogLevel::Error, "backend %s: TLS: %s", b.name.c_str(), err.c_str());
    }
    s->backends.push_back({b, st, std::move(ctx)});
  }
  build_listener_tls(cfg, *s);
  s->balancer = make_balancer(cfg.balance, s->cfg.backends);
  s->max_connections = cfg.limits.max_connections ? cfg.limits.max_connections
                                                  : default_max_connections(raise_nofile_limit());
  max_conn_.store(s->max_connections);
  max_per_ip_.store(cfg.limits.max_connections_per_ip);
  return s;
}

void Server::build_listener_tls(const conf::Config& cfg, Snapshot& s) {
  // Bound listeners cannot change without a restart; a reload may still change
  // their certificate, key, CA or verify_client (matched by name).
  s.listener_tls.resize(listeners_.size());
  for (size_t i = 0; i < listeners_.size(); ++i) {
    const conf::Listener& bound = listeners_[i];
    if (!bound.tls) continue;
    const conf::ListenerTls* want = &*bound.tls;
    for (const auto& l : cfg.listeners)
      if (l.name == bound.name && l.tls) want = &*l.tls;
    std::shared_ptr<tls::Context> old =
        snap_ && i < snap_->listener_tls.size() ? snap_->listener_tls[i] : nullptr;
    std::string err;
    std::shared_ptr<tls::Context> ctx = tls::Context::server(*want, err);
    if (ctx && !ctx->set_alpn({"mqtt"}, err)) ctx.reset();
    if (!ctx) {
      logf(LogLevel::Error, "listener %s: TLS: %s%s", bound.name.c_str(), err.c_str(),
           old ? "; keeping the previous certificate" : "");
      if (!old) tls_error_ = "listener " + bound.name + ": TLS: " + err;
      s.listener_tls[i] = old;
      continue;
    }
    // Resumption survives the reload (tickets issued by `old` stay valid) only
    // when the listener's policy is unchanged: a reload that tightens client
    // verification must not be bypassed by resuming older sessions.
    if (old && !ctx->inherit_ticket_keys(*old))
      logf(LogLevel::Info,
           "listener %s: TLS identity or client verification changed: sessions made before "
           "this reload will not resume",
           bound.name.c_str());
    s.listener_tls[i] = std::move(ctx);
  }
}

bool Server::start(std::string& err) {
  if (!tls_error_.empty()) {
    err = tls_error_;
    return false;
  }
  if (!Worker::check_free(listeners_, err)) return false;
  for (auto& w : workers_)
    if (!w->listen(listeners_, err)) return false;
  for (auto& w : workers_) w->start();
  started_.store(true);
  logf(LogLevel::Info, "started %zu workers, %zu listeners, %zu backends, max_connections=%u",
       workers_.size(), listeners_.size(), snapshot()->backends.size(), max_conn_.load());
  return true;
}

void Server::stop_accepting() {
  stopping_.store(true);
  for (auto& w : workers_) w->post([](Worker& w) { w.stop_accepting(); });
}

void Server::close_all_sessions() {
  stopping_.store(true);
  for (auto& w : workers_) w->post([](Worker& w) { w.stop(); });
}

void Server::join() {
  for (auto& w : workers_) w->join();
}

void Server::swap(const conf::Config& cfg) {
  std::lock_guard<std::mutex> g(snap_mu_);
  // A key the file sets itself wins over the operator's override.
  for (const auto& b : cfg.backends) {
    if (b.weight_given) weight_override_.erase(b.name);
    if (b.admin_given) admin_override_.erase(b.name);
  }
  snap_ = build(cfg);
  affinity_.set_limits(cfg.balance.affinity_max_entries, cfg.balance.affinity_max_bytes,
                       int64_t{cfg.balance.affinity_ttl_s} * 1000);
  budget_.set_limit(cfg.limits.memory_budget_bytes);
}

bool Server::needs_restart(const conf::Config& cfg) const {
  if (cfg.workers != workers_cfg_ || cfg.listeners.size() != listeners_.size()) return true;
  for (size_t i = 0; i < listeners_.size(); ++i) {
    const auto &a = listeners_[i], &b = cfg.listeners[i];
    if (a.name != b.name || a.bind.str() != b.bind.str() || a.tls.has_value() != b.tls.has_value())
      return true;
  }
  return false;
}

std::shared_ptr<const Snapshot> Server::snapshot() const {
  std::lock_guard<std::mutex> g(snap_mu_);
  return snap_;
}

std::vector<RuntimeBackend> Server::backends() const {
  return snapshot()->backends;
}

void Server::shutdown_backend_sessions(const std::string& backend_name, uint32_t spread_ms) {
  for (auto& w : workers_)
    w->post([backend_name, spread_ms](Worker& w) { w.shutdown_backend(backend_name, spread_ms); });
}

bool Server::admit_global() {
  int64_t n = active_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n > static_cast<int64_t>(max_conn_.load(std::memory_order_relaxed))) {
    active_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void Server::release_global() {
  active_.fetch_sub(1, std::memory_order_relaxed);
}

bool Server::admit_ip(const std::string& ip) {
  uint32_t per_ip = max_per_ip_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(ip_mu_);
  uint32_t& c = per_ip_[ip];
  if (per_ip != 0 && c >= per_ip) {
    if (c == 0) per_ip_.erase(ip);
    return false;
  }
  ++c;
  return true;
}

void Server::release_ip(const std::string& ip) {
  std::lock_guard<std::mutex> g(ip_mu_);
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
}

void Server::close_session(const SessionRef& ref, CloseReason why) {
  if (ref.worker < 0 || static_cast<size_t>(ref.worker) >= workers_.size()) return;
  uint64_t id = ref.session;
  workers_[ref.worker]->post([id, why](Worker& w) { w.close_session(id, why); });
}

void Server::update_gauges() {
  metrics_.budget_used->Set(static_cast<double>(budget_.used()));
  metrics_.budget_limit->Set(static_cast<double>(budget_.limit()));
  metrics_.affinity_entries->Set(static_cast<double>(affinity_.size()));
  metrics_.registry_entries->Set(static_cast<double>(registry_.size()));
}

bool Server::set_admin_override(const std::string& backend, conf::BackendAdmin a) {
  std::lock_guard<std::mutex> g(snap_mu_);
  if (!states_.count(backend)) return false;
  admin_override_[backend] = a;
  snap_ = build(cfg_);
  return true;
}

bool Server::set_weight_override(const std::string& backend, uint32_t weight) {
  std::lock_guard<std::mutex> g(snap_mu_);
  if (!states_.count(backend)) return false;
  weight_override_[backend] = weight;
  snap_ = build(cfg_);
  return true;
}

bool Server::start_evacuation(std::shared_ptr<Evacuation> ev) {
  {
    std::lock_guard<std::mutex> g(evac_mu_);
    auto& slot = evacuations_[ev->backend];
    if (slot && !slot->done() && !slot->cancelled.load()) return false;
    slot = ev;
  }
  ev->workers_left.store(static_cast<int>(workers_.size()));
  for (auto& w : workers_) w->post([ev](Worker& w) { w.evacuate(ev); });
  return true;
}

bool Server::cancel_evacuation(const std::string& backend) {
  std::lock_guard<std::mutex> g(evac_mu_);
  auto it = evacuations_.find(backend);
  if (it == evacuations_.end() || it->second->done() || it->second->cancelled.load()) return false;
  it->second->cancelled.store(true);
  return true;
}

std::shared_ptr<Evacuation> Server::evacuation(const std::string& backend) const {
  std::lock_guard<std::mutex> g(evac_mu_);
  auto it = evacuations_.find(backend);
  return it == evacuations_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Evacuation>> Server::evacuations() const {
  std::lock_guard<std::mutex> g(evac_mu_);
  std::vector<std::shared_ptr<Evacuation>> v;
  for (auto& [n, e] : evacuations_) v.push_back(e);
  return v;
}

namespace {
// Runs fn on a worker's loop and waits for its answer (not on a data loop).
template <typename T>
std::optional<T> ask(Worker& w, std::function<T(Worker&)> fn, uint32_t timeout_ms) {
  auto p = std::make_shared<std::promise<T>>();
  auto f = p->get_future();
  w.post([p, fn = std::move(fn)](Worker& w) { p->set_value(fn(w)); });
  if (f.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready)
    return std::nullopt;
  return f.get();
}
}  // namespace

std::optional<Session::Info> Server::client_info(const ClientKey& key, uint32_t timeout_ms) {
  auto ref = registry_.find(key);
  if (!ref || ref->worker < 0 || static_cast<size_t>(ref->worker) >= workers_.size())
    return std::nullopt;
  uint64_t id = ref->session;
  auto r = ask<std::optional<Session::Info>>(
      *workers_[ref->worker], [id](Worker& w) { return w.session_info(id); }, timeout_ms);
  return r ? *r : std::nullopt;
}

bool Server::kick_client(const ClientKey& key, uint32_t timeout_ms) {
  auto ref = registry_.find(key);
  if (!ref || ref->worker < 0 || static_cast<size_t>(ref->worker) >= workers_.size())
    return false;
  uint64_t id = ref->session;
  auto r = ask<bool>(*workers_[ref->worker], [id](Worker& w) { return w.kick(id); }, timeout_ms);
  return r && *r;
}

bool Server::workers_alive(uint32_t timeout_ms) {
  for (auto& w : workers_)
    if (!ask<bool>(*w, [](Worker&) { return true; }, timeout_ms)) return false;
  return true;
}

}  // namespace lb
