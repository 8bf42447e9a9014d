#include "lb/store_codec.hpp"

namespace lb::store {

namespace {

constexpr char kHex[] = "0123456789abcdef";

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string hex64(uint64_t v) {
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = kHex[v & 0xF];
  return s;
}

std::optional<uint64_t> parse_hex64(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int n = nibble(c);
    if (n < 0) return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(n);
  }
  return v;
}

std::string key_hex(const ClientKey& k) {
  return hex64(k.hi) + hex64(k.lo);
}

std::optional<ClientKey> parse_key_hex(std::string_view s) {
  if (s.size() != 32) return std::nullopt;
  auto hi = parse_hex64(s.substr(0, 16)), lo = parse_hex64(s.substr(16));
  if (!hi || !lo) return std::nullopt;
  return ClientKey{*hi, *lo};
}

std::string redis_key(std::string_view prefix, const ClientKey& k) {
  std::string s(prefix);
  s += "a:";
  s += key_hex(k);
  return s;
}

std::optional<ClientKey> parse_redis_key(std::string_view prefix, std::string_view key) {
  if (key.size() != prefix.size() + 2 + 32 || key.substr(0, prefix.size()) != prefix ||
      key.substr(prefix.size(), 2) != "a:")
    return std::nullopt;
  return parse_key_hex(key.substr(prefix.size() + 2));
}

std::string channel(std::string_view prefix) {
  return std::string(prefix) + "placements";
}

std::string scan_pattern(std::string_view prefix) {
  return std::string(prefix) + "a:*";
}

std::string encode(const Message& m) {
  if (m.kind == Message::Kind::Placed)
    return "P1 " + hex64(m.replica) + " " + key_hex(m.key) + " " + hex64(m.backend);
  return "T1 " + hex64(m.replica) + " " + hex64(m.target) + " " + key_hex(m.key);
}

std::optional<Message> decode(std::string_view s) {
  // Both kinds are 3 + 16 + 1 + 32/16 + 1 + 16/32 = 69 bytes.
  constexpr size_t kLen = 3 + 16 + 1 + 32 + 1 + 16;
  if (s.size() != kLen || s[2] != ' ' || s[19] != ' ' || s[1] != '1') return std::nullopt;
  Message m;
  auto replica = parse_hex64(s.substr(3, 16));
  if (!replica) return std::nullopt;
  m.replica = *replica;
  if (s[0] == 'P') {
    if (s[52] != ' ') return std::nullopt;
    auto key = parse_key_hex(s.substr(20, 32));
    auto backend = parse_hex64(s.substr(53, 16));
    if (!key || !backend) return std::nullopt;
    m.kind = Message::Kind::Placed;
    m.key = *key;
    m.backend = *backend;
    return m;
  }
  if (s[0] == 'T') {
    if (s[36] != ' ') return std::nullopt;
    auto target = parse_hex64(s.substr(20, 16));
    auto key = parse_key_hex(s.substr(37, 32));
    if (!target || !key) return std::nullopt;
    m.kind = Message::Kind::TookOver;
    m.target = *target;
    m.key = *key;
    return m;
  }
  return std::nullopt;
}

}  // namespace lb::store
