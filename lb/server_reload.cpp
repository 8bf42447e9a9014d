// Server: reloads that change everything (listeners, workers, backends)
// without touching an established session, in two steps: prepare (all that
// can fail) and commit. See server.hpp.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>

#include "lb/listener.hpp"
#include "lb/log.hpp"
#include "lb/server.hpp"
#include "lb/worker.hpp"

namespace lb {

Server::Prepared::~Prepared() {
  for (auto& s : socks)  // not committed: nothing is kept
    if (s.fd >= 0) Listener::close_socket(s.fd, s.listener.bind);
}

namespace {

size_t target_workers(const conf::Config& cfg) {
  unsigned n = cfg.workers ? cfg.workers : std::thread::hardware_concurrency();
  return std::min<size_t>(n == 0 ? 1 : n, Server::kMaxWorkers);
}

const conf::Listener* by_name(const std::vector<conf::Listener>& v, const std::string& name) {
  for (const auto& l : v)
    if (l.name == name) return &l;
  return nullptr;
}

// A bind that a process other than this one might hold: probed without
// SO_REUSEPORT (which would silently share the port with it).
bool probe(const conf::Endpoint& ep, std::string& err) {
  conf::Listener l;
  l.name = "probe";
  l.bind = ep;
  if (Worker::check_free({l}, err)) return true;
  auto at = err.find("cannot bind");
  if (at != std::string::npos) err = err.substr(at);
  return false;
}

}  // namespace

std::unique_ptr<Server::Prepared> Server::prepare(const conf::Config& cfg,
                                                  std::vector<std::string>& errors) {
  std::string ferr;
  if (!forwarding_ok(cfg.forwarding, ferr)) {
    errors.push_back(ferr);
    return nullptr;
  }
  auto p = std::make_unique<Prepared>();
  p->cfg = cfg;
  const size_t target = target_workers(cfg);
  const size_t keep = std::min(target, active_slots_.size());
  p->new_workers = static_cast<int>(target - keep);
  for (size_t k = keep; k < active_slots_.size(); ++k) p->retire.push_back(active_slots_[k]);
  size_t free_slots = 0;
  for (size_t i = 0; i < kMaxWorkers; ++i) free_slots += owned_[i] ? 0 : 1;
  if (static_cast<size_t>(p->new_workers) > free_slots) {
    errors.push_back("/workers: " + std::to_string(target) +
                     " workers while older ones still drain: no free worker slot");
    return nullptr;
  }
  // Listeners: kept (same name, address and TLS-ness), new or re-bound, removed.
  for (const auto& old : listeners_) {
    const conf::Listener* now = by_name(cfg.listeners, old.name);
    if (!now || now->bind.str() != old.bind.str() || now->tls.has_value() != old.tls.has_value())
      p->remove_listeners.push_back(old.name);
  }
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const conf::Listener& l = cfg.listeners[i];
    const conf::Listener* old = by_name(listeners_, l.name);
    const bool kept =
        old && old->bind.str() == l.bind.str() && old->tls.has_value() == l.tls.has_value();
    bool ours = false;  // an address we listen on already (SO_REUSEPORT joins our own group)
    for (const auto& o : listeners_) ours |= o.bind.str() == l.bind.str();
    // Or one a previous reload moved away (or a retired worker's) that its
    // worker is still closing: moving a listener back must not be refused.
    ours = ours || Listener::held(l.bind);
    std::string err;
    if (!ours && !probe(l.bind, err)) {
      errors.push_back("/listeners/" + std::to_string(i) + "/bind: " + err);
      continue;
    }
    auto open = [&](int slot) {
      int fd = Listener::open_socket(l.bind, Worker::kListenBacklog, err);
      if (fd < 0) {
        errors.push_back("/listeners/" + std::to_string(i) + "/bind: " + err);
        return false;
      }
      p->socks.push_back({l, slot, fd});
      return true;
    };
    if (!kept)
      for (size_t k = 0; k < keep; ++k)
        if (!open(active_slots_[k])) break;
    for (int k = 0; k < p->new_workers; ++k)
      if (!open(-(k + 1))) break;
  }
  // Metrics and admin binds that change must be free now (they are re-created
  // after the commit, lb/main.cpp).
  const conf::Config running = file_config();
  std::string err;
  if (cfg.metrics.bind &&
      (!running.metrics.bind || running.metrics.bind->str() != cfg.metrics.bind->str()) &&
      !probe(*cfg.metrics.bind, err))
    errors.push_back("/metrics/bind: " + err);
  if (cfg.admin.bind &&
      (!running.admin.bind || running.admin.bind->str() != cfg.admin.bind->str()) &&
      !probe(*cfg.admin.bind, err))
    errors.push_back("/admin/bind: " + err);
  for (const auto& b : running.backends) {
    bool still = false;
    for (const auto& n : cfg.backends) still |= n.name == b.name;
    if (!still) p->removed_backends.push_back(b.name);
  }
  if (!errors.empty()) return nullptr;  // ~Prepared closes what was bound
  return p;
}

