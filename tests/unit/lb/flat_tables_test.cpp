// AffinityTable and ClientRegistry against reference models (the list + map
// code they replaced, issue 13), over long random operation sequences whose
// keys are crafted to collide in the flat array: whole clusters on one home
// slot, clusters that wrap around the array's end, and ordinary keys between.
#include <doctest/doctest.h>

#include <algorithm>
#include <list>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "lb/affinity.hpp"
#include "lb/client_key.hpp"
#include "lb/flat_table.hpp"
#include "lb/registry.hpp"

namespace {

using lb::ClientKey;

bool key_less(const ClientKey& a, const ClientKey& b) {
  return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
}
struct KeyLess {
  bool operator()(const ClientKey& a, const ClientKey& b) const { return key_less(a, b); }
};

// A key whose flat::hash is exactly h: hash = (lo ^ hi) * G, and G is odd.
ClientKey key_with_hash(uint64_t h, uint64_t hi) {
  const uint64_t g = 0x9E3779B97F4A7C15ull;
  uint64_t inv = g;  // Newton: each step doubles the correct low bits
  for (int i = 0; i < 6; ++i) inv *= 2 - g * inv;
  return ClientKey{hi, hi ^ (h * inv)};
}

// 8 groups of 100 keys sharing one hash each (4 near the array's start, 4 at
// its very end: their clusters wrap), and 3,200 SHA-256 keys.
std::vector<ClientKey> key_pool() {
  std::vector<ClientKey> keys;
  for (uint64_t g = 0; g < 8; ++g) {
    uint64_t h = g < 4 ? g << 59 : UINT64_MAX - (g - 4);
    for (uint64_t i = 0; i < 100; ++i) keys.push_back(key_with_hash(h, (g << 32) | (i + 1)));
  }
  for (int i = 0; i < 3200; ++i) keys.push_back(lb::client_key("pool" + std::to_string(i)));
  return keys;
}

TEST_CASE("flat table: crafted keys collide as intended") {
  ClientKey a = key_with_hash(UINT64_MAX, 1), b = key_with_hash(UINT64_MAX, 2);
  CHECK(lb::flat::hash(a) == UINT64_MAX);
  CHECK(lb::flat::hash(b) == UINT64_MAX);
  CHECK_FALSE(a == b);
  CHECK(lb::flat::home(UINT64_MAX, 1000) == 999);
  CHECK(lb::flat::home(0, 1000) == 0);
}

// The code AffinityTable had before issue 13, verbatim in behaviour.
class RefAffinity {
 public:
  using Entry = lb::AffinityTable::Entry;
  RefAffinity(uint64_t cap, int64_t ttl) : cap_(cap), ttl_(ttl) {}
  std::optional<uint64_t> get(const ClientKey& k, int64_t now) {
    auto it = map_.find(k);
    if (it == map_.end()) return std::nullopt;
    if (now - it->second->last_used_ms > ttl_) {
      lru_.erase(it->second);
      map_.erase(it);
      return std::nullopt;
    }
    it->second->last_used_ms = now;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->backend;
  }
  void put(const ClientKey& k, uint64_t b, int64_t now) {
    auto it = map_.find(k);
    if (it != map_.end()) {
      it->second->backend = b;
      it->second->last_used_ms = now;
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    lru_.push_front(Entry{k, b, now});
    map_.emplace(k, lru_.begin());
    evict(now);
  }
  void erase(const ClientKey& k) {
    auto it = map_.find(k);
    if (it == map_.end()) return;
    lru_.erase(it->second);
    map_.erase(it);
  }
  void set_limits(uint64_t cap, int64_t ttl) {
    cap_ = cap;
    ttl_ = ttl;
    evict(INT64_MIN);
  }
  void load(const std::vector<Entry>& entries, int64_t now) {
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      if (map_.count(it->key) || now - it->last_used_ms > ttl_) continue;
      lru_.push_front(*it);
      map_.emplace(it->key, lru_.begin());
    }
    evict(now);
  }
  std::vector<Entry> dump() const { return {lru_.begin(), lru_.end()}; }
  size_t size() const { return map_.size(); }

