// The takeover registry: the newest placed session per client, all workers
// (one mutex; touched once when a session is placed and once when it ends).
// Keyed by ClientKey, so it holds no client strings; bounded by the number of
// placed sessions (max_connections). A session is registered only after its
// broker accepted the CONNECT (CONNACK success): a stranger using a device's
// client id with wrong credentials never displaces the device.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "lb/client_key.hpp"

namespace lb {

struct SessionRef {
  int worker = -1;
  uint64_t session = 0;
  uint64_t backend = 0;  // name hash
};

class ClientRegistry {
 public:
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
  mutable std::mutex mu_;
  std::unordered_map<ClientKey, SessionRef, ClientKeyHash> map_;
};

}  // namespace lb
