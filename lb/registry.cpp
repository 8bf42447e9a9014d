#include "lb/registry.hpp"

namespace lb {

std::optional<SessionRef> ClientRegistry::add(const ClientKey& key, const SessionRef& ref) {
  std::lock_guard<std::mutex> g(mu_);
  auto [it, inserted] = map_.try_emplace(key, ref);
  if (inserted) return std::nullopt;
  SessionRef old = it->second;
  it->second = ref;
  if (old.backend != ref.backend) return old;
  return std::nullopt;
}

std::optional<SessionRef> ClientRegistry::displace(const ClientKey& key, uint64_t backend) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(key);
  if (it == map_.end() || it->second.backend == backend) return std::nullopt;
  SessionRef old = it->second;
  map_.erase(it);
  return old;
}

void ClientRegistry::remove(const ClientKey& key, uint64_t session) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(key);
  if (it != map_.end() && it->second.session == session) map_.erase(it);
}

std::optional<SessionRef> ClientRegistry::find(const ClientKey& key) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

size_t ClientRegistry::size() const {
  std::lock_guard<std::mutex> g(mu_);
  return map_.size();
}

}  // namespace lb
