#include "lb/affinity.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>

TEST_CASE("affinity: a client id returns to its last backend until the TTL lapses") {
  lb::AffinityTable t(100, 1000);
  t.put("dev1", "b2", 0);
  CHECK(t.get("dev1", 500) == std::optional<std::string>("b2"));
  CHECK(t.get("dev1", 1400) == std::optional<std::string>("b2"));  // refreshed at 500
  CHECK(t.get("dev1", 2401) == std::nullopt);                      // idle > ttl since 1400
  CHECK(t.size() == 0);
  t.put("dev1", "b1", 3000);
  t.put("dev1", "b3", 3100);  // re-placed: the entry moves
  CHECK(t.get("dev1", 3200) == std::optional<std::string>("b3"));
  CHECK(t.size() == 1);
  t.erase("dev1");
  CHECK(t.get("dev1", 3200) == std::nullopt);
}

TEST_CASE("affinity: bounded LRU evicts the least recently used (10,000 operations)") {
  const size_t kMax = 64;
  lb::AffinityTable t(kMax, 1'000'000);
  std::mt19937 rng(3);
  for (int i = 0; i < 10000; ++i) {
    std::string id = "c" + std::to_string(rng() % 200);
    if (rng() % 2)
      t.put(id, "b" + std::to_string(rng() % 3), i);
    else
      t.get(id, i);
    REQUIRE(t.size() <= kMax);
  }
  // Fill with fresh ids; touch "keep" each time so it stays the most recent.
  t.put("keep", "b1", 20000);
  for (int i = 0; i < 200; ++i) {
    t.put("fresh" + std::to_string(i), "b2", 20001 + i);
    CHECK(t.get("keep", 20001 + i) == std::optional<std::string>("b1"));
  }
  CHECK(t.size() == kMax);
  CHECK(t.get("fresh0", 30000) == std::nullopt);  // evicted (least recently used)
  CHECK(t.get("fresh199", 30000) == std::optional<std::string>("b2"));
  t.set_limits(10, 1'000'000);
  CHECK(t.size() == 10);
}
