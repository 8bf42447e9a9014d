// libFuzzer target: the scale-out parsers that read bytes from outside —
// messages on the shared store's Redis channel (any client of that Redis can
// publish there), Redis key names seen while resynchronising, and raw DNS
// answers (the TTL walker of discovery); and the SRV plan of discovery over
// fuzzer-chosen records (lb/srv_plan: tiers dense from 0, weights 1..256,
// one entry per target and port, in order).
//  - any input: no crash, no read outside it;
//  - a message that decodes re-encodes to exactly the same bytes (fixed
//    width, one spelling), and every message we encode decodes back;
//  - a key that parses is the one redis_key() writes for it.
#include <algorithm>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "fuzz_check.hpp"
#include "lb/dns_answer.hpp"
#include "lb/srv_plan.hpp"
#include "lb/store_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lb::store;
  std::string_view s(reinterpret_cast<const char*>(data), size);
  if (auto m = decode(s)) {
    FUZZ_CHECK(encode(*m) == s);
    FUZZ_CHECK(decode(encode(*m)) == *m);
  }
  for (std::string_view prefix : {std::string_view("mqttlb:"), std::string_view("")})
    if (auto k = parse_redis_key(prefix, s)) FUZZ_CHECK(redis_key(prefix, *k) == s);
  if (size >= 24) {  // fuzzer-chosen fields for the encoder
    auto u64 = [&](size_t at) {
      uint64_t v = 0;
      for (size_t i = 0; i < 8; ++i) v = (v << 8) | data[at + i];
      return v;
    };
    Message m;
    m.kind = (data[0] & 1) ? Message::Kind::TookOver : Message::Kind::Placed;
    m.replica = u64(0);
    m.key = {u64(8), u64(16)};
    (m.kind == Message::Kind::Placed ? m.backend : m.target) = u64(0) ^ u64(16);
    auto d = decode(encode(m));
    FUZZ_CHECK(d && *d == m);
  }
  {  // 7 bytes a record: target (one of 8 names, or "." / ""), port, priority, weight
    std::vector<lb::dns::SrvRecord> rs;
    static const char* kNames[] = {"a", "b.", "c.x", "d", ".", "", "a.", "e"};
    for (size_t at = 0; at + 7 <= size && rs.size() < 64; at += 7)
      rs.push_back({kNames[data[at] & 7], static_cast<uint16_t>((data[at + 1] << 8) | data[at + 2]),
                    static_cast<uint16_t>((data[at + 3] << 8) | data[at + 4]),
                    static_cast<uint16_t>((data[at + 5] << 8) | data[at + 6])});
    auto plan = lb::dns::plan_srv(rs);
    FUZZ_CHECK(plan.size() <= rs.size());
    uint32_t tiers = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto& t = plan[i];
      FUZZ_CHECK(t.weight >= 1 && t.weight <= 256);
      FUZZ_CHECK(!t.target.empty() && t.target.back() != '.');
      FUZZ_CHECK(t.tier <= tiers);  // dense: 0, 1, 2 ...
      tiers = std::max(tiers, t.tier + 1);
      if (i > 0) {
        const auto& p = plan[i - 1];
        FUZZ_CHECK(std::tie(p.tier, p.target, p.port) < std::tie(t.tier, t.target, t.port));
      }
    }
  }
  for (uint16_t type : {1, 28, 33}) {
    auto ttl = lb::dns::min_answer_ttl(data, size, type);
    if (ttl) FUZZ_CHECK(*ttl <= 0x7fffffffu);
  }
  return 0;
}
