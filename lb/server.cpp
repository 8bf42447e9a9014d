#include "lb/server.hpp"

#include <chrono>
#include <thread>

#include "lb/log.hpp"
#include "lb/worker.hpp"
#include "net/limits.hpp"

namespace lb {

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
  s->cfg = cfg;
  s->generation = ++generation_;
  for (const auto& b : cfg.backends) {
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
  s->balancer = make_balancer(cfg.balance, cfg.backends);
  s->max_connections = cfg.limits.max_connections
                           ? cfg.limits.max_connections
                           : default_max_connections(net::raise_nofile_limit());
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

}  // namespace lb
