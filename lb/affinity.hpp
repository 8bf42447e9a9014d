// Client -> backend, shared by all workers (one mutex; touched once per new
// session, never per byte). Keyed by ClientKey (a 128-bit hash of the client
// id) and valued by the backend's name hash, so an entry has a fixed size
// whatever the client id and survives config swaps (backends are matched by
// name). Bounded twice: at most max_entries entries and max_bytes bytes
// (kEntryBytes each); least recently used entries go first, and an entry not
// used for ttl expires. get() refreshes both.
//
// Storage (issue 13, lb/flat_table.hpp): 40-byte entries {key, backend, last
// use, LRU prev/next as entry numbers} packed in chunks of 64, so the LRU list
// is intrusive and an entry is nothing else, plus an open-addressing index of
// 4-byte entry numbers (load factor at most 4/5; it doubles while the table
// fills, never beyond what capacity() entries need, and shrinks back once
// under 1/4 full). It never throws: when memory for one more entry cannot be
// had, the table makes room by dropping its least recently used entries (a
// warning is logged).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "lb/client_key.hpp"
#include "lb/flat_table.hpp"

namespace lb {

class AffinityTable {
 public:
  // Heap bytes per entry, allocator overhead included, at the worst point:
  // just after the index doubled (4 B / 0.4 = 10 B) with a chunk just begun
  // (40 B entries, up to 63 unused): measured with glibc's mallinfo2 after
  // every put from 10,000 to 100,000 entries, at most 51.1 B (at 13,121
  // entries; tests/unit/lb/flat_memory_test.cpp; below 10,000 the fixed
  // minimum arrays and glibc's tcache weigh: about 52 B at 1,665). At
  // capacity() entries the index is at most slots_for(capacity()) and the
  // table 45.5 B an entry, so max_bytes bounds it with room to spare. While
  // entries go (erase, expiry) the index shrinks only under 1/4 full: up to
  // 57.2 B an entry measured then, the whole table never above what it held
  // at its largest. (The list + hash map before issue 13: 126 B at 100,000
  // entries, 131 B at worst.)
  static constexpr uint64_t kEntryBytes = 52;

  AffinityTable(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms);

  struct Entry {
    ClientKey key;
    uint64_t backend;      // name hash
    int64_t last_used_ms;  // steady clock (CLOCK_MONOTONIC: the same in every process of a host)
  };
  // Every live entry, most recently used first (binary upgrade hands them over).
  std::vector<Entry> dump() const;
  // Adds entries (those already present are kept), least recently used first:
  // the result is `entries` (minus the expired and the present ones; of a key
  // given twice, the later) in front of the old entries, cut to capacity().
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
  struct Slot {
    ClientKey key;
    uint64_t backend;
    int64_t last_used_ms;
    uint32_t prev, next;  // LRU neighbours: entry numbers, flat::kNone at the ends
  };
  static_assert(sizeof(Slot) == 40);

  void evict_locked(int64_t now_ms);
  bool room_locked();  // space for one more entry
  void insert_front_locked(const ClientKey& key, uint64_t backend, int64_t last_used_ms);
  void remove_locked(uint32_t i);
  void unlink_locked(uint32_t i);
  void push_front_locked(uint32_t i);

  mutable std::mutex mu_;
  uint64_t cap_;
  int64_t ttl_ms_;
  flat::Table<Slot> t_;
  uint32_t head_ = flat::kNone;  // most recently used
  uint32_t tail_ = flat::kNone;
};

}  // namespace lb
