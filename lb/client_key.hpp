// The key the balancer's shared tables use for a client id: the first 128 bits
// of its SHA-256. Fixed size whatever the id (MQTT allows 64 KiB), so tables
// are bounded by bytes, never hold a client's string, and cannot be steered:
// finding another id with a victim's key is a second-preimage attack on
// SHA-256. Deterministic across processes and machines (replicas agree).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace lb {

struct ClientKey {
  uint64_t hi = 0, lo = 0;
  bool operator==(const ClientKey&) const = default;
};

ClientKey client_key(std::string_view client_id);

struct ClientKeyHash {
  size_t operator()(const ClientKey& k) const { return static_cast<size_t>(k.lo ^ (k.hi >> 7)); }
};

}  // namespace lb
