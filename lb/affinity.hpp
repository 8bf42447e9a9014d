// Client id -> backend name, shared by all workers (one mutex; touched once per
// new session, never per byte). Bounded: least recently used entries are evicted
// beyond max_entries; an entry not used for ttl expires. get() refreshes both.
// Keyed by backend *name* so entries survive config snapshot swaps.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace lb {

class AffinityTable {
 public:
  AffinityTable(size_t max_entries, int64_t ttl_ms) : max_(max_entries), ttl_ms_(ttl_ms) {}

  // The backend last used by `client_id`, if the entry is alive at now_ms.
  // Refreshes the entry's TTL and LRU position.
  std::optional<std::string> get(const std::string& client_id, int64_t now_ms);
  // Records (or moves) client_id -> backend, refreshed at now_ms.
  void put(const std::string& client_id, const std::string& backend, int64_t now_ms);
  void erase(const std::string& client_id);
  // New bounds (config reload); evicts at once if the table is now too big.
  void set_limits(size_t max_entries, int64_t ttl_ms);
  size_t size() const;

 private:
  struct Entry {
    std::string client_id;
    std::string backend;
    int64_t last_used_ms;
  };
  void evict_locked(int64_t now_ms);

  mutable std::mutex mu_;
  size_t max_;
  int64_t ttl_ms_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
};

}  // namespace lb
