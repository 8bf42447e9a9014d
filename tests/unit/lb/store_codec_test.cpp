// The shared store's encodings (lb/store_codec) and the DNS TTL walker
// (lb/dns_answer): pure functions, tested at their boundaries.
#include "lb/store_codec.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "lb/dns_answer.hpp"

using namespace lb::store;

TEST_CASE("hex64 and key_hex round-trip, fixed width, lowercase only") {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}, uint64_t{0x0123456789abcdef}}) {
    std::string h = hex64(v);
    CHECK(h.size() == 16);
    CHECK(parse_hex64(h) == v);
  }
  CHECK(hex64(0xabc) == "0000000000000abc");
  CHECK_FALSE(parse_hex64("0000000000000ABC"));  // uppercase: not ours
  CHECK_FALSE(parse_hex64("000000000000abc"));   // 15 digits
  CHECK_FALSE(parse_hex64("00000000000000abc"));
  CHECK_FALSE(parse_hex64("000000000000 abc"));
  lb::ClientKey k{0xfedcba9876543210ull, 0x0011223344556677ull};
  CHECK(key_hex(k) == "fedcba98765432100011223344556677");
  CHECK(parse_key_hex(key_hex(k)) == k);
  CHECK_FALSE(parse_key_hex("fedcba9876543210001122334455667"));
}

TEST_CASE("Redis keys carry the prefix; keys of another prefix or shape are not ours") {
  lb::ClientKey k{1, 2};
  std::string key = redis_key("mqttlb:", k);
  CHECK(key == "mqttlb:a:" + key_hex(k));
  CHECK(parse_redis_key("mqttlb:", key) == k);
  CHECK_FALSE(parse_redis_key("other:", key));
  CHECK_FALSE(parse_redis_key("mqttlb:", "mqttlb:b:" + key_hex(k)));
  CHECK_FALSE(parse_redis_key("mqttlb:", key + "0"));
  CHECK(parse_redis_key("", redis_key("", k)) == k);
  CHECK(scan_pattern("p:") == "p:a:*");
  CHECK(channel("p:") == "p:placements");
}

TEST_CASE("messages round-trip and anything else is rejected") {
  Message p;
  p.kind = Message::Kind::Placed;
  p.replica = 0x1122334455667788ull;
  p.key = {3, 4};
  p.backend = 0xdeadbeefcafef00dull;
  Message t;
  t.kind = Message::Kind::TookOver;
  t.replica = 9;
  t.target = p.replica;
  t.key = p.key;
  for (const Message& m : {p, t}) {
    std::string e = encode(m);
    CHECK(e.size() == 69);
    auto d = decode(e);
    REQUIRE(d);
    CHECK(*d == m);
    // Every single-byte change is either rejected or decodes to a different message.
    for (size_t i = 0; i < e.size(); ++i) {
      std::string x = e;
      x[i] = static_cast<char>(x[i] ^ 0x01);
      auto dx = decode(x);
      CHECK((!dx || !(*dx == m)));
    }
    CHECK_FALSE(decode(e.substr(0, 68)));
    CHECK_FALSE(decode(e + " "));
  }
  std::string e = encode(p);
  e[1] = '2';  // a newer version: ignored, not misread
  CHECK_FALSE(decode(e));
  CHECK_FALSE(decode(""));
}

namespace {

// A DNS response: header, one question, then answers (type, ttl, rdata len).
std::vector<uint8_t> response(std::vector<std::tuple<uint16_t, uint32_t, uint16_t>> answers,
                              bool compressed = true) {
  std::vector<uint8_t> m = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, static_cast<uint8_t>(answers.size()),
                            0,    0,    0,    0};
  for (const char* label : {"brokers", "test"}) {
    m.push_back(static_cast<uint8_t>(strlen(label)));
    m.insert(m.end(), label, label + strlen(label));
  }
  m.push_back(0);
  m.insert(m.end(), {0, 33, 0, 1});
  for (auto [type, ttl, len] : answers) {
    if (compressed) {
      m.insert(m.end(), {0xC0, 12});
    } else {
      m.insert(m.end(), {1, 'x', 0});
    }
    m.insert(m.end(), {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type), 0, 1,
                       static_cast<uint8_t>(ttl >> 24), static_cast<uint8_t>(ttl >> 16),
                       static_cast<uint8_t>(ttl >> 8), static_cast<uint8_t>(ttl),
                       static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
    m.insert(m.end(), len, 0);
  }
  return m;
}

}  // namespace

TEST_CASE("min_answer_ttl: the smallest TTL of the asked type") {
  auto m = response({{33, 300, 10}, {33, 30, 12}, {1, 5, 4}, {33, 60, 8}});
  CHECK(lb::dns::min_answer_ttl(m.data(), m.size(), 33) == 30u);
  CHECK(lb::dns::min_answer_ttl(m.data(), m.size(), 1) == 5u);
  CHECK_FALSE(lb::dns::min_answer_ttl(m.data(), m.size(), 28));
  auto u = response({{33, 7, 3}}, false);
  CHECK(lb::dns::min_answer_ttl(u.data(), u.size(), 33) == 7u);
  auto neg = response({{33, 0x80000001u, 3}});
  CHECK(lb::dns::min_answer_ttl(neg.data(), neg.size(), 33) == 0u);  // RFC 2181 8
}

TEST_CASE("min_answer_ttl: every truncation and random corruption is handled") {
  auto m = response({{33, 300, 10}, {33, 30, 12}});
  for (size_t n = 0; n < m.size(); ++n) {
    std::vector<uint8_t> cut(m.begin(), m.begin() + static_cast<long>(n));
    CHECK_FALSE(lb::dns::min_answer_ttl(cut.data(), cut.size(), 33));
  }
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    auto x = m;
    x[rng() % x.size()] = static_cast<uint8_t>(rng());
    auto r = lb::dns::min_answer_ttl(x.data(), x.size(), 33);
    if (r) CHECK(*r <= 0x7fffffffu);
  }
}
