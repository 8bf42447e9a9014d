#include "lb/affinity.hpp"

#include <algorithm>

namespace lb {

namespace {
uint64_t capacity_for(uint64_t max_entries, uint64_t max_bytes) {
  return std::max<uint64_t>(1, std::min(max_entries, max_bytes / AffinityTable::kEntryBytes));
}
}  // namespace

AffinityTable::AffinityTable(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms)
    : cap_(capacity_for(max_entries, max_bytes)), ttl_ms_(ttl_ms) {}

std::optional<uint64_t> AffinityTable::get(const ClientKey& key, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(key);
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

void AffinityTable::put(const ClientKey& key, uint64_t backend, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(key);
  if (it != map_.end()) {
    it->second->backend = backend;
    it->second->last_used_ms = now_ms;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(Entry{key, backend, now_ms});
  map_.emplace(key, lru_.begin());
  evict_locked(now_ms);
}

void AffinityTable::erase(const ClientKey& key) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return;
  lru_.erase(it->second);
  map_.erase(it);
}

void AffinityTable::set_limits(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms) {
  std::lock_guard<std::mutex> g(mu_);
  cap_ = capacity_for(max_entries, max_bytes);
  ttl_ms_ = ttl_ms;
  evict_locked(INT64_MIN);
}

std::vector<AffinityTable::Entry> AffinityTable::dump() const {
  std::lock_guard<std::mutex> g(mu_);
  return std::vector<Entry>(lru_.begin(), lru_.end());
}

void AffinityTable::load(const std::vector<Entry>& entries, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (map_.count(it->key) || now_ms - it->last_used_ms > ttl_ms_) continue;
    lru_.push_front(*it);
    map_.emplace(it->key, lru_.begin());
  }
  evict_locked(now_ms);
}

size_t AffinityTable::size() const {
  std::lock_guard<std::mutex> g(mu_);
  return map_.size();
}

uint64_t AffinityTable::capacity() const {
  std::lock_guard<std::mutex> g(mu_);
  return cap_;
}

// Drops entries beyond the bound, then expired ones from the LRU tail (the
// tail is the least recently used, so expiry stops at the first live one).
void AffinityTable::evict_locked(int64_t now_ms) {
  while (map_.size() > cap_) {
    map_.erase(lru_.back().key);
    lru_.pop_back();
  }
  if (now_ms == INT64_MIN) return;
  while (!lru_.empty() && now_ms - lru_.back().last_used_ms > ttl_ms_) {
    map_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

}  // namespace lb
