// Backend selection: pure algorithms over a list of candidates. No I/O, no
// clocks; thread-safe (RoundRobin keeps its cursor under a mutex, the others are
// stateless after construction). The caller (lb/session) filters nothing: it
// passes every backend of the snapshot with its eligibility and live load.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"

namespace lb {

struct Candidate {
  std::string_view name;  // stable identity: ties and the hash ring use it
  double weight = 1;      // configured weight x slowstart factor, > 0
  int64_t active = 0;     // sessions currently forwarded to this backend
  bool eligible = true;   // healthy and not yet tried for this client
};

// 64-bit FNV-1a followed by a murmur-style finaliser: stable across processes
// and machines, so identical balancers make identical choices.
uint64_t hash64(std::string_view s, uint64_t seed = 0);

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Index of the chosen candidate, or -1 when none is eligible. `key` is the
  // client id (may be empty).
  virtual int pick(std::span<const Candidate> c, std::string_view key) = 0;
};

// Fewest active sessions relative to weight; ties broken by the highest
// hash(key, backend name) so the choice does not depend on list order.
class LeastConn final : public Balancer {
 public:
  int pick(std::span<const Candidate> c, std::string_view key) override;
};

// Smooth weighted round-robin (nginx's algorithm): over sum(weights) picks each
// backend is chosen exactly weight times, interleaved.
class RoundRobin final : public Balancer {
 public:
  int pick(std::span<const Candidate> c, std::string_view key) override;

 private:
  std::mutex mu_;
  std::vector<double> current_;  // per candidate index; reset when the size changes
};

// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016):
// the key's point on a ring of virtual nodes; walk clockwise past backends that
// are ineligible or would exceed ceil((1 + epsilon) x fair share) with this
// session. The ring is built once for a list of backend names and weights.
class ConsistentHash final : public Balancer {
 public:
  struct Node {
    std::string name;
    uint32_t weight;
  };
  ConsistentHash(const std::vector<Node>& nodes, double epsilon, uint32_t vnodes_per_weight = 64);
  int pick(std::span<const Candidate> c, std::string_view key) override;
  // Capacity bound for one backend given the total active sessions after this pick.
  static int64_t bound(double epsilon, int64_t total_after, double w, double wsum);

 private:
  struct Point {
    uint64_t h;
    uint32_t node;  // index into names_
  };
  std::vector<std::string> names_;
  std::vector<Point> ring_;  // sorted by h
  double epsilon_;
};

std::unique_ptr<Balancer> make_balancer(const conf::Balance& b,
                                        const std::vector<conf::Backend>& backends);

}  // namespace lb
