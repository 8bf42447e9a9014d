#include "lb/server.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "lb/kernel_splice.hpp"
#include "lb/log.hpp"
#include "lb/worker.hpp"
#include "net/limits.hpp"

namespace lb {

uint32_t default_max_connections(uint64_t nofile) {
  constexpr uint64_t kReserve = 128;  // listeners, metrics, health checks, logs
  constexpr uint64_t per_session = 2;  // the client's socket and the broker's
  if (nofile <= kReserve + per_session) return 1;
  uint64_t n = (nofile - kReserve) / per_session;
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
      affinity_(cfg.balance.affinity_max_entries, cfg.balance.affinity_max_bytes,
                int64_t{cfg.balance.affinity_ttl_s} * 1000),
      budget_(cfg.limits.memory_budget_bytes),
      listeners_(cfg.listeners) {
  {
    std::lock_guard<std::mutex> g(snap_mu_);
    snap_ = build(cfg);
  }
  size_t n = std::min(worker_count_for(cfg), kMaxWorkers);
  for (size_t i = 0; i < n; ++i) {
    owned_[i] = std::make_unique<Worker>(*this, static_cast<int>(i));
    slots_[i].store(owned_[i].get());
    active_slots_.push_back(static_cast<int>(i));
  }
  n_active_.store(n);
}

Server::~Server() {
  each_worker([](Worker& w) { w.post([](Worker& w) { w.stop(); }); });
  join();
  for (size_t i = 0; i < kMaxWorkers; ++i) {
    slots_[i].store(nullptr);
    owned_[i].reset();
  }
}

Worker* Server::worker(int slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= kMaxWorkers) return nullptr;
  return slots_[slot].load(std::memory_order_acquire);
}

std::vector<Worker*> Server::all_workers() const {
  std::vector<Worker*> v;
  for (const auto& s : slots_)
    if (Worker* w = s.load(std::memory_order_acquire)) v.push_back(w);
  return v;
}

std::shared_ptr<Snapshot> Server::build(const conf::Config& cfg, bool keep_listener_tls) {
  // Called with snap_mu_ held.
  auto s = std::make_shared<Snapshot>();
  cfg_ = cfg;
  s->cfg = cfg;
  // Discovered backends join the file's (lb/server_scale.cpp); a name the file
  // uses itself is the file's.
  for (const auto& [source, list] : discovered_)
    for (const auto& b : list) {
      bool clash = false;
      for (const auto& f : s->cfg.backends) clash |= f.name == b.name;
      if (!clash) s->cfg.backends.push_back(b);
    }
  for (auto& b : s->cfg.backends) {  // operator overrides (admin API)
    if (auto it = weight_override_.find(b.name); it != weight_override_.end())
      b.weight = it->second;
    if (auto it = admin_override_.find(b.name); it != admin_override_.end()) b.admin = it->second;
  }
  s->generation = ++generation_;
  for (const auto& b : s->cfg.backends) {
    auto& st = states_[b.name];
    if (!st) {
      st = std::make_shared<BackendState>(b.name);
      st->metrics = metrics_.backend(b.name);
      st->connacks = std::make_unique<ConnackCounters>(metrics_.connacks_family(), b.name);
      // One lane per worker slot, each used only by the worker in that slot.
      for (size_t w = 0; w < kMaxWorkers; ++w)
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
  if (keep_listener_tls && snap_)
    s->listener_tls = snap_->listener_tls;
  else
    build_listener_tls(s->cfg, *s);
  s->balancer = make_balancer(cfg.balance, s->cfg.backends);
  s->routes = plan_routes(s->cfg);
  s->max_connections = cfg.limits.max_connections
                           ? cfg.limits.max_connections
                           : default_max_connections(net::raise_nofile_limit());
  max_conn_.store(s->max_connections);
  max_per_ip_.store(cfg.limits.max_connections_per_ip);
  admission_.configure(cfg.limits, steady_ms());
  return s;
}

void Server::build_listener_tls(const conf::Config& cfg, Snapshot& s) {
  // By listener name: each reload builds new contexts from the files for new
  // connections; live connections keep the context they started with.
  for (const auto& l : cfg.listeners) {
    if (!l.tls) continue;
    std::shared_ptr<tls::Context> old;
    if (snap_)
      if (auto it = snap_->listener_tls.find(l.name); it != snap_->listener_tls.end())
        old = it->second;
    std::string err;
    std::shared_ptr<tls::Context> ctx = tls::Context::server(*l.tls, err);
    if (ctx && !ctx->set_alpn({"mqtt"}, err)) ctx.reset();
    if (!ctx) {
      logf(LogLevel::Error, "listener %s: TLS: %s%s", l.name.c_str(), err.c_str(),
           old ? "; keeping the previous certificate" : "");
      if (!old) tls_error_ = "listener " + l.name + ": TLS: " + err;
      if (old) s.listener_tls[l.name] = old;
      continue;
    }
    // Resumption survives the reload (tickets issued by `old` stay valid) only
    // when the listener's policy is unchanged: a reload that tightens client
    // verification must not be bypassed by resuming older sessions.
    if (old && !ctx->inherit_ticket_keys(*old))
      logf(LogLevel::Info,
           "listener %s: TLS identity or client verification changed: sessions made before "
           "this reload will not resume",
           l.name.c_str());
    metrics_.cert_expiry->Add({{"listener", l.name}}).Set(static_cast<double>(ctx->not_after()));
    s.listener_tls[l.name] = std::move(ctx);
  }
}

bool forwarding_ok(conf::Forwarding f, std::string& err) {
  if (f == conf::Forwarding::Userspace) return true;
  std::string why;
  SpliceEngine* e = SpliceEngine::get(&why);
  static std::atomic<int> logged{-1};  // the last mode logged: once each, not per reload
  int mode = static_cast<int>(f) * 2 + (e ? 1 : 0);
  bool log = logged.exchange(mode) != mode;
  if (e) {
    if (log)
      logf(LogLevel::Info,
           "forwarding %s: plain-TCP sessions are joined in the kernel (BPF sockhash) once "
           "placed; TLS and WebSocket sessions stay in the userspace pump",
           f == conf::Forwarding::Kernel ? "kernel" : "auto");
    return true;
  }
  if (f == conf::Forwarding::Kernel) {
    err = "/forwarding: \"kernel\" but in-kernel forwarding is unavailable: " + why;
    return false;
  }
  if (log)
    logf(LogLevel::Warn, "forwarding auto: every session uses the userspace pump: %s", why.c_str());
  return true;
}

bool Server::start(std::string& err, std::map<std::string, std::vector<int>> inherited) {
  if (!tls_error_.empty()) {
    err = tls_error_;
    return false;
  }
  if (!forwarding_ok(snapshot()->cfg.forwarding, err)) return false;
  std::vector<conf::Listener> fresh;
  for (const auto& l : listeners_)
    if (!inherited.count(l.name)) fresh.push_back(l);
  if (!Worker::check_free(fresh, err)) return false;
  const size_t n = active_slots_.size();
  for (size_t k = 0; k < n; ++k) {
    Worker& w = *owned_[active_slots_[k]];
    for (const auto& l : listeners_) {
      auto it = inherited.find(l.name);
      if (it == inherited.end() || it->second.empty()) {
        if (!w.listen({l}, err)) return false;
        continue;
      }
      // Inherited sockets are shared out; a worker without one joins the
      // SO_REUSEPORT group with a socket of its own.
      bool got = false;
      for (size_t j = k; j < it->second.size(); j += n) {
        Listener::hold(l.bind);
        w.adopt_listener(l, it->second[j]);
        got = true;
      }
      if (!got && !w.listen({l}, err)) return false;
    }
  }
  for (int slot : active_slots_) owned_[slot]->start();
  started_.store(true);
  logf(LogLevel::Info, "started %zu workers, %zu listeners, %zu backends, max_connections=%u", n,
       listeners_.size(), snapshot()->backends.size(), max_conn_.load());
  return true;
}

void Server::stop_accepting() {
  stopping_.store(true);
  each_worker([](Worker& w) { w.post([](Worker& w) { w.stop_accepting(); }); });
}

void Server::hand_over() {
  handing_over_.store(true);
  each_worker([](Worker& w) { w.post([](Worker& w) { w.stop_accepting(); }); });
}

void Server::close_all_sessions() {
  stopping_.store(true);
  each_worker([](Worker& w) { w.post([](Worker& w) { w.stop(); }); });
}

void Server::join() {
  for (auto& w : owned_)
    if (w) w->join();
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

std::shared_ptr<const Snapshot> Server::snapshot() const {
  std::lock_guard<std::mutex> g(snap_mu_);
  return snap_;
}

conf::Config Server::file_config() const {
  std::lock_guard<std::mutex> g(snap_mu_);
  return cfg_;
}

std::vector<RuntimeBackend> Server::backends() const {
  return snapshot()->backends;
}

void Server::shutdown_backend_sessions(const std::string& backend_name, uint32_t spread_ms) {
  each_worker([&](Worker& w) {
    w.post([backend_name, spread_ms](Worker& w) { w.shutdown_backend(backend_name, spread_ms); });
  });
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
  Worker* w = worker(ref.worker);
  if (!w) return;
  uint64_t id = ref.session;
  w->post([id, why](Worker& w) { w.close_session(id, why); });
}

void Server::update_gauges() {
  metrics_.connections_limit->Set(static_cast<double>(max_conn_.load(std::memory_order_relaxed)));
  metrics_.budget_used->Set(static_cast<double>(budget_.used()));
  metrics_.budget_limit->Set(static_cast<double>(budget_.limit()));
  metrics_.affinity_entries->Set(static_cast<double>(affinity_.size()));
  metrics_.registry_entries->Set(static_cast<double>(registry_.size()));
  metrics_.workers_accepting->Set(static_cast<double>(active_slots_.size()));
  metrics_.workers_retiring->Set(static_cast<double>(retiring_.size()));
}

}  // namespace lb
