// Admission before the expensive part: token buckets for new connections
// (globally and per source prefix), applied at accept — before a TLS
// handshake (~0.5 ms of CPU) or any buffer — and the flapping-client penalty
// box, applied once the client id is known. Pure logic over an explicit
// clock; thread-safe (one mutex: touched once per connection, never per byte);
// bounded (the per-prefix and per-client tables evict least recently used).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>

#include "conf/config.hpp"
#include "lb/client_key.hpp"

namespace lb {

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double rate_per_s, double burst, int64_t now_ms)
      : rate_(rate_per_s), burst_(burst), tokens_(burst), last_ms_(now_ms) {}
  bool take(int64_t now_ms);  // one token, if there is one

 private:
  double rate_ = 0, burst_ = 0, tokens_ = 0;
  int64_t last_ms_ = 0;
};

class Admission {
 public:
  enum class Verdict : uint8_t { Admit, GlobalRate, IpRate };
  enum class Flap : uint8_t { Ok, Penalized, JustPenalized };

  static constexpr size_t kMaxPrefixes = 65536;
  static constexpr size_t kMaxClients = 262144;

  // New limits (start and reload); buckets are rebuilt when their rates change.
  void configure(const conf::Limits& l, int64_t now_ms);
  Verdict admit(const sockaddr_storage& peer, int64_t now_ms);
  // After the CONNECT: penalty_ms is set to the penalty in force (JustPenalized:
  // this connect put the id in the box; log it once).
  Flap flapping(const ClientKey& key, int64_t now_ms, int64_t& penalty_ms);

 private:
  struct Prefix {
    std::array<uint8_t, 16> bytes;
    bool operator==(const Prefix&) const = default;
  };
  struct PrefixHash {
    size_t operator()(const Prefix& p) const;
  };
  struct FlapState {
    int64_t window_start_ms = 0;
    uint32_t count = 0;
    int64_t penalty_until_ms = 0;
    uint32_t strikes = 0;
  };
  Prefix prefix_of(const sockaddr_storage& peer) const;

  std::mutex mu_;
  conf::Limits::ConnectRate rate_;
  conf::Limits::Flap flap_;
  TokenBucket global_;
  std::list<std::pair<Prefix, TokenBucket>> ip_lru_;  // front: most recent
  std::unordered_map<Prefix, decltype(ip_lru_)::iterator, PrefixHash> ip_;
  std::list<std::pair<ClientKey, FlapState>> flap_lru_;
  std::unordered_map<ClientKey, decltype(flap_lru_)::iterator, ClientKeyHash> flaps_;
};

}  // namespace lb
