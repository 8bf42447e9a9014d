// Server: the scale-out hooks (docs/scale-out.md) — another replica's
// placement applied here (shared affinity store), and backends found by DNS
// discovery merged into the snapshot. See server.hpp.
#include <chrono>
#include <set>

#include "lb/log.hpp"
#include "lb/server.hpp"

namespace lb {

namespace {

LogLimiter g_remote_takeover_log(1000);

bool same(const conf::Backend& a, const conf::Backend& b) {
  auto tls = [](const std::optional<conf::BackendTls>& t) {
    return t ? t->ca + "\n" + (t->verify ? "1" : "0") + "\n" + t->sni + "\n" + t->cert + "\n" +
                   t->key
             : std::string("-");
  };
  return a.name == b.name && a.address.str() == b.address.str() && a.weight == b.weight &&
         a.tier == b.tier && a.proxy_protocol == b.proxy_protocol && a.admin == b.admin &&
         tls(a.tls) == tls(b.tls);
}

bool same(const std::vector<conf::Backend>& a, const std::vector<conf::Backend>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}

}  // namespace

bool Server::apply_remote(const ClientKey& key, uint64_t backend, bool live) {
  if (snapshot()->cfg.balance.affinity == conf::Affinity::ClientId)
    affinity_.put(key, backend, steady_ms());
  if (!live) return false;
  auto older = registry_.displace(key, backend);
  if (!older) return false;
  // The client's CONNACK succeeded through another replica, on another
  // broker: the session here is stale (often half-open).
  metrics_.takeovers_cross->Increment();
  uint64_t skipped = 0;
  if (g_remote_takeover_log.allow(steady_ms(), skipped))
    logf(LogLevel::Info,
         "takeover: a client connected through another replica to another backend; closing its "
         "session here (%llu similar lines suppressed)",
         static_cast<unsigned long long>(skipped));
  close_session(*older, CloseReason::Takeover);
  return true;
}

void Server::set_discovered(const std::string& source, std::vector<conf::Backend> backends) {
  std::lock_guard<std::mutex> g(disc_mu_);
  pending_[source] = std::move(backends);
}

void Server::retain_discovered(const std::vector<std::string>& keep) {
  std::set<std::string> k(keep.begin(), keep.end());
  std::vector<std::string> drop;
  {
    std::lock_guard<std::mutex> g(snap_mu_);
    for (const auto& [source, list] : discovered_)
      if (!k.count(source)) drop.push_back(source);
  }
  std::lock_guard<std::mutex> g(disc_mu_);
  for (auto it = pending_.begin(); it != pending_.end();)
    it = k.count(it->first) ? std::next(it) : pending_.erase(it);
  for (const auto& source : drop) pending_[source] = std::nullopt;
}

bool Server::apply_discovered() {
  std::map<std::string, std::optional<std::vector<conf::Backend>>> pending;
  {
    std::lock_guard<std::mutex> g(disc_mu_);
    pending.swap(pending_);
  }
  if (pending.empty()) return false;
  std::set<std::string> before, after;
  conf::Config file;
  {
    std::lock_guard<std::mutex> g(snap_mu_);
    bool changed = false;
    for (auto& [source, list] : pending) {
      auto it = discovered_.find(source);
      if (!list) {
        if (it != discovered_.end()) {
          discovered_.erase(it);
          changed = true;
        }
        continue;
      }
      if (it != discovered_.end() && same(it->second, *list)) continue;
      discovered_[source] = std::move(*list);
      changed = true;
    }
    if (!changed) return false;
    for (const auto& b : snap_->cfg.backends) before.insert(b.name);
    file = cfg_;
    snap_ = build(file, true);  // backends only: listener TLS contexts are kept
    for (const auto& b : snap_->cfg.backends) after.insert(b.name);
  }
  std::string added, removed;
  for (const auto& n : after)
    if (!before.count(n)) {
      added += (added.empty() ? "" : ", ") + n;
      // Back in the answer while it was still being drained: keep its sessions.
      cancel_evacuation(n);
    }
  for (const auto& n : before)
    if (!after.count(n)) {
      removed += (removed.empty() ? "" : ", ") + n;
      evacuate_removed(n, file);
    }
  logf(LogLevel::Info, "discovery: %zu backends; added: %s; removed (draining): %s", after.size(),
       added.empty() ? "none" : added.c_str(), removed.empty() ? "none" : removed.c_str());
  if (backends_changed_) backends_changed_();
  return true;
}

// A backend that left the DNS answer is treated like one a reload removed:
// no new clients (it is not in the snapshot), its sessions move off at the
// configured rate (Server::commit uses it for the backends a reload removed).
void Server::evacuate_removed(const std::string& backend, const conf::Config& cfg) {
  auto ev = std::make_shared<Evacuation>();
  ev->backend = backend;
  ev->rate_per_s = cfg.evacuation.rate_per_s;
  ev->deadline_ms = uint64_t{cfg.evacuation.deadline_s} * 1000;
  ev->reason = 0x9C;  // use another server
  ev->started_wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  start_evacuation(ev);
}

}  // namespace lb