void Server::commit(std::unique_ptr<Prepared> p) {
  const conf::Config& cfg = p->cfg;
  swap(cfg);
  const uint32_t drain_ms = cfg.limits.drain_timeout_ms;
  // Accepting workers that stay: listeners removed or re-bound, then new ones.
  for (size_t k = 0; k < active_slots_.size(); ++k) {
    int slot = active_slots_[k];
    if (std::find(p->retire.begin(), p->retire.end(), slot) != p->retire.end()) continue;
    std::vector<std::pair<conf::Listener, int>> add;
    for (auto& s : p->socks)
      if (s.slot == slot) {
        add.emplace_back(s.listener, s.fd);
        s.fd = -1;  // the worker owns it now
      }
    auto remove = p->remove_listeners;
    owned_[slot]->post([remove, add, drain_ms](Worker& w) {
      for (const auto& name : remove) w.remove_listener(name, drain_ms);
      for (const auto& [l, fd] : add) w.adopt_listener(l, fd);
    });
  }
  // Retired workers stop accepting; their sessions end by themselves or at the drain timeout.
  for (int slot : p->retire) {
    owned_[slot]->post([drain_ms](Worker& w) { w.retire(drain_ms); });
    retiring_.push_back(slot);
    active_slots_.erase(std::find(active_slots_.begin(), active_slots_.end(), slot));
  }
  // New workers, each with its own socket for every listener.
  int added = 0;
  for (int k = 0; k < p->new_workers; ++k) {
    size_t slot = 0;
    while (slot < kMaxWorkers && owned_[slot]) ++slot;
    owned_[slot] = std::make_unique<Worker>(*this, static_cast<int>(slot));
    for (auto& s : p->socks)
      if (s.slot == -(k + 1)) {
        owned_[slot]->adopt_listener(s.listener, s.fd);
        s.fd = -1;
      }
    owned_[slot]->start();
    slots_[slot].store(owned_[slot].get(), std::memory_order_release);
    active_slots_.push_back(static_cast<int>(slot));
    ++added;
  }
  std::sort(active_slots_.begin(), active_slots_.end());
  n_active_.store(active_slots_.size());
  listeners_ = cfg.listeners;
  // Backends the file no longer names take no new clients (they are not in the
  // snapshot); their sessions move off at the configured rate.
  for (const auto& name : p->removed_backends) evacuate_removed(name, cfg);
  if (added || !p->retire.empty() || !p->remove_listeners.empty())
    logf(LogLevel::Info, "reload: %zu workers accepting (%d added, %zu retiring), %zu listeners",
         active_slots_.size(), added, p->retire.size(), listeners_.size());
}

void Server::reap() {
  bool reaped = false;
  apply_discovered();  // DNS discovery results (lb/server_scale.cpp)
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    Worker* w = owned_[*it].get();
    if (!w || !w->finished()) {
      ++it;
      continue;
    }
    w->join();
    slots_[*it].store(nullptr, std::memory_order_release);
    owned_[*it].reset();  // its sessions are all gone: nothing refers to the slot
    it = retiring_.erase(it);
    reaped = true;
  }
  // What the retired threads allocated goes back to the kernel, not only to
  // glibc's arenas: many reloads must not leave the process bigger.
  if (reaped) malloc_trim(0);
  // A removed backend's series go once nothing refers to its state any more
  // (no session, no snapshot): until then they still count.
  std::vector<std::shared_ptr<BackendState>> gone;
  {
    std::lock_guard<std::mutex> g(snap_mu_);
    for (auto it = states_.begin(); it != states_.end();) {
      bool configured = false;
      for (const auto& b : cfg_.backends) configured |= b.name == it->first;
      for (const auto& [source, list] : discovered_)  // DNS discovery
        for (const auto& b : list) configured |= b.name == it->first;
      if (!configured && it->second.use_count() == 1) {
        gone.push_back(std::move(it->second));
        it = states_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& st : gone) {
    metrics_.remove_backend(st->metrics);
    st->connacks->remove_all();
    logf(LogLevel::Info, "backend %s: removed; its metric series are gone", st->name.c_str());
  }
}

std::map<std::string, std::vector<int>> Server::listening_fds() {
  std::map<std::string, std::vector<int>> out;
  for (int slot : active_slots_) {
    auto fds = owned_[slot]->listening_fds(2000);
    for (auto& [name, fd] : fds) out[name].push_back(fd);
  }
  return out;
}

}  // namespace lb
