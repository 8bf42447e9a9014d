#include "lb/affinity.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>

#include "lb/balancer.hpp"
#include "lb/client_key.hpp"

namespace {
lb::ClientKey k(const std::string& id) {
  return lb::client_key(id);
}
const uint64_t b1 = lb::hash64("b1"), b2 = lb::hash64("b2"), b3 = lb::hash64("b3");
}  // namespace

TEST_CASE("client key: 128 bits of SHA-256, the same for the same id, whatever its length") {
  CHECK(lb::client_key("dev1") == lb::client_key("dev1"));
  CHECK_FALSE(lb::client_key("dev1") == lb::client_key("dev2"));
  CHECK_FALSE(lb::client_key("") == lb::client_key(std::string(1, '\0')));
  // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 ...
  lb::ClientKey abc = lb::client_key("abc");
  CHECK(abc.hi == 0xba7816bf8f01cfeaull);
  CHECK(abc.lo == 0x414140de5dae2223ull);
  std::string big(65535, 'x');
  CHECK(lb::client_key(big) == lb::client_key(std::string(65535, 'x')));
}

TEST_CASE("affinity: a client returns to its last backend until the TTL lapses") {
  lb::AffinityTable t(100, 1 << 20, 1000);
  t.put(k("dev1"), b2, 0);
  CHECK(t.get(k("dev1"), 500) == std::optional<uint64_t>(b2));
  CHECK(t.get(k("dev1"), 1400) == std::optional<uint64_t>(b2));  // refreshed at 500
  CHECK(t.get(k("dev1"), 2401) == std::nullopt);                 // idle > ttl since 1400
  CHECK(t.size() == 0);
  t.put(k("dev1"), b1, 3000);
  t.put(k("dev1"), b3, 3100);  // re-placed: the entry moves
  CHECK(t.get(k("dev1"), 3200) == std::optional<uint64_t>(b3));
  CHECK(t.size() == 1);
  t.erase(k("dev1"));
  CHECK(t.get(k("dev1"), 3200) == std::nullopt);
}

TEST_CASE("affinity: bounded LRU evicts the least recently used (10,000 operations)") {
  const size_t kMax = 64;
  lb::AffinityTable t(kMax, 1ull << 30, 1'000'000);
  std::mt19937 rng(3);
  for (int i = 0; i < 10000; ++i) {
    lb::ClientKey id = k("c" + std::to_string(rng() % 200));
    if (rng() % 2)
      t.put(id, lb::hash64("b" + std::to_string(rng() % 3)), i);
    else
      t.get(id, i);
    REQUIRE(t.size() <= kMax);
  }
  // Fill with fresh ids; touch "keep" each time so it stays the most recent.
  t.put(k("keep"), b1, 20000);
  for (int i = 0; i < 200; ++i) {
    t.put(k("fresh" + std::to_string(i)), b2, 20001 + i);
    CHECK(t.get(k("keep"), 20001 + i) == std::optional<uint64_t>(b1));
  }
  CHECK(t.size() == kMax);
  CHECK(t.get(k("fresh0"), 30000) == std::nullopt);  // evicted (least recently used)
  CHECK(t.get(k("fresh199"), 30000) == std::optional<uint64_t>(b2));
  t.set_limits(10, 1ull << 30, 1'000'000);
  CHECK(t.size() == 10);
}

TEST_CASE("affinity: bounded by bytes, whatever the client ids' length") {
  // 1 MiB at kEntryBytes each; ids of 60 KiB would have been 1 MiB per 17 entries.
  lb::AffinityTable t(100'000'000, 1 << 20, 1'000'000);
  const uint64_t cap = (1 << 20) / lb::AffinityTable::kEntryBytes;
  CHECK(t.capacity() == cap);
  std::string big(60 * 1024, 'a');
  for (int i = 0; i < static_cast<int>(cap) + 2000; ++i) {
    big[i % big.size()] = static_cast<char>('a' + i % 26);
    big.back() = static_cast<char>(i);
    t.put(lb::client_key(big + std::to_string(i)), b1, i);
  }
  CHECK(t.size() == cap);
}
