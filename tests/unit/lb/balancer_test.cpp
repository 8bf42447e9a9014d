#include "lb/balancer.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

using lb::Candidate;

namespace {

std::vector<std::string> names(size_t n) {
  std::vector<std::string> v;
  for (size_t i = 0; i < n; ++i) v.push_back("b" + std::to_string(i + 1));
  return v;
}

std::vector<Candidate> cands(const std::vector<std::string>& ns, const std::vector<double>& w) {
  std::vector<Candidate> c(ns.size());
  for (size_t i = 0; i < ns.size(); ++i) {
    c[i].name = ns[i];
    c[i].weight = w[i];
  }
  return c;
}

}  // namespace

TEST_CASE("leastconn always picks an eligible backend with minimum load/weight (10,000 picks)") {
  std::mt19937 rng(42);
  auto ns = names(5);
  auto c = cands(ns, {1, 2, 1, 3, 1});
  lb::LeastConn lc;
  for (int i = 0; i < 10000; ++i) {
    for (auto& x : c) x.eligible = (rng() % 4) != 0;
    int p = lc.pick(c, "client-" + std::to_string(i));
    bool any = std::any_of(c.begin(), c.end(), [](const Candidate& x) { return x.eligible; });
    if (!any) {
      CHECK(p == -1);
      continue;
    }
    REQUIRE(p >= 0);
    REQUIRE(c[p].eligible);
    double mine = c[p].active / c[p].weight;
    for (auto& x : c)
      if (x.eligible) REQUIRE(mine <= x.active / x.weight);
    c[p].active++;
    // Random departures keep the loads moving.
    size_t j = rng() % c.size();
    if (c[j].active > 0 && rng() % 2) c[j].active--;
  }
}

TEST_CASE("leastconn spreads by weight and breaks ties the same way whatever the order") {
  auto ns = names(3);
  auto c = cands(ns, {1, 1, 2});
  lb::LeastConn lc;
  for (int i = 0; i < 4000; ++i) c[lc.pick(c, "id" + std::to_string(i))].active++;
  CHECK(c[0].active == 1000);
  CHECK(c[1].active == 1000);
  CHECK(c[2].active == 2000);

  // Identical balancers, backends listed in another order: same backend for each id.
  auto a = cands(ns, {1, 1, 1});
  std::vector<Candidate> b = {a[2], a[0], a[1]};
  lb::LeastConn l1, l2;
  for (int i = 0; i < 10000; ++i) {
    std::string id = "device-" + std::to_string(i);
    CHECK(a[l1.pick(a, id)].name == b[l2.pick(b, id)].name);
  }
}

TEST_CASE("round-robin is exactly weight-proportional and skips ineligible backends") {
  auto ns = names(3);
  auto c = cands(ns, {1, 2, 3});
  lb::RoundRobin rr;
  std::vector<int> n(3);
  for (int i = 0; i < 10002; ++i) n[rr.pick(c, "")]++;
  CHECK(n[0] == 1667);
  CHECK(n[1] == 3334);
  CHECK(n[2] == 5001);
  // Within every window of sum(weights)=6 picks each backend appears weight times.
  std::vector<int> win(3);
  for (int i = 0; i < 6; ++i) win[rr.pick(c, "")]++;
  CHECK(win == std::vector<int>{1, 2, 3});

  c[1].eligible = false;
  for (int i = 0; i < 10000; ++i) CHECK(rr.pick(c, "") != 1);
  for (auto& x : c) x.eligible = false;
  CHECK(rr.pick(c, "") == -1);
}

TEST_CASE("consistent-hash: keys stay put when other backends are added or removed") {
  auto ns = names(5);
  std::vector<lb::ConsistentHash::Node> nodes4, nodes5;
  for (size_t i = 0; i < 4; ++i) nodes4.push_back({ns[i], 1});
  nodes5 = nodes4;
  nodes5.push_back({ns[4], 1});
  // A huge epsilon disables the load bound: pure ring placement.
  lb::ConsistentHash ring4(nodes4, 1000), ring5(nodes5, 1000);
  std::vector<std::string> ns4(ns.begin(), ns.begin() + 4);  // candidates view these names
  auto c4 = cands(ns4, {1, 1, 1, 1});
  auto c5 = cands(ns, {1, 1, 1, 1, 1});
  int moved = 0;
  std::vector<int> per(5);
  for (int i = 0; i < 10000; ++i) {
    std::string key = "k" + std::to_string(i);
    std::string before(c4[ring4.pick(c4, key)].name);
    std::string after(c5[ring5.pick(c5, key)].name);
    per[ring5.pick(c5, key)]++;
    if (before != after) {
      CHECK(after == "b5");  // a key only ever moves to the new backend
      ++moved;
    }
  }
  // About 1/5 of the keys move to the new backend.
  CHECK(moved > 1000);
  CHECK(moved < 3000);
  for (int n : per) CHECK(n > 1000);  // virtual nodes spread keys (fair share 2000)

  // Removing (marking ineligible) b2: only b2's keys move.
  auto c5b = c5;
  c5b[1].eligible = false;
  for (int i = 0; i < 10000; ++i) {
    std::string key = "k" + std::to_string(i);
    int was = ring5.pick(c5, key);
    int now = ring5.pick(c5b, key);
    CHECK(now != 1);
    if (was != 1) CHECK(now == was);
  }
}

TEST_CASE("consistent-hash with bounded load never exceeds (1+eps) x fair share (10,000 picks)") {
  std::mt19937 rng(7);
  auto ns = names(4);
  std::vector<double> w = {1, 1, 2, 1};
  std::vector<lb::ConsistentHash::Node> nodes;
  for (size_t i = 0; i < 4; ++i) nodes.push_back({ns[i], static_cast<uint32_t>(w[i])});
  const double eps = 0.25;
  lb::ConsistentHash ch(nodes, eps);
  auto c = cands(ns, w);
  // Skewed keys: few distinct ids, so pure hashing would overload one backend.
  for (int i = 0; i < 10000; ++i) {
    std::string key = "hot-" + std::to_string(rng() % 3);
    int p = ch.pick(c, key);
    REQUIRE(p >= 0);
    c[p].active++;
    int64_t total = 0;
    for (auto& x : c) total += x.active;
    for (size_t j = 0; j < c.size(); ++j)
      REQUIRE(c[j].active <= lb::ConsistentHash::bound(eps, total, w[j], 5.0));
    if (rng() % 3 == 0) {  // a departure
      size_t j = rng() % c.size();
      if (c[j].active > 0) c[j].active--;
    }
  }
  // A key goes to its ring owner while that owner is under the bound.
  auto fresh = cands(ns, w);
  int owner = ch.pick(fresh, "device-1");
  CHECK(ch.pick(fresh, "device-1") == owner);
}

TEST_CASE("make_balancer follows the configured algorithm") {
  conf::Balance b;
  std::vector<conf::Backend> be(2);
  be[0].name = "x";
  be[1].name = "y";
  b.algorithm = conf::Algorithm::RoundRobin;
  CHECK(dynamic_cast<lb::RoundRobin*>(lb::make_balancer(b, be).get()));
  b.algorithm = conf::Algorithm::ConsistentHash;
  CHECK(dynamic_cast<lb::ConsistentHash*>(lb::make_balancer(b, be).get()));
  b.algorithm = conf::Algorithm::LeastConn;
  CHECK(dynamic_cast<lb::LeastConn*>(lb::make_balancer(b, be).get()));
}
