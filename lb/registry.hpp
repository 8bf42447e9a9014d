// The takeover registry: the newest placed session per client, all workers
// (one mutex; touched once when a session is placed and once when it ends).
// Keyed by ClientKey, so it holds no client strings; bounded by the number of
// placed sessions (max_connections). A session is registered only after its
// broker accepted the CONNECT (CONNACK success): a stranger using a device's
// client id with wrong credentials never displaces the device.
//
// Storage (issue 13, lb/flat_table.hpp): 40-byte entries {key, session,
// backend, worker} packed in chunks of 64, plus an open-addressing index of
// 4-byte entry numbers (load factor at most 4/5; doubles while the table
// fills, shrinks back once under 1/4 full). It never throws: when memory for
// one more entry cannot be had, add() does not record the session (a warning
// is logged; that client is then not taken over, as if never registered).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>

#include "lb/client_key.hpp"
#include "lb/flat_table.hpp"

namespace lb {

struct SessionRef {
  int worker = -1;
  uint64_t session = 0;
  uint64_t backend = 0;  // name hash
};

class ClientRegistry {
 public:
  // Heap bytes per entry at the worst point (just after the index doubled,
  // with a chunk just begun), allocator overhead included, measured like
  // AffinityTable::kEntryBytes: at most 50.8 B from 10,000 to 100,000
  // entries (tests/unit/lb/flat_memory_test.cpp); up to 57.2 B while
  // sessions end and the index has not shrunk yet (under 1/4 full). The hash
  // map before issue 13: 78 B at 100,000 entries, 81 B at worst.
  static constexpr uint64_t kEntryBytes = 52;

  // Records ref as the client's newest session. Returns the older session when
  // it is forwarded to a different backend (the balancer closes it: the
  // brokers cannot see each other); on the same broker the broker takes over
  // itself [MQTT-3.1.4-3].
  std::optional<SessionRef> add(const ClientKey& key, const SessionRef& ref);
  // Another replica placed the client on `backend`: forgets and returns the
  // session forwarded here to a different backend (the caller closes it),
  // exactly once per entry.
  std::optional<SessionRef> displace(const ClientKey& key, uint64_t backend);
  // Forgets the entry if it still is `session`.
  void remove(const ClientKey& key, uint64_t session);
  std::optional<SessionRef> find(const ClientKey& key) const;
  size_t size() const;

 private:
  struct Slot {
    ClientKey key;
    uint64_t session;
    uint64_t backend;
    int32_t worker;
  };
  static_assert(sizeof(Slot) == 40);

  void erase_locked(uint32_t i);

  mutable std::mutex mu_;
  flat::Table<Slot> t_;
};

}  // namespace lb