 private:
  void evict(int64_t now) {
    while (map_.size() > cap_) {
      map_.erase(lru_.back().key);
      lru_.pop_back();
    }
    if (now == INT64_MIN) return;
    while (!lru_.empty() && now - lru_.back().last_used_ms > ttl_) {
      map_.erase(lru_.back().key);
      lru_.pop_back();
    }
  }
  uint64_t cap_;
  int64_t ttl_;
  std::list<Entry> lru_;
  std::map<ClientKey, std::list<Entry>::iterator, KeyLess> map_;
};

bool same(const std::vector<lb::AffinityTable::Entry>& a,
          const std::vector<lb::AffinityTable::Entry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i].key == b[i].key) || a[i].backend != b[i].backend ||
        a[i].last_used_ms != b[i].last_used_ms)
      return false;
  }
  return true;
}

constexpr uint64_t kHugeBytes = 1ull << 40;  // the entry bound is the one that applies

TEST_CASE("affinity: the flat table matches the list + map model over 60,000 random operations") {
  const std::vector<ClientKey> pool = key_pool();
  std::mt19937_64 rng(13);
  auto pick = [&] { return pool[rng() % pool.size()]; };
  uint64_t cap = 200;
  int64_t ttl = 2000, now = 1'000'000;
  lb::AffinityTable t(cap, kHugeBytes, ttl);
  RefAffinity ref(cap, ttl);
  size_t gets_hit = 0, evicted_by_ttl = 0, loads = 0, max_size = 0;
  for (int op = 0; op < 60000; ++op) {
    now += static_cast<int64_t>(rng() % 30);
    unsigned r = rng() % 1000;
    if (r < 400) {
      ClientKey k = pick();
      uint64_t b = rng() % 4;
      t.put(k, b, now);
      ref.put(k, b, now);
    } else if (r < 750) {
      ClientKey k = pick();
      auto got = t.get(k, now);
      REQUIRE(got == ref.get(k, now));
      gets_hit += got.has_value();
    } else if (r < 900) {
      ClientKey k = pick();
      t.erase(k);
      ref.erase(k);
    } else if (r < 930) {  // a burst of new clients: the array grows through doublings
      for (int i = 0; i < 300; ++i) {
        ClientKey k = pick();
        t.put(k, 7, now);
        ref.put(k, 7, now);
      }
    } else if (r < 950) {  // idle for longer than the TTL: mass expiry, the array shrinks
      now += ttl + 1 + static_cast<int64_t>(rng() % 100);
      size_t before = ref.size();
      ClientKey k = pick();
      REQUIRE(t.get(k, now) == ref.get(k, now));  // expired if it was there
      t.put(k, 1, now);
      ref.put(k, 1, now);
      evicted_by_ttl += before > ref.size() ? before - ref.size() : 0;
    } else if (r < 975) {  // reload: new bounds, shrinking evicts at once
      cap = 1 + rng() % (rng() % 4 == 0 ? 3000 : 300);
      ttl = 500 + static_cast<int64_t>(rng() % 5000);
      t.set_limits(cap, kHugeBytes, ttl);
      ref.set_limits(cap, ttl);
      REQUIRE(t.capacity() == cap);
    } else {  // handed-over entries: some present, some expired, some twice
      std::vector<lb::AffinityTable::Entry> in;
      size_t n = rng() % 400;
      for (size_t i = 0; i < n; ++i) {
        ClientKey k = pick();
        in.push_back({k, rng() % 4, now - static_cast<int64_t>(rng() % (2 * ttl + 2))});
        if (rng() % 20 == 0) in.push_back({k, 9, now - static_cast<int64_t>(rng() % ttl)});
      }
      t.load(in, now);
      ref.load(in, now);
      ++loads;
    }
    REQUIRE(t.size() == ref.size());
    REQUIRE(t.size() <= cap);
    max_size = std::max(max_size, t.size());
    if (op % 16 == 0 || r >= 900) REQUIRE(same(t.dump(), ref.dump()));
  }
  REQUIRE(same(t.dump(), ref.dump()));
  // The sequence did exercise what it claims to.
  CHECK(gets_hit > 500);
  CHECK(evicted_by_ttl > 1000);
  CHECK(loads > 500);
  CHECK(max_size > 1000);
}

TEST_CASE(
    "affinity: one colliding cluster emptied and refilled in every order keeps its LRU order") {
  // 64 keys on one home slot at the array's end (the cluster wraps): erase
  // from the middle of a cluster shifts entries back across the wrap.
  std::vector<ClientKey> keys;
  for (uint64_t i = 0; i < 64; ++i) keys.push_back(key_with_hash(UINT64_MAX, i + 1));
  std::mt19937_64 rng(7);
  lb::AffinityTable t(1000, kHugeBytes, 1'000'000);
  RefAffinity ref(1000, 1'000'000);
  int64_t now = 0;
  for (int round = 0; round < 200; ++round) {
    std::shuffle(keys.begin(), keys.end(), rng);
    for (size_t i = 0; i < keys.size(); ++i) {
      t.put(keys[i], i, ++now);
      ref.put(keys[i], i, now);
    }
    std::shuffle(keys.begin(), keys.end(), rng);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (i % 3 == 0) continue;
      t.erase(keys[i]);
      ref.erase(keys[i]);
      if (i % 5 != 0) continue;
      const ClientKey& g = keys[(i * 7) % keys.size()];
      ++now;
      REQUIRE(t.get(g, now) == ref.get(g, now));
    }
    REQUIRE(same(t.dump(), ref.dump()));
  }
}

