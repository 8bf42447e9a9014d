// Client -> backend, shared by all workers (one mutex; touched once per new
// session, never per byte). Keyed by ClientKey (a 128-bit hash of the client
// id) and valued by the backend's name hash, so an entry has a fixed size
// whatever the client id and survives config swaps (backends are matched by
// name). Bounded twice: at most max_entries entries and max_bytes bytes
// (kEntryBytes each); least recently used entries go first, and an entry not
// used for ttl expires. get() refreshes both.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "lb/client_key.hpp"

namespace lb {

class AffinityTable {
 public:
  // Memory per entry: list node + hash node + bucket, with allocator overhead
  // (measured on glibc x86_64; tests/unit/lb/affinity_test.cpp checks the order).
  static constexpr uint64_t kEntryBytes = 136;

  AffinityTable(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms);

  struct Entry {
    ClientKey key;
    uint64_t backend;      // name hash
    int64_t last_used_ms;  // steady clock (CLOCK_MONOTONIC: the same in every process of a host)
  };
  // Every live entry, most recently used first (binary upgrade hands them over).
  std::vector<Entry> dump() const;
  // Adds entries (those already present are kept), least recently used first.
  void load(const std::vector<Entry>& entries, int64_t now_ms);

  // The backend (name hash) last used by `key`, if the entry is alive at now_ms.
  std::optional<uint64_t> get(const ClientKey& key, int64_t now_ms);
  void put(const ClientKey& key, uint64_t backend, int64_t now_ms);
  void erase(const ClientKey& key);
  // New bounds (config reload); evicts at once if the table is now too big.
  void set_limits(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms);
  size_t size() const;
  uint64_t capacity() const;  // entries allowed by both bounds

 private:
  void evict_locked(int64_t now_ms);

  mutable std::mutex mu_;
  uint64_t cap_;
  int64_t ttl_ms_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<ClientKey, std::list<Entry>::iterator, ClientKeyHash> map_;
};

}  // namespace lb
