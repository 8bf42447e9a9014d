// Replicas without a shared store agree on a client's backend when their
// configs name the same backends (docs/scale-out.md "When replicas
// disagree"): leastconn's tie-break and consistent-hash depend only on the
// client id and the backend names, never on the order of the list.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "lb/balancer.hpp"

namespace {

struct Backend {
  std::string name;
  double weight;
  int64_t active;
  bool eligible;
};

std::vector<Backend> fleet() {
  std::vector<Backend> v;
  for (int i = 0; i < 7; ++i)
    v.push_back({"broker-" + std::to_string(i), i == 3 ? 2.0 : 1.0, 0, i != 5});
  return v;
}

std::vector<lb::Candidate> cands(const std::vector<Backend>& v) {
  std::vector<lb::Candidate> c(v.size());
  for (size_t i = 0; i < v.size(); ++i) c[i] = {v[i].name, v[i].weight, v[i].active, v[i].eligible};
  return c;
}

std::unique_ptr<lb::ConsistentHash> ring(const std::vector<Backend>& v) {
  std::vector<lb::ConsistentHash::Node> nodes;
  for (const auto& b : v) nodes.push_back({b.name, static_cast<uint32_t>(b.weight)});
  return std::make_unique<lb::ConsistentHash>(nodes, 0.25);
}

// The backend two "replicas" pick for each of 10,000 ids, one with the list
// as given, one with it shuffled (loads travel with their backends).
template <typename Make>
void same_picks(std::vector<Backend> a, Make make) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 5; ++round) {
    std::vector<Backend> b = a;
    std::shuffle(b.begin(), b.end(), rng);
    REQUIRE(b.size() == a.size());
    auto ba = make(a), bb = make(b);
    auto ca = cands(a), cb = cands(b);
    for (int i = 0; i < 10000; ++i) {
      std::string id = "device-" + std::to_string(i);
      int pa = ba->pick(ca, id), pb = bb->pick(cb, id);
      REQUIRE(pa >= 0);
      REQUIRE(pb >= 0);
      REQUIRE(a[pa].name == b[pb].name);
    }
  }
}

}  // namespace

TEST_CASE("leastconn: shuffled backend lists pick the same backend for every id (equal loads)") {
  same_picks(fleet(), [](const auto&) { return std::make_unique<lb::LeastConn>(); });
}

TEST_CASE("leastconn: the same holds with unequal loads (ties among the least loaded)") {
  auto v = fleet();
  int64_t loads[] = {3, 1, 1, 2, 5, 0, 1};  // broker-3 (weight 2) at 2 ties at load 1
  for (size_t i = 0; i < v.size(); ++i) v[i].active = loads[i];
  same_picks(v, [](const auto&) { return std::make_unique<lb::LeastConn>(); });
}

TEST_CASE("leastconn: the tie-break spreads ids over the tied backends") {
  auto v = fleet();
  auto c = cands(v);
  lb::LeastConn lc;
  std::vector<int> n(v.size());
  for (int i = 0; i < 6000; ++i) ++n[lc.pick(c, "id-" + std::to_string(i))];
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].eligible) {
      CHECK(n[i] == 0);
      continue;
    }
    // Equal load (0) everywhere: the tie decides alone, about 1/6 each.
    CHECK(n[i] > 700);
    CHECK(n[i] < 1300);
  }
}

TEST_CASE("consistent-hash: rings built from shuffled lists place every id alike") {
  same_picks(fleet(), [](const std::vector<Backend>& v) { return ring(v); });
  auto v = fleet();
  int64_t loads[] = {4, 4, 4, 9, 4, 0, 4};  // balanced for the weights: under every bound
  for (size_t i = 0; i < v.size(); ++i) v[i].active = loads[i];
  same_picks(v, [](const std::vector<Backend>& x) { return ring(x); });
}