// The code ClientRegistry had before issue 13.
class RefRegistry {
 public:
  std::optional<lb::SessionRef> add(const ClientKey& k, const lb::SessionRef& ref) {
    auto [it, inserted] = map_.try_emplace(k, ref);
    if (inserted) return std::nullopt;
    lb::SessionRef old = it->second;
    it->second = ref;
    if (old.backend != ref.backend) return old;
    return std::nullopt;
  }
  std::optional<lb::SessionRef> displace(const ClientKey& k, uint64_t backend) {
    auto it = map_.find(k);
    if (it == map_.end() || it->second.backend == backend) return std::nullopt;
    lb::SessionRef old = it->second;
    map_.erase(it);
    return old;
  }
  void remove(const ClientKey& k, uint64_t session) {
    auto it = map_.find(k);
    if (it != map_.end() && it->second.session == session) map_.erase(it);
  }
  std::optional<lb::SessionRef> find(const ClientKey& k) const {
    auto it = map_.find(k);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  size_t size() const { return map_.size(); }

 private:
  std::map<ClientKey, lb::SessionRef, KeyLess> map_;
};

bool same(const std::optional<lb::SessionRef>& a, const std::optional<lb::SessionRef>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->worker == b->worker && a->session == b->session && a->backend == b->backend);
}

TEST_CASE("registry: the flat table matches the map model over 60,000 random operations") {
  const std::vector<ClientKey> pool = key_pool();
  std::mt19937_64 rng(31);
  auto pick = [&] { return pool[rng() % pool.size()]; };
  lb::ClientRegistry reg;
  RefRegistry ref;
  uint64_t next_session = 1;
  size_t returned = 0, max_size = 0, shrunk_to = SIZE_MAX;
  for (int op = 0; op < 60000; ++op) {
    unsigned r = rng() % 1000;
    ClientKey k = pick();
    if (r < 450) {
      // Sessions come in with a worker from -1 (tests) up, on one of 3 backends.
      lb::SessionRef s{static_cast<int>(rng() % 5) - 1, next_session++, rng() % 3};
      auto a = reg.add(k, s);
      REQUIRE(same(a, ref.add(k, s)));
      returned += a.has_value();
    } else if (r < 600) {
      uint64_t b = rng() % 3;
      auto a = reg.displace(k, b);
      REQUIRE(same(a, ref.displace(k, b)));
      returned += a.has_value();
    } else if (r < 850) {
      // The session now registered for k, or a stale one (no-op).
      auto cur = ref.find(k);
      uint64_t session = cur && rng() % 4 ? cur->session : rng() % next_session;
      reg.remove(k, session);
      ref.remove(k, session);
    } else if (r < 990) {
      REQUIRE(same(reg.find(k), ref.find(k)));
    } else if (r < 995) {  // a wave of connections: growth
      for (int i = 0; i < 600; ++i) {
        ClientKey w = pick();
        lb::SessionRef s{1, next_session++, 0};
        REQUIRE(same(reg.add(w, s), ref.add(w, s)));
      }
    } else {  // a wave of disconnections: shrinking
      for (const ClientKey& w : pool) {
        if (rng() % 10 == 0) continue;
        auto cur = ref.find(w);
        if (!cur) continue;
        reg.remove(w, cur->session);
        ref.remove(w, cur->session);
      }
      shrunk_to = std::min(shrunk_to, ref.size());
    }
    REQUIRE(reg.size() == ref.size());
    max_size = std::max(max_size, reg.size());
    if (op % 1000 == 0) {
      for (const ClientKey& w : pool) REQUIRE(same(reg.find(w), ref.find(w)));
    }
  }
  for (const ClientKey& w : pool) REQUIRE(same(reg.find(w), ref.find(w)));
  CHECK(returned > 1000);
  CHECK(max_size > 2000);
  CHECK(shrunk_to < 400);
}

}  // namespace
