#include "lb/balancer.hpp"

#include <algorithm>
#include <cmath>

namespace lb {

uint64_t hash64(std::string_view s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

int LeastConn::pick(std::span<const Candidate> c, std::string_view key) {
  int best = -1;
  double best_load = 0;
  uint64_t best_tie = 0;
  uint64_t kh = hash64(key);
  for (size_t i = 0; i < c.size(); ++i) {
    if (!c[i].eligible || !(c[i].weight > 0)) continue;
    double load = static_cast<double>(c[i].active) / c[i].weight;
    if (best >= 0 && load > best_load) continue;
    uint64_t tie = hash64(c[i].name, kh);
    // Equal hashes (a 64-bit collision) fall back to the name: never list order.
    if (best < 0 || load < best_load || tie > best_tie ||
        (tie == best_tie && c[i].name < c[best].name)) {
      best = static_cast<int>(i);
      best_load = load;
      best_tie = tie;
    }
  }
  return best;
}

int RoundRobin::pick(std::span<const Candidate> c, std::string_view) {
  std::lock_guard<std::mutex> g(mu_);
  if (current_.size() != c.size()) current_.assign(c.size(), 0.0);
  double total = 0;
  int best = -1;
  for (size_t i = 0; i < c.size(); ++i) {
    if (!c[i].eligible || !(c[i].weight > 0)) continue;
    current_[i] += c[i].weight;
    total += c[i].weight;
    if (best < 0 || current_[i] > current_[best]) best = static_cast<int>(i);
  }
  if (best >= 0) current_[best] -= total;
  return best;
}

ConsistentHash::ConsistentHash(const std::vector<Node>& nodes, double epsilon,
                               uint32_t vnodes_per_weight)
    : epsilon_(epsilon) {
  for (size_t n = 0; n < nodes.size(); ++n) {
    names_.push_back(nodes[n].name);
    uint32_t count = std::max<uint32_t>(1, nodes[n].weight) * vnodes_per_weight;
    for (uint32_t v = 0; v < count; ++v)
      ring_.push_back({hash64(nodes[n].name + "#" + std::to_string(v)), static_cast<uint32_t>(n)});
  }
  // Equal points are ordered by name, so the ring does not depend on the
  // order of the backend list (replicas with shuffled configs agree).
  std::sort(ring_.begin(), ring_.end(), [this](const Point& a, const Point& b) {
    return a.h != b.h ? a.h < b.h : names_[a.node] < names_[b.node];
  });
}

int64_t ConsistentHash::bound(double epsilon, int64_t total_after, double w, double wsum) {
  return static_cast<int64_t>(
      std::ceil((1.0 + epsilon) * static_cast<double>(total_after) * w / wsum));
}

int ConsistentHash::pick(std::span<const Candidate> c, std::string_view key) {
  // Map ring nodes (by name) to candidate indexes. Candidate lists are short
  // (tens of backends), so a linear match per distinct ring node is cheap.
  std::vector<int> idx(names_.size(), -1);
  for (size_t n = 0; n < names_.size(); ++n)
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i].name == names_[n]) {
        idx[n] = static_cast<int>(i);
        break;
      }
  double wsum = 0;
  int64_t total = 0;
  for (const auto& x : c)
    if (x.eligible && x.weight > 0) {
      wsum += x.weight;
      total += x.active;
    }
  if (wsum <= 0 || ring_.empty()) return -1;
  uint64_t h = hash64(key);
  auto it = std::lower_bound(ring_.begin(), ring_.end(), h,
                             [](const Point& p, uint64_t v) { return p.h < v; });
  size_t start = static_cast<size_t>(it - ring_.begin());
  int fallback = -1;
  for (size_t k = 0; k < ring_.size(); ++k) {
    const Point& p = ring_[(start + k) % ring_.size()];
    int i = idx[p.node];
    if (i < 0 || !c[i].eligible || !(c[i].weight > 0)) continue;
    if (fallback < 0) fallback = i;
    if (c[i].active + 1 <= bound(epsilon_, total + 1, c[i].weight, wsum)) return i;
  }
  // Unreachable in theory (some backend is always under its bound); kept so a
  // backend missing from the ring still gets traffic.
  if (fallback >= 0) return fallback;
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i].eligible && c[i].weight > 0) return static_cast<int>(i);
  return -1;
}

std::unique_ptr<Balancer> make_balancer(const conf::Balance& b,
                                        const std::vector<conf::Backend>& backends) {
  switch (b.algorithm) {
    case conf::Algorithm::RoundRobin:
      return std::make_unique<RoundRobin>();
    case conf::Algorithm::ConsistentHash: {
      std::vector<ConsistentHash::Node> nodes;
      for (const auto& be : backends) nodes.push_back({be.name, be.weight});
      return std::make_unique<ConsistentHash>(nodes, b.hash_balance_factor);
    }
    case conf::Algorithm::LeastConn:
    default:
      return std::make_unique<LeastConn>();
  }
}

}  // namespace lb
