// SRV priority and weight (lb/srv_plan): RFC 2782 semantics mapped onto
// backend tiers and mqttlb's 1..256 weights.
#include "lb/srv_plan.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

using lb::dns::plan_srv;
using lb::dns::srv_weight;
using lb::dns::SrvRecord;
using lb::dns::SrvTarget;

TEST_CASE("srv_weight: scaled to the heaviest of its priority, weight 0 the smallest share") {
  CHECK(srv_weight(60, 60) == 256);
  CHECK(srv_weight(30, 60) == 128);
  CHECK(srv_weight(10, 60) == 43);  // 42.67 rounded
  CHECK(srv_weight(0, 60) == 1);
  CHECK(srv_weight(0, 0) == 1);  // all zero: equal shares
  CHECK(srv_weight(1, 65535) == 1);
  CHECK(srv_weight(65535, 65535) == 256);
  CHECK(srv_weight(1, 1) == 256);
  // Never outside 1..256, and never decreasing in the weight.
  for (uint32_t m : {1u, 2u, 7u, 255u, 256u, 257u, 1000u, 65535u}) {
    uint32_t prev = 0;
    for (uint32_t w = 0; w <= m; w += (m > 1000 ? 97 : 1)) {
      uint32_t s = srv_weight(static_cast<uint16_t>(w), static_cast<uint16_t>(m));
      CHECK(s >= 1);
      CHECK(s <= 256);
      CHECK(s >= prev);
      prev = s;
    }
  }
}

TEST_CASE("plan_srv: priorities become tiers by rank, weights scaled within each priority") {
  auto p = plan_srv({{"c.example.", 1883, 20, 5},
                     {"a.example.", 1883, 10, 60},
                     {"b.example.", 1884, 10, 20},
                     {"z.example.", 1883, 10, 0},
                     {"d.example.", 1883, 30, 0}});
  REQUIRE(p.size() == 5);
  CHECK(p[0].target == "a.example");
  CHECK(p[0].tier == 0);
  CHECK(p[0].weight == 256);
  CHECK(p[1].target == "b.example");
  CHECK(p[1].port == 1884);
  CHECK(p[1].weight == 85);
  CHECK(p[2].target == "z.example");
  CHECK(p[2].weight == 1);
  CHECK(p[3].target == "c.example");
  CHECK(p[3].tier == 1);
  CHECK(p[3].weight == 256);  // alone in its priority
  CHECK(p[4].target == "d.example");
  CHECK(p[4].tier == 2);
  CHECK(p[4].weight == 1);
}

TEST_CASE("plan_srv: one priority is tier 0 whatever its value") {
  auto p = plan_srv({{"a", 1, 65535, 7}, {"b", 1, 65535, 7}});
  REQUIRE(p.size() == 2);
  CHECK(p[0].tier == 0);
  CHECK(p[1].tier == 0);
  CHECK(p[0].weight == 256);
  CHECK(p[1].weight == 256);
}

TEST_CASE("plan_srv: a target listed twice keeps its lowest priority; '.' is no service") {
  auto p = plan_srv({{"a.", 1883, 20, 1},
                     {"a", 1883, 10, 3},
                     {".", 1883, 0, 9},
                     {"", 1, 0, 1},
                     {"b", 1883, 20, 4}});
  REQUIRE(p.size() == 2);
  CHECK(p[0].target == "a");
  CHECK(p[0].tier == 0);
  CHECK(p[0].weight == 256);
  CHECK(p[1].target == "b");
  CHECK(p[1].tier == 1);
  // Equal priorities: the larger weight, whichever comes first.
  for (auto rs : {std::vector<SrvRecord>{{"a", 1, 0, 5}, {"a", 1, 0, 50}, {"b", 1, 0, 100}},
                  std::vector<SrvRecord>{{"b", 1, 0, 100}, {"a", 1, 0, 50}, {"a", 1, 0, 5}}}) {
    auto q = plan_srv(rs);
    REQUIRE(q.size() == 2);
    CHECK(q[0].weight == 128);
  }
  // The same host on another port is another target.
  CHECK(plan_srv({{"a", 1, 0, 0}, {"a", 2, 0, 0}}).size() == 2);
  CHECK(plan_srv({}).empty());
  CHECK(plan_srv({{".", 1883, 0, 0}}).empty());
}

TEST_CASE("plan_srv: the plan depends only on the set of records, never on their order") {
  std::mt19937 rng(12);
  for (int round = 0; round < 200; ++round) {
    std::vector<SrvRecord> rs;
    int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i)
      rs.push_back({"t" + std::to_string(rng() % 6), static_cast<uint16_t>(1883 + rng() % 2),
                    static_cast<uint16_t>(rng() % 4), static_cast<uint16_t>(rng() % 100)});
    std::vector<SrvRecord> uniq = rs;  // duplicates of a target included
    auto a = plan_srv(uniq);
    std::shuffle(uniq.begin(), uniq.end(), rng);
    auto b = plan_srv(uniq);
    REQUIRE(a.size() == b.size());
    uint32_t tiers = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].target == b[i].target);
      CHECK(a[i].port == b[i].port);
      CHECK(a[i].tier == b[i].tier);
      CHECK(a[i].weight == b[i].weight);
      CHECK(a[i].weight >= 1);
      CHECK(a[i].weight <= 256);
      CHECK(a[i].tier <= tiers);  // ranks are dense: 0, 1, 2 ...
      tiers = std::max(tiers, a[i].tier + 1);
    }
    if (!a.empty()) CHECK(a[0].tier == 0);
  }
}
