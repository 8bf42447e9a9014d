#include "lb/admission.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace lb {

bool TokenBucket::take(int64_t now_ms) {
  if (now_ms > last_ms_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(now_ms - last_ms_) / 1000.0);
    last_ms_ = now_ms;
  }
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

size_t Admission::PrefixHash::operator()(const Prefix& p) const {
  uint64_t a, b;
  std::memcpy(&a, p.bytes.data(), 8);
  std::memcpy(&b, p.bytes.data() + 8, 8);
  return static_cast<size_t>(a * 0x9E3779B97F4A7C15ull ^ b);
}

void Admission::configure(const conf::Limits& l, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  const auto& r = l.connect_rate;
  bool changed = r.global_per_s != rate_.global_per_s || r.per_ip_per_s != rate_.per_ip_per_s ||
                 r.burst != rate_.burst || r.ip_prefix_v4 != rate_.ip_prefix_v4 ||
                 r.ip_prefix_v6 != rate_.ip_prefix_v6;
  rate_ = r;
  flap_ = l.flap;
  if (!changed) return;
  double gb = r.burst ? r.burst : r.global_per_s;
  global_ = TokenBucket(r.global_per_s, gb, now_ms);
  ip_lru_.clear();
  ip_.clear();
}

Admission::Prefix Admission::prefix_of(const sockaddr_storage& peer) const {
  Prefix p{};
  unsigned bits = 128;
  if (peer.ss_family == AF_INET) {
    p.bytes[10] = p.bytes[11] = 0xff;
    std::memcpy(p.bytes.data() + 12, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, 4);
    bits = 96u + rate_.ip_prefix_v4;
  } else if (peer.ss_family == AF_INET6) {
    std::memcpy(p.bytes.data(), &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, 16);
    bits = rate_.ip_prefix_v6;
  }
  for (unsigned i = bits; i < 128; ++i) p.bytes[i / 8] &= static_cast<uint8_t>(~(0x80u >> (i % 8)));
  return p;
}

Admission::Verdict Admission::admit(const sockaddr_storage& peer, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  if (rate_.per_ip_per_s) {
    Prefix p = prefix_of(peer);
    auto it = ip_.find(p);
    if (it == ip_.end()) {
      double b = rate_.burst ? rate_.burst : rate_.per_ip_per_s;
      ip_lru_.emplace_front(p, TokenBucket(rate_.per_ip_per_s, b, now_ms));
      ip_.emplace(p, ip_lru_.begin());
      if (ip_.size() > kMaxPrefixes) {
        ip_.erase(ip_lru_.back().first);
        ip_lru_.pop_back();
      }
      it = ip_.find(p);
    } else {
      ip_lru_.splice(ip_lru_.begin(), ip_lru_, it->second);
    }
    if (!it->second->second.take(now_ms)) return Verdict::IpRate;
  }
  if (rate_.global_per_s && !global_.take(now_ms)) return Verdict::GlobalRate;
  return Verdict::Admit;
}

Admission::Flap Admission::flapping(const ClientKey& key, int64_t now_ms, int64_t& penalty_ms) {
  std::lock_guard<std::mutex> g(mu_);
  if (!flap_.max_connects) return Flap::Ok;
  auto it = flaps_.find(key);
  if (it == flaps_.end()) {
    flap_lru_.emplace_front(key, FlapState{now_ms, 0, 0, 0});
    flaps_.emplace(key, flap_lru_.begin());
    if (flaps_.size() > kMaxClients) {
      flaps_.erase(flap_lru_.back().first);
      flap_lru_.pop_back();
    }
    it = flaps_.find(key);
  } else {
    flap_lru_.splice(flap_lru_.begin(), flap_lru_, it->second);
  }
  FlapState& f = it->second->second;
  if (now_ms < f.penalty_until_ms) {
    penalty_ms = f.penalty_until_ms - now_ms;
    return Flap::Penalized;
  }
  if (now_ms - f.window_start_ms >= int64_t{flap_.window_s} * 1000) {
    f.window_start_ms = now_ms;
    f.count = 0;
    // A quiet window forgives a strike: the next penalty is shorter again.
    if (f.strikes > 0 && now_ms - f.penalty_until_ms >= int64_t{flap_.window_s} * 1000) --f.strikes;
  }
  if (++f.count <= flap_.max_connects) return Flap::Ok;
  uint64_t p = uint64_t{flap_.penalty_s} << std::min<uint32_t>(f.strikes, 20);
  p = std::min<uint64_t>(p, flap_.max_penalty_s);
  ++f.strikes;
  f.penalty_until_ms = now_ms + static_cast<int64_t>(p) * 1000;
  f.count = 0;
  f.window_start_ms = f.penalty_until_ms;
  penalty_ms = static_cast<int64_t>(p) * 1000;
  return Flap::JustPenalized;
}

}  // namespace lb
