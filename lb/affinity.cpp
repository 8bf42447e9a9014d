#include "lb/affinity.hpp"

namespace lb {

std::optional<std::string> AffinityTable::get(const std::string& client_id, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(client_id);
  if (it == map_.end()) return std::nullopt;
  if (now_ms - it->second->last_used_ms > ttl_ms_) {
    lru_.erase(it->second);
    map_.erase(it);
    return std::nullopt;
  }
  it->second->last_used_ms = now_ms;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->backend;
}

void AffinityTable::put(const std::string& client_id, const std::string& backend, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(client_id);
  if (it != map_.end()) {
    it->second->backend = backend;
    it->second->last_used_ms = now_ms;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(Entry{client_id, backend, now_ms});
  map_.emplace(client_id, lru_.begin());
  evict_locked(now_ms);
}

void AffinityTable::erase(const std::string& client_id) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(client_id);
  if (it == map_.end()) return;
  lru_.erase(it->second);
  map_.erase(it);
}

void AffinityTable::set_limits(size_t max_entries, int64_t ttl_ms) {
  std::lock_guard<std::mutex> g(mu_);
  max_ = max_entries;
  ttl_ms_ = ttl_ms;
  evict_locked(INT64_MIN);
}

size_t AffinityTable::size() const {
  std::lock_guard<std::mutex> g(mu_);
  return map_.size();
}

// Drops entries beyond the size bound, then expired ones from the LRU tail
// (the tail is the least recently used, so expiry stops at the first live one).
void AffinityTable::evict_locked(int64_t now_ms) {
  while (map_.size() > max_) {
    map_.erase(lru_.back().client_id);
    lru_.pop_back();
  }
  if (now_ms == INT64_MIN) return;
  while (!lru_.empty() && now_ms - lru_.back().last_used_ms > ttl_ms_) {
    map_.erase(lru_.back().client_id);
    lru_.pop_back();
  }
}

}  // namespace lb
