#include "lb/dns_answer.hpp"

namespace lb::dns {

namespace {

// Skips an encoded name at `pos`: labels up to a zero byte, or up to a
// compression pointer (two bytes, not followed: its target is elsewhere).
bool skip_name(const uint8_t* buf, size_t len, size_t& pos) {
  for (int labels = 0; labels < 128; ++labels) {
    if (pos >= len) return false;
    uint8_t b = buf[pos];
    if (b == 0) {
      ++pos;
      return true;
    }
    if ((b & 0xC0) == 0xC0) {
      if (pos + 2 > len) return false;
      pos += 2;
      return true;
    }
    if ((b & 0xC0) != 0) return false;  // 0x40/0x80: reserved label types
    pos += 1 + b;
  }
  return false;
}

uint16_t u16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

}  // namespace

std::optional<uint32_t> min_answer_ttl(const uint8_t* buf, size_t len, uint16_t rrtype) {
  if (!buf || len < 12) return std::nullopt;
  const uint16_t qd = u16(buf + 4), an = u16(buf + 6);
  size_t pos = 12;
  for (uint16_t i = 0; i < qd; ++i) {
    if (!skip_name(buf, len, pos) || pos + 4 > len) return std::nullopt;
    pos += 4;  // QTYPE, QCLASS
  }
  std::optional<uint32_t> best;
  for (uint16_t i = 0; i < an; ++i) {
    if (!skip_name(buf, len, pos) || pos + 10 > len) return std::nullopt;
    const uint16_t type = u16(buf + pos);
    const uint32_t ttl = (uint32_t{buf[pos + 4]} << 24) | (uint32_t{buf[pos + 5]} << 16) |
                         (uint32_t{buf[pos + 6]} << 8) | buf[pos + 7];
    const uint16_t rdlen = u16(buf + pos + 8);
    pos += 10;
    if (pos + rdlen > len) return std::nullopt;
    pos += rdlen;
    // RFC 2181 8: a TTL with the top bit set is treated as zero.
    const uint32_t t = (ttl & 0x80000000u) ? 0 : ttl;
    if (type == rrtype && (!best || t < *best)) best = t;
  }
  return best;
}

}  // namespace lb::dns
