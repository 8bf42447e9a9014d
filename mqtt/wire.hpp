// Internal helpers for reading and writing MQTT wire types (big-endian
// integers, length-prefixed strings, varints). Header-only, used by the
// parsers and encoders in mqtt/; not part of the public API.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/frame.hpp"

namespace mqtt::wire {

// Bounds-checked cursor over a byte span. Every read checks the remaining
// length first; on underflow it sets `short_read` and returns a zero value, so
// callers may read a whole structure and test once.
struct Reader {
  std::span<const uint8_t> in;
  size_t pos = 0;
  bool short_read = false;

  size_t left() const { return in.size() - pos; }
  bool has(size_t n) {
    if (left() < n) {
      short_read = true;
      return false;
    }
    return true;
  }
  uint8_t u8() {
    if (!has(1)) return 0;
    return in[pos++];
  }
  uint16_t u16() {
    if (!has(2)) return 0;
    uint16_t v = static_cast<uint16_t>(in[pos] << 8 | in[pos + 1]);
    pos += 2;
    return v;
  }
  uint32_t u32() {
    if (!has(4)) return 0;
    uint32_t v = uint32_t{in[pos]} << 24 | uint32_t{in[pos + 1]} << 16 |
                 uint32_t{in[pos + 2]} << 8 | uint32_t{in[pos + 3]};
    pos += 4;
    return v;
  }
  // Returns false (and sets short_read) on truncation; `malformed` on a
  // varint longer than 4 bytes.
  bool varint(uint32_t& out, bool& malformed) {
    VarintResult r = decode_varint(in.subspan(pos));
    if (r.status == DecodeStatus::Malformed) {
      malformed = true;
      return false;
    }
    if (r.status == DecodeStatus::NeedMore) {
      short_read = true;
      return false;
    }
    out = r.value;
    pos += r.length;
    return true;
  }
  // Two-byte length + bytes (UTF-8 string or binary data).
  std::span<const uint8_t> lp_bytes() {
    uint16_t n = u16();
    if (short_read || !has(n)) return {};
    auto s = in.subspan(pos, n);
    pos += n;
    return s;
  }
  std::span<const uint8_t> rest() {
    auto s = in.subspan(pos);
    pos = in.size();
    return s;
  }
};

inline std::string to_str(std::span<const uint8_t> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

inline void put_u8(std::vector<uint8_t>& o, uint8_t v) { o.push_back(v); }
inline void put_u16(std::vector<uint8_t>& o, uint16_t v) {
  o.push_back(static_cast<uint8_t>(v >> 8));
  o.push_back(static_cast<uint8_t>(v));
}
inline void put_u32(std::vector<uint8_t>& o, uint32_t v) {
  o.push_back(static_cast<uint8_t>(v >> 24));
  o.push_back(static_cast<uint8_t>(v >> 16));
  o.push_back(static_cast<uint8_t>(v >> 8));
  o.push_back(static_cast<uint8_t>(v));
}
// Two-byte length prefix + bytes; precondition: s.size() <= 65535.
inline void put_lp(std::vector<uint8_t>& o, std::string_view s) {
  put_u16(o, static_cast<uint16_t>(s.size()));
  o.insert(o.end(), s.begin(), s.end());
}

}  // namespace mqtt::wire
